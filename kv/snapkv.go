package kv

import "math"

// snapkv is SnapKV: tokens are scored by the attention the observation window's
// queries give them (mean over the group's query heads, so eviction is per KV head:
// compress_group_kvs), smoothed by average pooling (kernel pool, zero padding counted);
// the window itself is always kept.
//
// Spec: snapkv:sparsity=X,window=64,pool=5[,chunked=true][,patch=Q]
//   - post-fill (default): one eviction after the pre-fill, scored by the prompt's last
//     window queries against everything; keeps the window plus the top round((1−X)·m)
//     of the other m−window entries, at most m in all.
//   - chunked=true (the paper's SnapKV*): every pre-fill chunk of n tokens is
//     compressed when done, scored by its last window queries with a softmax over the
//     chunk's keys only (docs/METHODS.md §6.7); it keeps the chunk's last window
//     tokens plus the top round((1−X)·n) others, at most n: exactly the
//     min(round((1−X)n)+64, n) that the paper's accounting assumes (§1.3; the paper's
//     harness keeps int((1−X)n), §1.10). Decoding never evicts.
//   - patch=Q (chunked only): the prompt's last Q tokens are appended to every
//     non-final chunk and their queries score the chunk; then the chunk keeps its top
//     min(round((1−X)n)+window, n) tokens (no protected window: the patch plays its
//     role) and the patch tokens are dropped.
type snapkv struct {
	sparsity     float64
	window, pool int
	chunked      bool
	patch        int
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
}

func init() {
	mustAdd(Registration{Name: "snapkv", Kind: Selector, Example: "snapkv:sparsity=0.5,window=64,pool=5,chunked=true",
		Doc: "SnapKV: tokens scored by the observation window's pooled attention; post-fill or after every chunk", Params: snapParams,
		NewSelector: func(a Args) (Policy, error) { return newSnapKV(a) }})
}

func newSnapKV(a Args) (*snapkv, error) {
	p := &snapkv{sparsity: a.Float("sparsity"), window: a.Int("window"), pool: a.Int("pool"), chunked: a.Bool("chunked"), patch: a.Int("patch")}
	if p.pool%2 == 0 {
		return nil, a.Errorf("pool=%d: want an odd kernel size", p.pool)
	}
	if p.patch > 0 && !p.chunked {
		return nil, a.Errorf("patch=%d needs chunked=true (the patch scores pre-fill chunks)", p.patch)
	}
	return p, nil
}

func (p *snapkv) patchLen() int { return p.patch }

// kept is the number of tokens a compression of n tokens keeps.
func (p *snapkv) kept(n int) int {
	return min(int(math.RoundToEven((1-p.sparsity)*float64(n)))+p.window, n)
}

// span is the range of entries one eviction works on: a chunk, or the whole prompt.
func (p *snapkv) span(f *Forward) (lo, n int, ok bool) {
	switch {
	case p.chunked && f.Prefill:
		lo, n = f.Past, f.N
	case !p.chunked && f.Final:
		lo, n = 0, f.Len()
	default:
		return 0, 0, false
	}
	return lo, n, p.kept(n) < n
}

func (p *snapkv) Scores(f *Forward) ScoreRequest {
	if _, _, ok := p.span(f); !ok {
		return ScoreRequest{}
	}
	if f.Patch > 0 {
		return ScoreRequest{From: f.N, To: f.N + f.Patch, Local: true}
	}
	return ScoreRequest{From: f.N - p.window, To: f.N, Local: p.chunked}
}

func (p *snapkv) Keep(f *Forward) []int {
	lo, n, ok := p.span(f)
	if !ok {
		return nil
	}
	window := p.window
	if f.Patch > 0 {
		window = 0
	}
	hi := lo + n - window // candidates [lo, hi); the window [hi, lo+n) is kept
	top := p.kept(n) - window
	if p.pyramid {
		top = pyramidBudget(f.Layer, f.Layers, p.beta, n, p.kept(n), window)
	}
	return f.keepTop(f.avgPool(f.Scores[lo:hi], p.pool), lo, hi, top)
}
