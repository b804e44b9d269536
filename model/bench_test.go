package model_test

import (
	"fmt"
	"testing"

	"github.com/kvfoot/kvfoot/kv"
	"github.com/kvfoot/kvfoot/model"
	"github.com/kvfoot/kvfoot/tensor"
)

// BenchmarkSmolLM2 measures pre-fill (tokens/s over a 512-token prompt in one
// chunk) and decode (one token after 512 of context) of a random-weight model
// shaped like SmolLM2-135M, on 1 and 2 threads. `kvfoot bench` covers longer contexts.
func BenchmarkSmolLM2(b *testing.B) {
	m := model.NewRandom(model.Presets["smollm2-135m"], 1)
	ids := make([]int, 513)
	for i := range ids {
		ids[i] = (i * 7919) % m.Config.Vocab
	}
	newCache := func() *kv.Cache {
		c, err := kv.New(kv.Shape(m.Shape()), "full")
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	defer tensor.SetThreads(tensor.Threads())
	for _, threads := range []int{1, 2} {
		tensor.SetThreads(threads)
		b.Run(fmt.Sprintf("prefill512/threads=%d", threads), func(b *testing.B) {
			r := model.NewRunner(m, 512)
			for b.Loop() {
				if _, err := r.Prefill(newCache(), ids[:512], model.PrefillOptions{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(512*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
		b.Run(fmt.Sprintf("decode@512/threads=%d", threads), func(b *testing.B) {
			r := model.NewRunner(m, 512)
			c := newCache()
			if _, err := r.Prefill(c, ids[:512], model.PrefillOptions{}); err != nil {
				b.Fatal(err)
			}
			// each step appends one token: with a few hundred steps the context stays near 512
			for b.Loop() {
				if _, err := r.Decode(c, ids[512]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
