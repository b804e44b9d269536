package kv

import "slices"

// pyramidkv is PyramidKV: SnapKV's scoring and modes (see snapkv) with a per-layer
// budget that falls linearly from the first layer to the last (beta = 20), computed as
// in the paper's PyramidKV cluster (docs/METHODS.md §5.3) with the SnapKV capacity
// cap = min(round((1−X)·n)+window, n) of a compression of n tokens:
//
//	min = (cap−w) // β;  max = 2(cap−w) − min
//	if max ≥ n−w: max = n−w; min = 2(cap−w) − max
//	budget(ℓ) = max − ℓ·((max−min) // (L−1))
//
// n < 2(cap−w) keeps cap−w like SnapKV (uniform at low sparsity, as in the paper).
// Spec: pyramidkv:sparsity=X,window=64,pool=5[,chunked=true][,patch=Q][,beta=20].
func init() {
	mustAdd(Registration{Name: "pyramidkv", Kind: Selector, Example: "pyramidkv:sparsity=0.5,window=64,chunked=true,beta=20",
		Doc:    "PyramidKV: SnapKV with per-layer budgets falling from the first layer to the last",
		Params: append(slices.Clip(snapParams), Param{Key: "beta", Type: Int, Default: "20", Min: 1, Max: 1 << 20, Doc: "ratio of the first layer's budget to the last's"}),
		NewSelector: func(a Args) (Policy, error) {
			p, err := newSnapKV(a)
			if err != nil {
				return nil, err
			}
			p.pyramid, p.beta = true, a.Int("beta")
			return p, nil
		}})
}

// pyramidBudget is how many candidates (besides the window) layer keeps.
func pyramidBudget(layer, layers, beta, n, cap, w int) int {
	c := cap - w
	if n < 2*c || layers < 2 {
		return c
	}
	lo := floorDiv(c, beta)
	hi := 2*c - lo
	if hi >= n-w {
		hi = n - w
		lo = 2*c - hi
	}
	steps := floorDiv(hi-lo, layers-1)
	return max(0, hi-layer*steps)
}

func floorDiv(a, b int) int {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}
