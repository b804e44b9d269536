package train

import (
	"time"
)

// BenchResult is the speed of training steps (forward, cross-entropy, backward with
// recomputation) of one sequence length.
type BenchResult struct {
	SeqLen, Reps    int
	TokensPerS      []float64 // one per repetition
	Matmul, Attn    float64   // shares of the time in weight products and in attention
	Rest            float64   // norms, RoPE, SwiGLU, softmax of the logits, copies
	MaskedAttention bool      // PruLong's mix: full and streaming attention both computed
}

// Bench times reps training steps of n over ids (one warm-up step first), with every
// gate at 0.5 (full and streaming attention both computed, as PruLong trains) when
// gated is set, else full attention only.
func Bench(n *Net, ids []int, reps int, gated bool) (BenchResult, error) {
	var gates []float32
	if gated {
		gates = make([]float32, n.Config.Layers*n.Config.KVHeads)
		for i := range gates {
			gates[i] = 0.5
		}
	}
	targets := make([]int, len(ids))
	for i := range targets {
		targets[i] = -1
		if i+1 < len(ids) {
			targets[i] = ids[i+1]
		}
	}
	r := BenchResult{SeqLen: len(ids), Reps: reps, MaskedAttention: gated}
	var total time.Duration
	for rep := -1; rep < reps; rep++ {
		if rep == 0 {
			n.Timing.Matmul, n.Timing.Attention = 0, 0
		}
		t0 := time.Now()
		if err := n.Forward(ids, gates); err != nil {
			return r, err
		}
		if _, _, err := n.CrossEntropy(targets, 1); err != nil {
			return r, err
		}
		n.Backward()
		d := time.Since(t0)
		if rep >= 0 {
			total += d
			r.TokensPerS = append(r.TokensPerS, float64(len(ids))/d.Seconds())
		}
	}
	r.Matmul = n.Timing.Matmul.Seconds() / total.Seconds()
	r.Attn = n.Timing.Attention.Seconds() / total.Seconds()
	r.Rest = 1 - r.Matmul - r.Attn
	return r, nil
}
