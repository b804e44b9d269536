package kv

import (
	"fmt"
	"slices"
	"testing"

	"github.com/kvfoot/kvfoot/footprint"
)

// The random control costs exactly what SnapKV* (unpatched, group-mean) costs, keeps
// different tokens, and draws the same ones again for the same seed.
func TestRandomMatchesSnapKVFootprint(t *testing.T) {
	s := registryShape
	for _, sp := range []float64{0.05, 0.5, 0.8} {
		run := func(spec string) (*Cache, footprint.Report) {
			m := footprint.NewMeter(s.Layers, s.KVHeads)
			c, err := New(s, spec, WithObserver(m))
			if err != nil {
				t.Fatal(err)
			}
			generate(c, s, 700, 128, 10, 3, nil)
			return c, m.Report(false)
		}
		rc, rr := run(fmt.Sprintf("random:sparsity=%g,window=16", sp))
		_, sr := run(fmt.Sprintf("snapkv:sparsity=%g,window=16,chunked=true,gqa=mean", sp))
		if rr.Footprint != sr.Footprint || rr.Peak != sr.Peak {
			t.Errorf("sparsity %g: random footprint %v peak %v, SnapKV* %v and %v", sp, rr.Footprint, rr.Peak, sr.Footprint, sr.Peak)
		}
		again, _ := run(fmt.Sprintf("random:sparsity=%g,window=16", sp))
		other, _ := run(fmt.Sprintf("random:sparsity=%g,window=16,seed=2", sp))
		if !slices.Equal(rc.Positions(1, 1), again.Positions(1, 1)) {
			t.Errorf("sparsity %g: the same seed kept other tokens", sp)
		}
		if slices.Equal(rc.Positions(1, 1), other.Positions(1, 1)) {
			t.Errorf("sparsity %g: seeds 1 and 2 kept the same tokens", sp)
		}
	}
}
