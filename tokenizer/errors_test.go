package tokenizer

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// A minimal valid byte-level tokenizer.json to corrupt field by field.
func miniJSON(t *testing.T) string {
	t.Helper()
	tr := NewTrainer()
	tr.Add("hello hello world")
	js, _, err := tr.Train(256+2+1, []string{"<s>"})
	if err != nil {
		t.Fatal(err)
	}
	return string(js)
}

func TestParseErrorsNameTheField(t *testing.T) {
	good := miniJSON(t)
	if _, err := Parse([]byte(good), nil); err != nil {
		t.Fatalf("mini tokenizer: %v", err)
	}
	cases := []struct {
		name, from, to, want string
	}{
		{"not json", good, "{", "not a tokenizer.json"},
		{"model type", `"type": "BPE"`, `"type": "Unigram"`, "model.type"},
		{"merge token", `"merges": [`, `"merges": ["zz qq",`, "model.merges[0]"},
		{"normalizer", `"normalizer": null`, `"normalizer": {"type": "BertNormalizer"}`, "normalizer.type"},
		{"pre-tokenizer regex", `{"Regex": "(?i:`, `{"Regex": "((?i:`, "pre_tokenizer.pretokenizers[0].pattern.Regex"},
		{"decoder", `"decoder": {"type": "ByteLevel"`, `"decoder": {"type": "WordPiece"`, "decoder.type"},
		{"post-processor", `{"type": "TemplateProcessing"`, `{"type": "RobertaProcessing"`, "post_processor.processors[1].type"},
		{"added token flags", `"lstrip": false`, `"lstrip": true`, "added_tokens[0]"},
		{"missing byte", `"Ā": 0,`, ``, "byte 0x00"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bad := c.to
			if c.from != good {
				if !strings.Contains(good, c.from) {
					t.Fatalf("fixture lacks %q", c.from)
				}
				bad = strings.Replace(good, c.from, c.to, 1)
			}
			_, err := Parse([]byte(bad), nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one naming %q", err, c.want)
			}
		})
	}
	if _, err := Parse([]byte(good), []byte(`{"bos_token": "<nope>"}`)); err == nil || !strings.Contains(err.Error(), "bos_token") {
		t.Fatalf("unknown bos_token: err = %v", err)
	}
	if _, err := Load("/nonexistent/tokenizer.json"); err == nil {
		t.Fatal("Load of a missing file succeeded")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}`))
	f.Add([]byte(`{"model": {"vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [["a", "b"]]}, "added_tokens": [{"id": 5, "content": "<x>"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := Parse(data, nil)
		if err != nil {
			return
		}
		ids := tok.EncodeWithSpecial("ab <x> a\xffb")
		_ = tok.Decode(append(ids, -1, 1<<30))
	})
}

// TestLossyMaximalSubpart: one U+FFFD per maximal ill-formed subsequence
// (Unicode 15 §3.9, Table 3-11's examples), as Python and Rust decode.
func TestLossyMaximalSubpart(t *testing.T) {
	cases := []struct{ in, want string }{
		{"a\xffb", "a\uFFFDb"},
		{"\xe6\x97", "\uFFFD"},                 // truncated 3-byte sequence: one
		{"\xe6\x97\xe6\x97x", "\uFFFD\uFFFDx"}, // two truncated ones: two
		{"\xc0\xaf", "\uFFFD\uFFFD"},           // C0 never starts a sequence
		{"\xed\xa0\x80", "\uFFFD\uFFFD\uFFFD"}, // surrogate: ED then A0 out of range
		{"\xf4\x90\x80\x80", "\uFFFD\uFFFD\uFFFD\uFFFD"},
		{"\xf0\x9f\x98", "\uFFFD"},
		{"\x61\xf1\x80\x80\xe1\x80\xc2\x62\x80\x63\x80\xbf\x64", "a\uFFFD\uFFFD\uFFFDb\uFFFDc\uFFFD\uFFFDd"},
	}
	for _, c := range cases {
		if got := string(appendLossy(nil, []byte(c.in))); got != c.want {
			t.Errorf("lossy(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestInvalidUTF8Input: invalid bytes encode as the U+FFFD that Python would
// have made of them when decoding the input.
func TestInvalidUTF8Input(t *testing.T) {
	for _, fam := range families {
		tok := family(t, fam)
		got := tok.Encode("a\xe6\x97b\xff")
		want := tok.Encode("a\uFFFDb\uFFFD")
		if !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", fam, got, want)
		}
	}
}

// TestStream: pieces are valid UTF-8, never end inside a character, and add up
// to Decode of the whole sequence, for every reference text of each family.
func TestStream(t *testing.T) {
	for _, fam := range families {
		tok := family(t, fam)
		for _, r := range readReferences(t, testdataT+"/"+fam+"/encodings.jsonl") {
			st := tok.NewStream(false)
			var b strings.Builder
			for _, id := range r.IDs {
				piece := st.Next(id)
				if !utf8.ValidString(piece) || strings.HasSuffix(piece, "\uFFFD") && !strings.HasSuffix(r.Decoded, "\uFFFD") {
					t.Fatalf("%s %q: broken piece %q", fam, r.Text, piece)
				}
				b.WriteString(piece)
			}
			b.WriteString(st.Flush())
			if b.String() != r.Decoded {
				t.Fatalf("%s: stream %q, Decode %q", fam, b.String(), r.Decoded)
			}
		}
	}
}
