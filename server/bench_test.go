package server

import (
	"strconv"
	"testing"

	"github.com/kvfoot/kvfoot/kv"
	"github.com/kvfoot/kvfoot/model"
)

// BenchmarkDecodeBatch is the cost of one engine tick of b decode steps on the built-in
// model (each sequence with 256 tokens of full-attention cache): the batched forward
// that continuous batching runs. Reported per token: ns/op ÷ b.
func BenchmarkDecodeBatch(b *testing.B) {
	m, err := model.Load(builtin, model.LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	r := model.NewRunner(m, 64)
	for _, n := range []int{1, 2, 4, 8, 16, 64} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			seqs := make([]model.Seq, n)
			next := make([][1]int, n)
			for i := range seqs {
				c, err := kv.New(kv.Shape(m.Shape()), "full")
				if err != nil {
					b.Fatal(err)
				}
				prompt := make([]int, 256)
				for k := range prompt {
					prompt[k] = (k*31 + i) % 256
				}
				if _, err := r.Prefill(c, prompt, model.PrefillOptions{}); err != nil {
					b.Fatal(err)
				}
				seqs[i] = model.Seq{Cache: c, IDs: next[i][:]}
			}
			b.ResetTimer()
			for range b.N {
				for i := range seqs {
					seqs[i].Step = model.Step{Pos: seqs[i].Cache.Pos(), Rows: 1}
				}
				if err := r.ForwardBatch(seqs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
