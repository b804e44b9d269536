package tasks

import (
	"path/filepath"
	"testing"

	"github.com/kvfoot/kvfoot/tokenizer"
)

// BenchmarkDocument measures training-document generation per task with the Llama
// 3.1 tokenizer: go test ./tasks -bench Document -run XXX
func BenchmarkDocument(b *testing.B) {
	tok, err := tokenizer.Load(filepath.Join("..", "testdata", "tokenizers", "llama3_1", "tokenizer.json.gz"))
	if err != nil {
		b.Skip(err)
	}
	c, err := DefaultCorpus()
	if err != nil {
		b.Fatal(err)
	}
	for _, name := range append(Names(), CorpusTask) {
		b.Run(name, func(b *testing.B) {
			o := Options{Corpus: c, Tokenizer: tok, Queries: 16}
			for i := 0; b.Loop(); i++ {
				if _, err := Document(name, 4096, i, 1, o); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)*4096/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
