package kv

import "github.com/kvfoot/kvfoot/footprint"

// snapkv is SnapKV: tokens are scored by the attention the observation window's
// queries give them, smoothed by average pooling (kernel pool, zero padding counted);
// the window itself is always kept. How much a compression keeps is the paper's
// harness arithmetic (docs/METHODS.md §4.3, §5.2; footprint.Exact reproduces it):
//
// Spec: snapkv:sparsity=X,window=64,pool=5[,chunked=true][,patch=Q][,gqa=expand|mean]
//   - post-fill (default): one eviction after the pre-fill, scored by the prompt's last
//     window queries against everything, to the harness's unchunked capacity
//     ceil64(max(int((1−X)·(m+1)), window)) of the m pre-filled entries (sized, as
//     the harness does, by the whole prompt: its last token is decoded first);
//   - chunked=true (the paper's SnapKV*): every pre-fill chunk of n tokens is
//     compressed when done, scored by its last window queries with a softmax over the
//     chunk's keys only (docs/METHODS.md §6.7); the chunk's capacity is int((1−X)·n), window included: it
//     keeps its last window tokens and the top int((1−X)·n)−window others, or the
//     window alone when the capacity does not exceed it. Decoding never evicts;
//   - patch=Q (chunked only): the prompt's last Q tokens are appended to every
//     non-final chunk and play the window: their queries score the chunk, which keeps
//     its top int((1−X)·n) tokens, and they are dropped;
//   - gqa=expand (default, the paper's sweeps): the cache holds a copy of every KV
//     head for each of its query heads and each query head evicts by its own scores
//     (Heads/KVHeads times the entries and bytes, which the meter counts);
//     gqa=mean scores a KV head by the mean over its query heads and evicts once per
//     KV head (the harness's compress_group_kvs, its real-memory runs).
type snapkv struct {
	sparsity     float64
	window, pool int
	chunked      bool
	patch        int
	expanded     bool
	pyramid      bool // per-layer budgets (pyramidkv.go)
	beta         int
}

// snapParams are SnapKV's keys, shared with PyramidKV.
var snapParams = []Param{
	{Key: "sparsity", Type: Float, Min: 0, Max: 1, Required: true, Doc: "fraction of tokens evicted, 0…1"},
	{Key: "window", Type: Int, Default: "64", Min: 1, Max: 1 << 30, Doc: "observation window: the last queries that score, always kept"},
	{Key: "pool", Type: Int, Default: "5", Min: 1, Max: 1 << 10, Doc: "odd average-pooling kernel over the scores"},
	{Key: "chunked", Type: Bool, Default: "false", Doc: "evict after every pre-fill chunk (SnapKV*) instead of once after the pre-fill"},
	{Key: "patch", Type: Int, Default: "0", Min: 0, Max: 1 << 20, Doc: "score each chunk with the prompt's last Q tokens appended (chunked only)"},
	{Key: "gqa", Type: Choice, Default: "expand", Choices: []string{"expand", "mean"},
		Doc: "expand: evict per query head on a cache expanded to every query head (the paper's sweeps); mean: per KV head, by the group's mean score"},
}

func init() {
	mustAdd(Registration{Name: "snapkv", Kind: Selector, Example: "snapkv:sparsity=0.5,window=64,pool=5,chunked=true",
		Doc: "SnapKV: tokens scored by the observation window's pooled attention; post-fill or after every chunk", Params: snapParams,
		NewSelector: func(a Args) (Policy, error) { return newSnapKV(a) }})
}

func newSnapKV(a Args) (*snapkv, error) {
	p := &snapkv{sparsity: a.Float("sparsity"), window: a.Int("window"), pool: a.Int("pool"), chunked: a.Bool("chunked"),
		patch: a.Int("patch"), expanded: a.Text("gqa") == "expand"}
	if p.pool%2 == 0 {
		return nil, a.Errorf("pool=%d: want an odd kernel size", p.pool)
	}
	if p.patch > 0 && !p.chunked {
		return nil, a.Errorf("patch=%d needs chunked=true (the patch scores pre-fill chunks)", p.patch)
	}
	return p, nil
}

func (p *snapkv) patchLen() int { return p.patch }

func (p *snapkv) expand() bool { return p.expanded }

// plan is one eviction: the n entries from lo are compressed to the window rows
// [lo+n−w, lo+n) (the patch's when w is 0 here: its rows were dropped already) plus
// the top top of [lo, lo+n−w).
type plan struct{ lo, n, w, top int }

// plan returns the eviction of forward f, or false if it keeps everything.
func (p *snapkv) plan(f *Forward) (plan, bool) {
	var lo, n, capacity int
	switch {
	case p.chunked && f.Prefill:
		lo, n, capacity = f.Past, f.N, footprint.ChunkCapacity(p.sparsity, f.N)
	case !p.chunked && f.Final:
		lo, n, capacity = 0, f.Len(), footprint.PostFillCapacity(p.sparsity, f.Len()+1, p.window)
	default:
		return plan{}, false
	}
	if f.Patch > 0 {
		// the patch rows are the cluster's window: it keeps them and the top of the chunk
		w := f.Patch
		kept := p.cluster(f, n+w, capacity+w, w) - w
		return plan{lo, n, 0, kept}, kept < n
	}
	w := min(p.window, n)
	kept := p.cluster(f, n, capacity, p.window)
	return plan{lo, n, w, kept - w}, kept < n
}

// cluster is how many of q rows SnapKV's (or PyramidKV's) cluster keeps at capacity c
// with window w in f's layer.
func (p *snapkv) cluster(f *Forward, q, c, w int) int {
	if p.pyramid {
		return footprint.PyramidKept(q, c, w, f.Layer, f.Layers, p.beta)
	}
	return footprint.SnapKVKept(q, c, w)
}

func (p *snapkv) Scores(f *Forward) ScoreRequest {
	if _, ok := p.plan(f); !ok {
		return ScoreRequest{}
	}
	if f.Patch > 0 {
		return ScoreRequest{From: f.N, To: f.N + f.Patch, Local: true}
	}
	return ScoreRequest{From: f.N - p.window, To: f.N, Local: p.chunked}
}

// keepsConcurrently: Keep reads only f and the settings.
func (p *snapkv) keepsConcurrently() bool { return true }

func (p *snapkv) Keep(f *Forward) []int {
	e, ok := p.plan(f)
	if !ok {
		return nil
	}
	hi := e.lo + e.n - e.w // candidates [lo, hi); the window [hi, lo+n) is kept
	return f.keepTop(f.avgPool(f.Scores[e.lo:hi], p.pool), e.lo, hi, e.top)
}
