package kv

import "math"

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

	buf        []int
	keys, cand []uint64
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
// position wins) and entries [hi, Len()); the result is in position order. The k best are
// found by a radix selection on rankKey, O(hi − lo) instead of a sort: SnapKV's post-fill
// eviction at 32K keeps 16K of 32K entries in each of the 8B shape's 1024 expanded heads
// (BenchmarkKeepTop).
func (f *Forward) keepTop(score []float32, lo, hi, k int) []int {
	k = max(0, min(k, hi-lo))
	out := f.kept()
	for i := 0; i < lo; i++ {
		out = append(out, i)
	}
	if k > 0 {
		keys := growN(&f.keys, hi-lo)
		for i := range keys {
			keys[i] = rankKey(score[i], lo+i)
		}
		t := kthLargest(keys, k, &f.cand)
		for i, key := range keys {
			if key >= t {
				out = append(out, lo+i)
			}
		}
	}
	for i := hi; i < f.Len(); i++ {
		out = append(out, i)
	}
	f.buf = out
	return out
}

// rankKey orders entries as keepTop ranks them: a higher score first (NaN last, −0 as +0,
// as cmp.Compare orders floats), then the earlier position. Keys are distinct for distinct
// positions below 2³².
func rankKey(score float32, pos int) uint64 {
	var b uint32
	switch {
	case score != score:
		b = 0
	case score == 0:
		b = 1 << 31
	default:
		b = math.Float32bits(score)
		if b>>31 == 1 {
			b = ^b
		} else {
			b |= 1 << 31
		}
	}
	return uint64(b)<<32 | uint64(^uint32(pos))
}

// kthLargest returns the k-th largest (1 ≤ k ≤ len(keys)) of distinct keys, a byte at a time
// from the top: each pass counts the remaining candidates' next byte and keeps those whose
// byte holds the k-th. cand is scratch.
func kthLargest(keys []uint64, k int, cand *[]uint64) uint64 {
	c := append((*cand)[:0], keys...)
	for shift := 56; shift >= 0 && len(c) > 1; shift -= 8 {
		var hist [256]int
		for _, x := range c {
			hist[x>>shift&255]++
		}
		b := 255
		for ; k > hist[b]; b-- {
			k -= hist[b]
		}
		n := 0
		for _, x := range c {
			if x>>shift&255 == uint64(b) {
				c[n] = x
				n++
			}
		}
		c = c[:n]
	}
	*cand = c
	return c[k-1]
}

// avgPool smooths x with a centred window of `kernel` (odd) and zero padding counted
// in the denominator, like torch's avg_pool1d(padding=kernel/2) in SnapKV.
func (f *Forward) avgPool(x []float32, kernel int) []float32 {
	out := grow(&f.pool, len(x))
	r := kernel / 2
	inv := 1 / float32(kernel)
	for j := range out {
		var s float32
		for _, v := range x[max(0, j-r):min(len(x), j+r+1)] { // summed in order, as before
			s += v
		}
		out[j] = s * inv
	}
	return out
}
