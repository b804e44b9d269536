package kv

import "slices"

// pyramidkv is PyramidKV: SnapKV's scoring, modes and capacities (see snapkv) with a
// per-layer budget that falls linearly from the first layer to the last (beta = 20),
// as the paper's PyramidKV cluster computes it from the capacity cap of a compression
// of q tokens with window w (docs/METHODS.md §5.3; footprint.PyramidBudget):
//
//	min = (cap−w) // β;  max = 2(cap−w) − min
//	if max ≥ q−w: max = q−w; min = 2(cap−w) − max
//	budget(ℓ) = max − ℓ·((max−min) // (L−1))
//
// q < 2(cap−w) keeps cap−w like SnapKV (uniform at low sparsity, as in the paper).
// Spec: pyramidkv:sparsity=X,window=64,pool=5[,chunked=true][,patch=Q][,gqa=expand|mean][,beta=20].
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
