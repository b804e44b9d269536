package kv

import (
	"cmp"
	"slices"
)

// Policy decides what each KV head keeps. The cache calls it once per forward pass
// and KV head, after that forward's attention: Scores before attention (which
// queries' attention probabilities the policy needs, if any), Keep after it.
// A policy is written once and sees pre-fill chunks and decode steps alike.
//
// GQA: a KV head is the unit of eviction; scores are the mean over the query heads of
// its group (SnapKV's compress_group_kvs; docs/METHODS.md §6.1).
type Policy interface {
	Scores(f *Forward) ScoreRequest
	// Keep returns the entries to keep, ascending, or nil to keep all of them.
	Keep(f *Forward) []int
}

// Forward is one forward pass as one KV head sees it.
type Forward struct {
	Layer, Head int // the stored head (the KV head, or a query head of an expanded cache)
	KVHead      int // the model's KV head whose keys it holds
	Layers      int // layers of the model
	Past        int // entries kept before this forward
	N           int // tokens of the chunk (patch tokens excluded)
	Patch       int // patch tokens that followed the chunk (scored, never kept)
	Prefill     bool
	Final       bool // the last forward of the pre-fill
	// Pos are the positions of the head's Past+N entries.
	Pos []int32
	// Scores are the probabilities asked for by Scores, one per entry (Past+N), summed
	// over the asked queries and averaged over the group's query heads; nil if none.
	Scores []float32

	buf, order []int
	pool       []float32
}

// Len is the number of entries the head holds: Past+N.
func (f *Forward) Len() int { return f.Past + f.N }

// ScoreRequest asks for the attention probabilities of queries [From, To) of the
// forward (indices count patch tokens after the chunk's N). Local normalises them over
// this forward's keys only, as SnapKV's compressor does on one chunk (docs/METHODS.md §5.4, §6.7);
// otherwise they are the probabilities the attention really used.
type ScoreRequest struct {
	From, To int
	Local    bool
}

func (r ScoreRequest) none() bool { return r.To <= r.From }

// patcher is implemented by policies that score pre-fill chunks with the prompt's last
// tokens appended (SnapKV's patch; docs/METHODS.md §4.4).
type patcher interface{ patchLen() int }

// kept is an empty list of kept entries, never nil: nil means "keep all", so a
// policy that keeps none (a zero sink and window) must say so with an empty list.
func (f *Forward) kept() []int {
	if f.buf == nil {
		f.buf = make([]int, 0, 64)
	}
	return f.buf[:0]
}

// runDropper is implemented by policies whose eviction of a head can be one run of
// entries (a sink, then a recent window: streaming, headmask's streaming heads). dropRun
// names the run [lo, hi) that goes, where Keep lists every kept entry: for a window of
// W entries O(1) a step instead of O(W) in the policy, the positions and the storage
// (256 heads of 16K entries: about 17 ms of host time a decode step by Keep, 0.3 ms by
// the run; BenchmarkEvictionHost here and cuda's BenchmarkStreamingKeep). ok false: ask Keep.
type runDropper interface {
	dropRun(f *Forward) (lo, hi int, ok bool)
}

// sinkWindowRun is the run keepSinkWindow drops: empty while the head holds no more
// than sink+window entries.
func (f *Forward) sinkWindowRun(sink, window int) (lo, hi int) {
	if n := f.Len(); n > sink+window {
		return sink, n - window
	}
	return 0, 0
}

// keepSinkWindow keeps the first sink and the last window entries: every entry but
// sinkWindowRun's, listed (what a caller of Keep gets; the cache asks dropRun).
func (f *Forward) keepSinkWindow(sink, window int) []int {
	lo, hi := f.sinkWindowRun(sink, window)
	if hi <= lo {
		return nil
	}
	f.buf = AppendKept(f.kept(), f.Len(), lo, hi)
	return f.buf
}

// keepTop keeps entries [0, lo), the k best of [lo, hi) by score (ties: the earlier
// position wins) and entries [hi, Len()); the result is in position order.
func (f *Forward) keepTop(score []float32, lo, hi, k int) []int {
	k = max(0, min(k, hi-lo))
	o := f.order[:0]
	for i := lo; i < hi; i++ {
		o = append(o, i)
	}
	slices.SortFunc(o, func(a, b int) int {
		if c := cmp.Compare(score[b-lo], score[a-lo]); c != 0 {
			return c
		}
		return a - b
	})
	top := o[:k]
	slices.Sort(top)
	out := f.kept()
	for i := 0; i < lo; i++ {
		out = append(out, i)
	}
	out = append(out, top...)
	for i := hi; i < f.Len(); i++ {
		out = append(out, i)
	}
	f.order, f.buf = o, out
	return out
}

// avgPool smooths x with a centred window of `kernel` (odd) and zero padding counted
// in the denominator, like torch's avg_pool1d(padding=kernel/2) in SnapKV.
func (f *Forward) avgPool(x []float32, kernel int) []float32 {
	out := grow(&f.pool, len(x))
	r := kernel / 2
	inv := 1 / float32(kernel)
	for j := range out {
		var s float32
		for t := max(0, j-r); t <= min(len(x)-1, j+r); t++ {
			s += x[t]
		}
		out[j] = s * inv
	}
	return out
}
