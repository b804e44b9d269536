package kv

import (
	"slices"

	"github.com/kvfoot/kvfoot/footprint"
)

// locret is Locret's eviction as the paper's harness runs it (docs/METHODS.md, Locret;
// footprint.LocretExact is its arithmetic): every token gets an importance score once,
// when its chunk is processed, and keeps it; after every pre-fill chunk each KV head
// keeps its budget of highest-scoring entries in position order, the budget being over
// everything seen so far, max(ceil64(int((1−X)·seen)), stabilizers); after every chunk
// but the last the stabilizers most recent entries are kept whatever their score. The
// prompt's last local tokens are pre-filled as a chunk of their own (LocalChunk).
// Decoding never evicts.
//
// Locret scores with a trained retaining head per layer (an MLP on each token's query,
// key and value), which exists for no model kvfoot runs; this policy scores a token by
// the attention its chunk's queries gave it (the mean over its group's query heads),
// the nearest signal the cache has. Spec: locret:sparsity=X,local=100,stabilizers=2500.
type locret struct {
	sparsity           float64
	local, stabilizers int
	score              [][][]float32 // [layer][KV head][entry]
}

func init() {
	mustAdd(Registration{Name: "locret", Kind: Selector, Example: "locret:sparsity=0.5,local=100,stabilizers=2500",
		Doc: "Locret: a budget over all seen tokens, kept by each token's score from when it was processed; the prompt's last local tokens pre-filled last",
		Params: []Param{
			{Key: "sparsity", Type: Float, Min: 0, Max: 1, Required: true, Doc: "fraction of tokens evicted, 0…1"},
			{Key: "local", Type: Int, Default: "100", Min: 0, Max: 1 << 30, Doc: "the prompt's last tokens, pre-filled as a chunk of their own"},
			{Key: "stabilizers", Type: Int, Default: "2500", Min: 0, Max: 1 << 30, Doc: "most recent entries always kept after a non-final chunk; the least budget"},
		},
		NewSelector: func(a Args) (Policy, error) {
			p := &locret{sparsity: a.Float("sparsity"), local: a.Int("local"), stabilizers: a.Int("stabilizers"),
				score: make([][][]float32, a.Shape().Layers)}
			for l := range p.score {
				p.score[l] = make([][]float32, a.Shape().KVHeads)
			}
			return p, nil
		}})
}

func (p *locret) localChunk() int { return p.local }

func (p *locret) Scores(f *Forward) ScoreRequest {
	if !f.Prefill {
		return ScoreRequest{}
	}
	return ScoreRequest{From: 0, To: f.N}
}

func (p *locret) Keep(f *Forward) []int {
	if !f.Prefill {
		return nil // decoding appends; nothing is scored or evicted again
	}
	sc := p.score[f.Layer][f.Head]
	sc = append(sc[:f.Past], f.Scores[f.Past:f.Len()]...)
	p.score[f.Layer][f.Head] = sc
	seen := int(f.Pos[f.Len()-1]) + 1
	n := min(footprint.LocretBudget(p.sparsity, seen, p.stabilizers), f.Len())
	if n == f.Len() {
		return nil
	}
	hi := f.Len()
	if !f.Final {
		hi = max(0, f.Len()-p.stabilizers) // the stabilizers are kept, the rest by score
	}
	keep := f.keepTop(sc, 0, hi, n-(f.Len()-hi))
	for i, j := range keep {
		sc[i] = sc[j]
	}
	p.score[f.Layer][f.Head] = slices.Clip(sc[:len(keep)])
	return keep
}

// dropFront drops the state of the entries a local layer's window evicted.
func (p *locret) dropFront(layer, head, n int) {
	x := p.score[layer][head]
	n = min(n, len(x))
	p.score[layer][head] = x[:copy(x, x[n:])]
}
