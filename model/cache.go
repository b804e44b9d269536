package model

import (
	"fmt"

	"github.com/kvfoot/kvfoot/compute"
)

// Step is what one forward pass feeds one sequence's cache. The model tells the cache
// once, before the first layer, so that the cache never has to guess the phase of a
// forward from its number of rows.
type Step struct {
	Pos  int // position of the first row: the cache's Pos()
	Rows int // rows fed: the chunk's tokens plus Patch
	// Patch trailing rows are the prompt's last tokens, appended to a non-final
	// pre-fill chunk at the positions right after it (SnapKV's patch, docs/METHODS.md §4.4):
	// the cache attends them and lets the policy score the chunk with them, then drops
	// them, and Pos advances by Rows−Patch.
	Patch   int
	Prefill bool // a pre-fill chunk; false: a decode step
	Final   bool // the last pre-fill chunk (post-fill policies evict after it)
}

// Tokens is the number of tokens the step adds to the sequence: Rows−Patch.
func (s Step) Tokens() int { return s.Rows - s.Patch }

// Check reports a step that no cache can carry out.
func (s Step) Check() error {
	switch {
	case s.Pos < 0:
		return fmt.Errorf("step: position %d, want ≥ 0", s.Pos)
	case s.Rows < 1:
		return fmt.Errorf("step: %d rows, want ≥ 1", s.Rows)
	case s.Patch < 0 || s.Patch >= s.Rows:
		return fmt.Errorf("step: %d patch rows of %d, want 0 ≤ patch < rows", s.Patch, s.Rows)
	case s.Patch > 0 && (!s.Prefill || s.Final):
		return fmt.Errorf("step: patch rows on a %s, want them only on non-final pre-fill chunks", s.phase())
	case !s.Prefill && s.Final:
		return fmt.Errorf("step: a decode step marked final")
	}
	return nil
}

func (s Step) phase() string {
	switch {
	case !s.Prefill:
		return "decode step"
	case s.Final:
		return "final pre-fill chunk"
	}
	return "pre-fill chunk"
}

// Cache is the model's view of one sequence's KV cache. For every forward the model
// calls Begin once, Attend once per layer in layer order, then Commit. The cache
// stores the step's keys and values, computes its attention over what it holds (each
// query sees what the cache kept from earlier steps plus the step's rows causally),
// and may evict only after the rows have been attended to.
//
// q and out are [Rows, Heads·HeadDim]; k and v are [Rows, KVHeads·HeadDim], buffers
// of the model's backend (a cache stores on the same backend); keys arrive after
// RoPE, at their absolute positions Pos … Pos+Rows−1.
type Cache interface {
	Begin(s Step) error
	Attend(layer int, q, k, v, out compute.Buf)
	Commit()
	// Pos is the number of tokens fed so far: the position of the next token. It is
	// independent of how many entries eviction has left in the cache.
	Pos() int
	// PatchLen is how many of the prompt's last tokens the cache wants appended to
	// every non-final pre-fill chunk (0: none).
	PatchLen() int
	// LocalChunk is how many of the prompt's last tokens the cache wants pre-filled
	// as a final chunk of their own (0: none; PlanChunks).
	LocalChunk() int
}
