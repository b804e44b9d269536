package eval

import (
	"testing"

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
