package tasks

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

var (
	corpusOnce sync.Once
	goCorpus   *Corpus
	corpusErr  error
)

func testCorpus(t *testing.T) *Corpus {
	t.Helper()
	corpusOnce.Do(func() { goCorpus, corpusErr = DefaultCorpus() })
	if corpusErr != nil {
		t.Fatal(corpusErr)
	}
	return goCorpus
}

var tokenizers = map[string]Tokenizer{"byte": byteTok{}, "pair": pairTok{}}

// Every task renders prompts of exactly the requested length, whose gold answers
// score 1 and whose wrong answers score below 1.
func TestInstanceExactLength(t *testing.T) {
	c := testCorpus(t)
	for tn, tok := range tokenizers {
		for _, name := range Names() {
			for _, L := range []int{700, 1500, 4096} {
				for i := range 3 {
					in, err := Generate(name, L, i, 1, Options{Corpus: c, Tokenizer: tok})
					if err != nil {
						t.Fatalf("%s/%s/%d: %v", tn, name, L, err)
					}
					if n := len(tok.Encode(in.Prompt)); n != L {
						t.Errorf("%s/%s/%d/%d: prompt has %d tokens, want %d", tn, name, L, i, n, L)
					}
					if in.Task != name || in.Category == "" || in.Length != L || in.MaxNew <= 0 || in.Stop == "" {
						t.Errorf("%s/%s: incomplete instance %+v", tn, name, in)
					}
					gold := goldOutput(in)
					if s := in.Score(gold); s != 1 {
						t.Errorf("%s/%s/%d: gold output %q scores %v", tn, name, L, gold, s)
					}
					if s := in.Score(" 0000\n"); s != 0 {
						t.Errorf("%s/%s/%d: wrong output scores %v", tn, name, L, s)
					}
				}
			}
		}
	}
}

// goldOutput is what a perfect model generates for an instance.
func goldOutput(in *Instance) string {
	switch in.Metric {
	case RowF1:
		return strings.TrimPrefix(in.Answers[0], in.Prefix)
	case RulerRecall:
		return " " + strings.Join(in.Answers, ", ")
	case NDCG10:
		var ids []string
		for label := 3; label > 0; label-- {
			for _, j := range in.Answers {
				if id, l, _ := strings.Cut(j, ":"); l == fmt.Sprint(label) {
					ids = append(ids, id)
				}
			}
		}
		return " " + strings.Join(ids, " > ")
	}
	return " " + in.Answers[0]
}

// Recall needles and values sit in the context, not only in the answers.
func TestAnswersInContext(t *testing.T) {
	c := testCorpus(t)
	for _, name := range []string{"json_kv", "ruler_mk_needle", "ruler_mk_uuid", "ruler_mv", "ruler_vt"} {
		in, err := Generate(name, 2048, 0, 7, Options{Corpus: c, Tokenizer: byteTok{}})
		if err != nil {
			t.Fatal(err)
		}
		body := in.Prompt[:strings.LastIndex(in.Prompt, "\n")]
		for _, a := range in.Answers {
			if !strings.Contains(body, a) {
				t.Errorf("%s: answer %q not in the prompt", name, a)
			}
		}
	}
}

func TestDocumentSpans(t *testing.T) {
	c := testCorpus(t)
	for tn, tok := range tokenizers {
		for _, name := range append(Names(), CorpusTask) {
			d, err := Document(name, 4096, 3, 5, Options{Corpus: c, Tokenizer: tok, Queries: 8})
			if err != nil {
				t.Fatalf("%s/%s: %v", tn, name, err)
			}
			if len(d.IDs) != 4096 {
				t.Errorf("%s/%s: %d ids, want 4096", tn, name, len(d.IDs))
			}
			if tok.Decode(d.IDs) != d.Text {
				t.Errorf("%s/%s: ids do not decode to the text", tn, name)
			}
			want := 8
			switch name {
			case "records_tsv":
				want = 1
			case CorpusTask:
				want = 0
			}
			if len(d.Spans) != want {
				t.Fatalf("%s/%s: %d spans, want %d", tn, name, len(d.Spans), want)
			}
			for _, sp := range d.Spans {
				ans := tok.Decode(d.IDs[sp[0]:sp[1]])
				if !strings.HasSuffix(ans, "\n") || len(strings.TrimSpace(ans)) == 0 {
					t.Errorf("%s/%s: span %v is %q, want an answer ending in a newline", tn, name, sp, ans)
				}
				// The token before the span belongs to the answer prefix.
				before := tok.Decode(d.IDs[sp[0]-1 : sp[0]])
				if strings.Contains(before, "\n") && name != "records_tsv" {
					t.Errorf("%s/%s: span %v starts after a newline token %q", tn, name, sp, before)
				}
			}
		}
	}
}

