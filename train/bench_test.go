package train

import (
	"fmt"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/kvfoot/kvfoot/model"
	"github.com/kvfoot/kvfoot/tensor"
)

// BenchmarkTrainStep times one PruLong training step of the built-in model (forward
// with every gate at 0.5, so full and streaming attention are both computed,
// cross-entropy, backward with recomputation; no weight gradients) and reports
// tokens/s and the shares of time in weight products and in attention. Run with
// -cpu 1,2,… for thread counts.
func BenchmarkTrainStep(b *testing.B) {
	m, err := model.Load(filepath.Join("..", "models", "kvfoot-small"), model.LoadOptions{})
	if err != nil {
		b.Skip(err)
	}
	defer m.Close()
	for _, T := range []int{512, 2048} {
		b.Run(fmt.Sprintf("seq=%d", T), func(b *testing.B) {
			tensor.SetThreads(runtime.GOMAXPROCS(0))
			n, err := New(m, Options{MaxLen: T, Sink: 16, Window: 256})
			if err != nil {
				b.Fatal(err)
			}
			ids := make([]int, T)
			for i := range ids {
				ids[i] = (i*7919 + 13) % m.Config.Vocab
			}
			var r BenchResult
			b.ResetTimer()
			for range b.N {
				if r, err = Bench(n, ids, 1, true); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(r.TokensPerS[0], "tokens/s")
			b.ReportMetric(100*r.Matmul, "%matmul")
			b.ReportMetric(100*r.Attn, "%attention")
		})
	}
}
