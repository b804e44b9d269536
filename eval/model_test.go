package eval

import (
	"math"
	"testing"

	"github.com/kvfoot/kvfoot/footprint"
	"github.com/kvfoot/kvfoot/model"
)

// The model backend stops when the stop function says so, or at maxNew.
func TestModelBackend(t *testing.T) {
	m, err := model.Load("../testdata/models/llama-gqa", model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	b := &ModelBackend{M: m, Chunk: 16}
	if b.Context() != 1024 {
		t.Errorf("context %d, want max_position_embeddings 1024", b.Context())
	}
	prompt := []int{5, 17, 99, 3, 250, 7, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}
	out, err := b.Run("full", prompt, 10, func(o []int) bool { return len(o) == 3 })
	if err != nil || len(out.IDs) != 3 {
		t.Fatalf("stop after 3: %v, %v", out.IDs, err)
	}
	long, err := b.Run("full", prompt, 6, func([]int) bool { return false })
	if err != nil || len(long.IDs) > 6 {
		t.Fatalf("maxNew 6: %v, %v", long.IDs, err)
	}
	for i := range out.IDs {
		if out.IDs[i] != long.IDs[i] {
			t.Errorf("greedy decoding differs between runs: %v vs %v", out.IDs, long.IDs)
		}
	}
	if _, err := b.Run("bogus-policy", prompt, 2, func([]int) bool { return false }); err == nil {
		t.Error("unknown method accepted")
	}
}

// The footprint a run reports is the meter's, which for a streaming cache equals the
// paper's formula with the prompt and the R−1 decoded-and-fed tokens.
func TestModelBackendFootprint(t *testing.T) {
	m, err := model.Load("../testdata/models/llama-gqa", model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	b := &ModelBackend{M: m, Chunk: 16}
	prompt := make([]int, 70)
	for i := range prompt {
		prompt[i] = (i*37 + 11) % 500
	}
	full, err := b.Run("full", prompt, 6, func([]int) bool { return false })
	if err != nil {
		t.Fatal(err)
	}
	if full.Footprint != 1 || full.Peak != 1 {
		t.Errorf("full cache: footprint %v, peak %v, want 1 and 1", full.Footprint, full.Peak)
	}
	out, err := b.Run("streaming:sink=2,window=8", prompt, 6, func([]int) bool { return false })
	if err != nil {
		t.Fatal(err)
	}
	want, err := footprint.Analytic(footprint.Params{Prompt: len(prompt), Response: len(out.IDs) - 1,
		Chunk: 16, Sink: 2, Window: 8, HeadSparsity: 1})
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(out.Footprint-want.Footprint) > 1e-12 || math.Abs(out.Peak-want.Peak) > 1e-12 {
		t.Errorf("streaming: measured footprint %v peak %v, formula %v %v", out.Footprint, out.Peak, want.Footprint, want.Peak)
	}
	if out.PeakBytes <= 0 || out.PeakBytes >= full.PeakBytes {
		t.Errorf("peak bytes: streaming %d, full %d", out.PeakBytes, full.PeakBytes)
	}
}
