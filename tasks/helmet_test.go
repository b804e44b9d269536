package tasks

import (
	"strings"
	"testing"
)

func TestLoadHELMET(t *testing.T) {
	mv, err := LoadHELMETFile("testdata/helmet_ruler_mv.jsonl", "ruler_niah_mv")
	if err != nil {
		t.Fatal(err)
	}
	if len(mv) != 2 {
		t.Fatalf("%d instances, want 2 (the blank line skipped)", len(mv))
	}
	wantPrompt := "Some special magic numbers are hidden within the following text. Make sure to memorize it. " +
		"I will quiz you about the numbers afterwards.\nGrass is green. One of the special magic numbers for gentle-lake is: 1234567. " +
		"Sky is blue. One of the special magic numbers for gentle-lake is: 7654321.\n" +
		"What are all the special magic numbers for gentle-lake mentioned in the provided text?\n" +
		"The special magic numbers for gentle-lake mentioned in the provided text are"
	if mv[0].Prompt != wantPrompt {
		t.Errorf("prompt\n%q\nwant\n%q", mv[0].Prompt, wantPrompt)
	}
	if s := mv[0].Score(" 1234567 and 999"); s != 0.5 {
		t.Errorf("half the values: score %v, want 0.5", s)
	}
	if len(mv[1].Answers) != 1 || mv[1].Answers[0] != "1111111" {
		t.Errorf("answer list: %v", mv[1].Answers)
	}
	// HELMET's recall config: budgets of 50 new tokens, 100 for niah_mk_3 and JSON KV
	mk3, err := LoadHELMETFile("testdata/helmet_ruler_mv.jsonl", "ruler_niah_mk_3")
	if err != nil || mv[0].MaxNew != 50 || mk3[0].MaxNew != 100 {
		t.Errorf("budgets %d (mv) and %d (mk_3, %v), want 50 and 100", mv[0].MaxNew, mk3[0].MaxNew, err)
	}

	kv, err := LoadHELMETFile("testdata/helmet_json_kv.jsonl", "json_kv")
	if err != nil {
		t.Fatal(err)
	}
	want := "JSON data:\n{\"aa-11\": \"bb-22\", \"cc-33\": \"dd-44\", \"ee-55\": \"ff-66\"}\n\n" +
		"Extract the value corresponding to the specified key in the JSON object below.\n\n" +
		"Key: \"aa-11\"\nCorresponding value: \"bb-22\"\n\nKey: \"ee-55\"\nCorresponding value: \"ff-66\"\n\n" +
		"Key: \"cc-33\"\nCorresponding value:"
	if kv[0].Prompt != want {
		t.Errorf("json_kv prompt\n%q\nwant\n%q", kv[0].Prompt, want)
	}
	if kv[0].MaxNew != 100 {
		t.Errorf("json_kv budget %d, want 100", kv[0].MaxNew)
	}
	if kv[0].Score(` "DD-44"`) != 1 || kv[0].Score(` "dd-45"`) != 0 {
		t.Error("json_kv substring match")
	}

	for _, bad := range []struct{ data, dataset, want string }{
		{`{"context": "x", "query": "k", "type_needle_v": "numbers"}`, "ruler_niah_mk_2", "gold answer"},
		{`{"query": "k", "type_needle_v": "numbers", "outputs": ["1"]}`, "ruler_niah_mk_2", "context"},
		{`{"context": "x", "answer": "1"}`, "json_kv", "question"},
		{`{"context": "x", "question": "q", "answer": "1", "demos": [["a"]]}`, "json_kv", "demo 0"},
		{`not json`, "json_kv", "line 1"},
		{``, "json_kv", "no rows"},
		{`{}`, "narrativeqa", "dataset"},
	} {
		if _, err := LoadHELMET(strings.NewReader(bad.data), bad.dataset); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: error %v, want one mentioning %q", bad.data, err, bad.want)
		}
	}
}

func FuzzLoadHELMET(f *testing.F) {
	f.Add(`{"context": "c", "query": "k", "type_needle_v": "numbers", "outputs": ["1"]}`, "ruler_niah_mv")
	f.Add(`{"context": "c", "question": "q", "answer": ["a", "b"], "demos": [["k", "v"]]}`, "json_kv")
	f.Fuzz(func(t *testing.T, data, dataset string) {
		ins, err := LoadHELMET(strings.NewReader(data), dataset)
		if err == nil {
			for _, in := range ins {
				if len(in.Answers) == 0 || in.Prompt == "" {
					t.Errorf("instance without answers or prompt: %+v", in)
				}
				in.Score("anything")
			}
		}
	})
}

func FuzzTSVRowF1(f *testing.F) {
	f.Add("```tsv\na\tb\n1\t2\n```", "a\tb\n1\t2")
	f.Fuzz(func(t *testing.T, pred, gold string) {
		if s := TSVRowF1(pred, gold); s < 0 || s > 1 {
			t.Errorf("F1 %v out of [0, 1]", s)
		}
	})
}

// Truncate cuts the context at its end, keeping the instruction and the question.
func TestHELMETTruncate(t *testing.T) {
	for _, ds := range []struct{ file, name string }{
		{"testdata/helmet_json_kv.jsonl", "json_kv"},
		{"testdata/helmet_ruler_mv.jsonl", "ruler_niah_mv"},
	} {
		ins, err := LoadHELMETFile(ds.file, ds.name)
		if err != nil {
			t.Fatal(err)
		}
		in := ins[0]
		orig, parts := in.Prompt, *in.parts
		n := len(byteTok{}.Encode(orig))
		ids, err := in.Truncate(byteTok{}, n)
		if err != nil || len(ids) != n || in.Prompt != orig {
			t.Fatalf("%s: a prompt that fits changed: %d ids, %v", ds.name, len(ids), err)
		}
		max := n - len(parts.context)/2
		ids, err = in.Truncate(byteTok{}, max)
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) > max || len(ids) < max-4 {
			t.Errorf("%s: %d tokens after truncation to %d", ds.name, len(ids), max)
		}
		if !strings.HasPrefix(in.Prompt, parts.head) || !strings.HasSuffix(in.Prompt, parts.tail) {
			t.Errorf("%s: truncation lost the instruction or the question", ds.name)
		}
		kept := strings.TrimSuffix(strings.TrimPrefix(in.Prompt, parts.head), parts.tail)
		if !strings.HasPrefix(parts.context, kept) || len(kept) >= len(parts.context) {
			t.Errorf("%s: the kept context is not a shorter prefix of the original", ds.name)
		}
		if _, err := in.Truncate(byteTok{}, len(parts.tail)/2); err == nil {
			t.Errorf("%s: a limit below the question's length was accepted", ds.name)
		}
	}
}
