package model_test

import (
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/kvfoot/kvfoot/format/safetensors"
	"github.com/kvfoot/kvfoot/model"
)

// TestBuiltinModelMatchesReference checks kvfoot's built-in model (a Q8_0 GGUF) against
// a float64 forward pass written apart from kvfoot (../shared/tools/llamacpp-peer's
// gguf-ref-forward, llama.cpp's semantics; tools/oracle/gguf_reference.py), at six positions of 300 tokens of Python
// source, whole and in chunks of 64: with the blocks widened to float32 within 1e-3 of
// the largest logit, as for the safetensors models; on the blocks themselves (8-bit
// activations, as llama.cpp computes them) within relative L2 2.5e-2 (measured: 1.1-1.8e-2,
// the activations' rounding; widened, 1e-5) and the same argmax wherever the reference's
// top two are further apart than the error.
func TestBuiltinModelMatchesReference(t *testing.T) {
	f, err := safetensors.Open(filepath.Join("..", "testdata", "builtin", "reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	it, ok := f.Tensor("input_ids")
	pt, ok2 := f.Tensor("positions")
	lt, ok3 := f.Tensor("logits")
	if !ok || !ok2 || !ok3 {
		t.Fatal("reference lacks input_ids, positions or logits")
	}
	ids64, err := it.Int64s()
	if err != nil {
		t.Fatal(err)
	}
	pos, err := pt.Int64s()
	if err != nil {
		t.Fatal(err)
	}
	want, err := lt.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]int, len(ids64))
	for i, v := range ids64 {
		ids[i] = int(v)
	}
	vocab := len(want) / len(pos)
	for _, widen := range []bool{true, false} {
		m, err := model.Load(filepath.Join("..", "models", "kvfoot-small"), model.LoadOptions{F32: widen})
		if err != nil {
			t.Fatal(err)
		}
		for _, chunk := range []int{0, 64} {
			all := allLogits(t, m, ids, chunk)
			for k, p := range pos {
				got, ref := all[int(p)*vocab:int(p+1)*vocab], want[k*vocab:(k+1)*vocab]
				if widen {
					checkLogits(t, got, ref)
					continue
				}
				e := relL2(got, ref)
				if !(e <= 2.5e-2) {
					t.Errorf("Q8_0 blocks, chunk %d, position %d: relative L2 %.3g, want ≤ 2.5e-2", chunk, p, e)
				}
				t.Logf("Q8_0 blocks, chunk %d, position %d: relative L2 %.3g", chunk, p, e)
				// A different argmax only where the reference's own margin is within the error.
				worst := 0.0
				for i := range ref {
					worst = max(worst, math.Abs(float64(got[i]-ref[i])))
				}
				a, b := slices.Index(got, slices.Max(got)), slices.Index(ref, slices.Max(ref))
				if margin := float64(ref[b] - ref[a]); a != b && margin > worst {
					t.Errorf("Q8_0 blocks, chunk %d, position %d: argmax %d, reference %d by a margin of %.3g (max |diff| %.3g)", chunk, p, a, b, margin, worst)
				}
			}
		}
		m.Close()
	}
}
