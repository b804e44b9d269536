package tasks

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvfoot/kvfoot/tokenizer"
)

// With real tokenizers (byte-level BPE and SentencePiece BPE) prompts are exact and
// answer spans decode to the answers.
func TestRealTokenizers(t *testing.T) {
	c := testCorpus(t)
	for _, name := range []string{"llama3_1", "llama2"} {
		path := filepath.Join("..", "testdata", "tokenizers", name, "tokenizer.json.gz")
		tok, err := tokenizer.Load(path)
		if err != nil {
			t.Skipf("%s: %v", name, err)
		}
		for _, task := range Names() {
			for _, L := range []int{1024, 4096} {
				in, err := Generate(task, L, 1, 2, Options{Corpus: c, Tokenizer: tok})
				if err != nil {
					t.Fatalf("%s/%s/%d: %v", name, task, L, err)
				}
				if n := len(tok.Encode(in.Prompt)); n != L {
					t.Errorf("%s/%s: %d tokens, want %d", name, task, n, L)
				}
			}
			// SentencePiece decoding takes the slow (quadratic) span path: keep it short.
			dl := 4096
			if name == "llama2" {
				dl = 1024
			}
			// A re-ranking query brings three documents and ids of one token a digit
			// (SentencePiece): six do not fit 1024 tokens.
			q := 6
			if task == "rerank" {
				q = 3
			}
			d, err := Document(task, dl, 1, 2, Options{Corpus: c, Tokenizer: tok, Queries: q})
			if err != nil {
				t.Fatalf("%s/%s: %v", name, task, err)
			}
			if len(d.IDs) != dl {
				t.Errorf("%s/%s: document has %d tokens", name, task, len(d.IDs))
			}
			for _, s := range d.Spans {
				a := tok.Decode(d.IDs[s[0]:s[1]])
				if !strings.HasSuffix(a, "\n") || strings.TrimSpace(a) == "" {
					t.Errorf("%s/%s: span %v decodes to %q", name, task, s, a)
				}
			}
		}
	}
}
