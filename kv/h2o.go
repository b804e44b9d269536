package kv

import "slices"

// h2o is H2O: each KV head keeps its recent most recent entries plus the heavy
// entries with the largest attention accumulated over every query since they were
// added (mean over the group's query heads). It evicts after every forward, pre-fill
// chunks included. Spec: h2o:heavy=K,recent=R.
type h2o struct {
	heavy, recent int
	acc           [][][]float32 // [layer][KV head][entry]
}

func init() {
	mustAdd(Registration{Name: "h2o", Kind: Selector, Example: "h2o:heavy=256,recent=256",
		Doc: "H2O: heavy hitters by accumulated attention plus a recent window, evicting after every forward",
		Params: []Param{
			{Key: "heavy", Type: Int, Default: "256", Min: 0, Max: 1 << 30, Doc: "entries kept by accumulated attention"},
			{Key: "recent", Type: Int, Default: "256", Min: 0, Max: 1 << 30, Doc: "most recent entries kept"},
		},
		NewSelector: func(a Args) (Policy, error) {
			heavy, recent := a.Int("heavy"), a.Int("recent")
			if heavy+recent == 0 {
				return nil, a.Errorf("heavy+recent must be positive")
			}
			p := &h2o{heavy: heavy, recent: recent, acc: make([][][]float32, a.Shape().Layers)}
			for l := range p.acc {
				p.acc[l] = make([][]float32, a.Shape().KVHeads)
			}
			return p, nil
		}})
}

func (p *h2o) Scores(f *Forward) ScoreRequest { return ScoreRequest{From: 0, To: f.N} }

func (p *h2o) Keep(f *Forward) []int {
	acc := p.acc[f.Layer][f.Head]
	acc = slices.Grow(acc, f.N)[:len(acc)+f.N]
	clear(acc[f.Past:])
	for j, s := range f.Scores {
		acc[j] += s
	}
	p.acc[f.Layer][f.Head] = acc
	n := f.Len()
	if n <= p.heavy+p.recent {
		return nil
	}
	keep := f.keepTop(acc, 0, n-p.recent, p.heavy)
	for i, j := range keep {
		acc[i] = acc[j]
	}
	p.acc[f.Layer][f.Head] = acc[:len(keep)]
	return keep
}

// dropFront drops the state of the entries a local layer's window evicted.
func (p *h2o) dropFront(layer, head, n int) {
	x := p.acc[layer][head]
	n = min(n, len(x))
	p.acc[layer][head] = x[:copy(x, x[n:])]
}
