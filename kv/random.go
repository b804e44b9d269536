package kv

import (
	"math/rand/v2"

	"github.com/kvfoot/kvfoot/footprint"
)

// random is a control for the scoring methods: after every pre-fill chunk of n tokens
// each KV head keeps what SnapKV* keeps, its last window tokens and
// SnapKVKept(n, int((1−X)·n), window) in all, but picks the others uniformly at random
// instead of by attention. Its footprint is SnapKV*'s (unpatched, gqa=mean) at every
// setting, so a scoring method that scores below it at the same footprint chooses
// against the task. Decoding never evicts.
//
// Spec: random:sparsity=X,window=64,seed=S.
type random struct {
	sparsity float64
	window   int
	seed     uint64
	score    []float32
}

func init() {
	mustAdd(Registration{Name: "random", Kind: Selector, Example: "random:sparsity=0.5,window=64",
		Doc: "control: SnapKV*'s budget after every pre-fill chunk, the kept tokens drawn at random",
		Params: []Param{
			{Key: "sparsity", Type: Float, Min: 0, Max: 1, Required: true, Doc: "fraction of each chunk's tokens evicted, 0…1"},
			{Key: "window", Type: Int, Default: "64", Min: 0, Max: 1 << 30, Doc: "each chunk's last tokens, always kept"},
			{Key: "seed", Type: Int, Default: "1", Min: 0, Max: 1 << 62, Doc: "seed of the draws (each layer, head and chunk its own stream)"},
		},
		NewSelector: func(a Args) (Policy, error) {
			return &random{sparsity: a.Float("sparsity"), window: a.Int("window"), seed: uint64(a.Int("seed"))}, nil
		}})
}

func (*random) Scores(*Forward) ScoreRequest { return ScoreRequest{} }

func (p *random) Keep(f *Forward) []int {
	if !f.Prefill {
		return nil
	}
	n, w := f.N, min(p.window, f.N)
	kept := footprint.SnapKVKept(n, footprint.ChunkCapacity(p.sparsity, n), w)
	if kept >= n {
		return nil
	}
	rng := rand.New(rand.NewPCG(p.seed, uint64(f.Layer)<<48|uint64(f.Head)<<32|uint64(f.Past)))
	lo, hi := f.Past, f.Past+n-w
	score := grow(&p.score, hi-lo)
	for i := range score {
		score[i] = rng.Float32()
	}
	return f.keepTop(score, lo, hi, kept-w)
}
