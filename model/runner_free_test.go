package model_test

import (
	"testing"

	"github.com/kvfoot/kvfoot/compute"
	"github.com/kvfoot/kvfoot/model"
)

// freeCounter is the CPU backend that also frees (compute.Freer), counting the buffers it
// holds, as a GPU holds device memory that the collector does not return.
type freeCounter struct {
	compute.Backend
	live, frees int
}

func (f *freeCounter) Alloc(n int) compute.Buf { f.live++; return f.Backend.Alloc(n) }
func (f *freeCounter) Free(compute.Buf) error  { f.live--; f.frees++; return nil }

// A runner that grows frees the buffers it outgrew, and Close frees the rest: none is left
// held once the runner is closed, and Generate closes the runner it makes.
func TestRunnerFreesItsBuffers(t *testing.T) {
	m, err := model.Load("../testdata/models/llama-gqa", model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	fc := &freeCounter{Backend: compute.CPU}
	m.SetBackend(fc)
	r := model.NewRunner(m, 2)
	const perGrow = 10 // x, xb, q, att, k, v, gate, up, cos, sin (no local layers)
	if fc.live != perGrow {
		t.Fatalf("%d buffers after NewRunner, want %d", fc.live, perGrow)
	}
	ids := []int{5, 17, 99, 3, 250, 7, 7, 8}
	c := newCache(t, m)
	if _, err := r.Forward(c, ids, model.Step{Pos: 0, Rows: len(ids), Prefill: true, Final: true}, false); err != nil {
		t.Fatal(err)
	}
	// grown to 8 rows: the 10 old buffers freed, 10 new ones, plus hidden and logits
	if fc.live != perGrow+2 || fc.frees != perGrow {
		t.Errorf("after growing: %d buffers held, %d freed; want %d and %d", fc.live, fc.frees, perGrow+2, perGrow)
	}
	if err := r.Close(); err != nil || fc.live != 0 {
		t.Errorf("after Close: %d buffers held (%v), want 0", fc.live, err)
	}
	if _, err := model.Generate(m, newCache(t, m), ids, model.GenerateOptions{MaxTokens: 3, Chunk: 4}); err != nil {
		t.Fatal(err)
	}
	if fc.live != 0 {
		t.Errorf("after Generate: %d buffers held, want 0", fc.live)
	}
}