func TestDeterministicAndSplit(t *testing.T) {
	c := testCorpus(t)
	o := Options{Corpus: c, Tokenizer: byteTok{}, Queries: 1}
	a, _ := Generate("ruler_mk_needle", 1024, 4, 9, o)
	b, _ := Generate("ruler_mk_needle", 1024, 4, 9, o)
	if a.Prompt != b.Prompt {
		t.Error("same seed, different prompts")
	}
	d, _ := Document("ruler_mk_needle", 1024, 4, 9, o)
	if strings.HasPrefix(d.Text, a.Prompt) {
		t.Error("training document repeats the evaluation instance")
	}
	for _, task := range append(Names(), CorpusTask) {
		for L := 512; L <= 8192; L *= 2 {
			for i := range 50 {
				for seed := range uint64(20) {
					tr := InstanceSeed(Train, task, L, i, seed)
					ev := InstanceSeed(Eval, task, L, i, seed)
					if tr>>63 != 0 || ev>>63 != 1 {
						t.Fatalf("seeds %x (train) %x (eval) not in their ranges", tr, ev)
					}
				}
			}
		}
	}
}

func TestErrors(t *testing.T) {
	c := testCorpus(t)
	o := Options{Corpus: c, Tokenizer: byteTok{}}
	if _, err := Generate("nope", 1024, 0, 1, o); err == nil || !strings.Contains(err.Error(), "unknown task") {
		t.Errorf("unknown task: %v", err)
	}
	if _, err := Generate("ruler_mk_needle", 100, 0, 1, o); err == nil || !strings.Contains(err.Error(), "too short") {
		t.Errorf("short length: %v", err)
	}
	if _, err := Document("json_kv", 512, 0, 1, Options{Corpus: c, Tokenizer: byteTok{}, Queries: 100}); err == nil ||
		!strings.Contains(err.Error(), "too short") {
		t.Errorf("too many queries: %v", err)
	}
	dir := t.TempDir()
	if _, err := LoadCorpus(dir); err == nil || !strings.Contains(err.Error(), "empty corpus") {
		t.Errorf("empty corpus: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "bin"), []byte{0, 1, 2, 3}, 0o644)
	if _, err := LoadCorpus(dir); err == nil {
		t.Error("a corpus of binary files loaded")
	}
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte(strings.Repeat("hello world\n", 2000)), 0o644)
	small, err := LoadCorpus(dir)
	if err != nil || small.Files() != 1 {
		t.Fatalf("text corpus: %v, %d files", err, small.Files())
	}
	if _, err := Generate("ruler_mv", 1024, 0, 1, Options{Corpus: small, Tokenizer: byteTok{}}); err != nil {
		t.Errorf("small corpus: %v", err)
	}
}

// Needles sit at spread depths: the i-th of n items lies in the i-th n-th of the
// context, give or take a line.
func TestDepthSpread(t *testing.T) {
	c := testCorpus(t)
	in, err := Generate("ruler_mk_needle", 4096, 0, 3, Options{Corpus: c, Tokenizer: byteTok{}})
	if err != nil {
		t.Fatal(err)
	}
	var offs []int
	for at := 0; ; {
		i := strings.Index(in.Prompt[at:], "One of the special magic numbers")
		if i < 0 {
			break
		}
		offs = append(offs, at+i)
		at += i + 1
	}
	n := len(offs)
	if n != 16 {
		t.Fatalf("%d needles, want 16 at 4096 tokens", n)
	}
	for i, o := range offs {
		f := float64(o) / float64(len(in.Prompt))
		if f < float64(i)/float64(n)-0.03 || f > float64(i+1)/float64(n)+0.05 {
			t.Errorf("needle %d at depth %.3f, want within [%.3f, %.3f]", i, f, float64(i)/float64(n), float64(i+1)/float64(n))
		}
	}
}

// A re-ranking training document with several queries ranks, for each, the documents
// that the context says answer it: label 3 states the queried role of the queried place,
// 2 another role of that place, 1 the queried role of another place.
func TestRerankTrainingRankings(t *testing.T) {
	docRE := regexp.MustCompile(`\[ID: (\d+)\] Document: ([^\n]*)`)
	queryRE := regexp.MustCompile(`Query: who is the (\w+) of the (\w+ \w+)\nRanking: (\d+) > (\d+) > (\d+)\n`)
	for tn, tok := range tokenizers {
		d, err := Document("rerank", 4096, 2, 11, Options{Tokenizer: tok, Queries: 4})
		if err != nil {
			t.Fatalf("%s: %v", tn, err)
		}
		last := strings.LastIndex(d.Text, "[ID: ")
		start := strings.Index(d.Text[last:], "\nQuery:")
		if last < 0 || start < 0 {
			t.Fatalf("%s: no query after the context", tn)
		}
		start += last
		docs := map[string]string{}
		for _, m := range docRE.FindAllStringSubmatch(d.Text[:start], -1) {
			docs[m[1]] = m[2] // a demonstration's ids are distinct from the context's
		}
		queries := queryRE.FindAllStringSubmatch(d.Text[start:], -1)
		if len(queries) != 4 || len(d.Spans) != 4 {
			t.Fatalf("%s: %d queries and %d answer spans, want 4", tn, len(queries), len(d.Spans))
		}
		for _, q := range queries {
			role, place := q[1], q[2]
			gold, samePlace, sameRole := docs[q[3]], docs[q[4]], docs[q[5]]
			if !strings.Contains(gold, fmt.Sprintf("The %s of the %s is", role, place)) {
				t.Errorf("%s: %s of %s: first-ranked document %q does not answer", tn, role, place, gold)
			}
			if !strings.Contains(samePlace, " of the "+place+" is") || strings.Contains(samePlace, "The "+role+" ") {
				t.Errorf("%s: %s of %s: second-ranked document %q is not about another role there", tn, role, place, samePlace)
			}
			if !strings.Contains(sameRole, "The "+role+" of the ") || strings.Contains(sameRole, " of the "+place+" is") {
				t.Errorf("%s: %s of %s: third-ranked document %q is not about the role elsewhere", tn, role, place, sameRole)
			}
		}
	}
}

// With IDEcho, a re-ranking training document repeats the id of about half the documents
// no question asks about, inside that same document and after its fact; a ranked document
// never echoes, documents without the option never do, and evaluation prompts are the same
// with it as without.
func TestRerankIDEcho(t *testing.T) {
	docRE := regexp.MustCompile(`\[ID: (\d+)\] Document: ([^\n]*)`)
	echoRE := regexp.MustCompile(`^(The \w+ of the \w+ \w+ is \w+ \w+) \(ID: (\d+)\)\.`)
	rankRE := regexp.MustCompile(`Ranking: (\d+) > (\d+) > (\d+)\n`)
	for tn, tok := range tokenizers {
		opts := Options{Tokenizer: tok, Queries: 4, IDEcho: true}
		d, err := Document("rerank", 4096, 3, 11, opts)
		if err != nil {
			t.Fatalf("%s: %v", tn, err)
		}
		ranked := map[string]bool{}
		for _, m := range rankRE.FindAllStringSubmatch(d.Text, -1) {
			ranked[m[1]], ranked[m[2]], ranked[m[3]] = true, true, true
		}
		unranked, echoes := 0, 0
		for _, m := range docRE.FindAllStringSubmatch(d.Text, -1) {
			id, text := m[1], m[2]
			n := strings.Count(text, "(ID: ")
			if ranked[id] {
				if n != 0 {
					t.Errorf("%s: ranked document %s echoes an id: %q", tn, id, text)
				}
				continue
			}
			unranked++
			if n == 0 {
				continue
			}
			echoes++
			fact := text
			if i := strings.Index(text, ". The "); i >= 0 && !strings.HasPrefix(text, "The ") {
				fact = text[i+2:] // the sentence of colour came first
			}
			e := echoRE.FindStringSubmatch(fact)
			if n != 1 || e == nil || e[2] != id {
				t.Errorf("%s: document %s: echo not its own id after its fact: %q", tn, id, text)
			}
		}
		if len(ranked) < 12 || unranked < 15 || echoes < unranked/5 || echoes > unranked*4/5 {
			t.Errorf("%s: %d ranked ids, %d echoes among %d unranked documents: want 12+ ranked, 15+ unranked and about half echoing", tn, len(ranked), echoes, unranked)
		}
		plain, err := Document("rerank", 4096, 3, 11, Options{Tokenizer: tok, Queries: 4})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(plain.Text, "(ID: ") {
			t.Errorf("%s: a document without IDEcho echoes", tn)
		}
		a, err := Generate("rerank", 2048, 0, 5, opts)
		if err != nil {
			t.Fatal(err)
		}
		b, err := Generate("rerank", 2048, 0, 5, Options{Tokenizer: tok})
		if err != nil {
			t.Fatal(err)
		}
		if a.Prompt != b.Prompt || strings.Contains(a.Prompt, "(ID: ") {
			t.Errorf("%s: IDEcho changed an evaluation prompt", tn)
		}
	}
}
