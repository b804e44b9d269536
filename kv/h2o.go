package kv

import (
	"fmt"
	"slices"
)

// h2o is H2O: each KV head keeps its recent most recent entries plus the heavy
// entries with the largest attention accumulated over every query since they were
// added (mean over the group's query heads). It evicts after every forward, pre-fill
// chunks included. Spec: h2o:heavy=K,recent=R.
type h2o struct {
	heavy, recent int
	acc           [][][]float32 // [layer][KV head][entry]
}

func init() {
	register("h2o", kindSelector, []string{"heavy", "recent"}, func(o opts) (any, error) {
		heavy, err := o.int("heavy", 256, 0, 1<<30)
		if err != nil {
			return nil, err
		}
		recent, err := o.int("recent", 256, 0, 1<<30)
		if err != nil {
			return nil, err
		}
		if heavy+recent == 0 {
			return nil, fmt.Errorf("h2o: heavy+recent must be positive")
		}
		p := &h2o{heavy: heavy, recent: recent, acc: make([][][]float32, o.shape.Layers)}
		for l := range p.acc {
			p.acc[l] = make([][]float32, o.shape.KVHeads)
		}
		return p, nil
	})
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
