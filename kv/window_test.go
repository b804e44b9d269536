package kv

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kvfoot/kvfoot/footprint"
)

// windowed has a local layer of window 5, a global one and a local one of window 3,
// with Gemma-style scale and soft cap.
var windowed = Shape{Layers: 3, Heads: 4, KVHeads: 2, HeadDim: 8, Window: []int{5, 0, 3}, Scale: 0.4, SoftCap: 1.5}

// windowRef keeps every key and attends in float64 as transformers' sliding-window mask
// does: the query at position i sees keys j ≤ i with i − j < window.
type windowRef struct {
	s    Shape
	k, v [][][]float32 // [layer][kv head] rows
}

func (r *windowRef) attend(layer, pos int, q, k, v, out []float32, n int) {
	s, d := r.s, r.s.HeadDim
	group := s.Heads / s.KVHeads
	for g := 0; g < s.KVHeads; g++ {
		for i := 0; i < n; i++ {
			off := (i*s.KVHeads + g) * d
			r.k[layer][g] = append(r.k[layer][g], k[off:off+d]...)
			r.v[layer][g] = append(r.v[layer][g], v[off:off+d]...)
		}
		K, V := r.k[layer][g], r.v[layer][g]
		for qh := g * group; qh < (g+1)*group; qh++ {
			for i := 0; i < n; i++ {
				p := pos + i
				lo := 0
				if w := s.Window[layer]; w > 0 {
					lo = max(0, p-w+1)
				}
				sc := make([]float64, p+1-lo)
				qi := q[(i*s.Heads+qh)*d : (i*s.Heads+qh+1)*d]
				mx := math.Inf(-1)
				for j := range sc {
					var dot float64
					for x := range d {
						dot += float64(qi[x]) * float64(K[(lo+j)*d+x])
					}
					sc[j] = float64(s.SoftCap) * math.Tanh(dot*float64(s.Scale)/float64(s.SoftCap))
					mx = math.Max(mx, sc[j])
				}
				var sum float64
				for j := range sc {
					sc[j] = math.Exp(sc[j] - mx)
					sum += sc[j]
				}
				o := out[(i*s.Heads+qh)*d : (i*s.Heads+qh+1)*d]
				for x := range o {
					var acc float64
					for j, e := range sc {
						acc += e * float64(V[(lo+j)*d+x])
					}
					o[x] = float32(acc / sum)
				}
			}
		}
	}
}

// Chunks longer and shorter than the windows, and decode steps split into pieces:
// every policy that keeps at least the window attends like the reference, and a
// local layer never holds more than window − 1 entries between forwards.
func TestWindowAttention(t *testing.T) {
	defer func(u int) { decodeUnit = u }(decodeUnit)
	for _, unit := range []int{8192, 16} {
		decodeUnit = unit
		for spec, tol := range map[string]float32{"full": 1e-5, "h2o:heavy=16,recent=16": 1e-5, "streaming:sink=2,window=40": 1e-5,
			"snapkv:sparsity=0.1,window=32,chunked=true": 1e-5, "bf16": 2e-2, "quant:bits=8,group=4,residual=2": 5e-2} {
			t.Run(fmt.Sprintf("%s/unit=%d", spec, unit), func(t *testing.T) {
				c, err := New(windowed, spec)
				if err != nil {
					t.Fatal(err)
				}
				ref := &windowRef{s: windowed, k: make([][][]float32, 3), v: make([][][]float32, 3)}
				for l := range ref.k {
					ref.k[l], ref.v[l] = make([][]float32, 2), make([][]float32, 2)
				}
				rng := rand.New(rand.NewPCG(5, 5))
				for i, n := range []int{7, 2, 9, 1, 1, 4, 1, 1, 1} {
					st := prefillStep(c, n, i == 2)
					if i > 2 && n == 1 {
						st = decodeStep(c)
					}
					pos := c.Pos()
					mustBegin(c, st)
					d := windowed.HeadDim
					q := randRows(rng, n*windowed.Heads*d)
					k := randRows(rng, n*windowed.KVHeads*d)
					v := randRows(rng, n*windowed.KVHeads*d)
					got, want := make([]float32, len(q)), make([]float32, len(q))
					for l := 0; l < windowed.Layers; l++ {
						c.attendHost(l, q, k, v, got)
						ref.attend(l, pos, q, k, v, want, n)
						for x := range got {
							if !close32(got[x], want[x], tol) {
								t.Fatalf("step %d (n %d), layer %d: out[%d] = %v, reference %v", i, n, l, x, got[x], want[x])
							}
						}
					}
					c.Commit()
					for l, w := range windowed.Window {
						for g := range c.Heads() {
							if w > 0 && c.Len(l, g) > w-1 {
								t.Fatalf("step %d: local layer %d head %d holds %d entries, window %d", i, l, g, c.Len(l, g), w)
							}
							if pos := c.Positions(l, g); w > 0 && len(pos) > 0 && int(pos[0]) <= c.Pos()-w {
								t.Fatalf("step %d: local layer %d keeps position %d, which the next query at %d cannot see", i, l, pos[0], c.Pos())
							}
						}
					}
				}
			})
		}
	}
}

// A policy's per-entry state follows the window's evictions: H2O with a budget below
// the window keeps its budget on every layer, its accumulators as long as the entries.
func TestWindowComposesWithH2O(t *testing.T) {
	s := windowed
	s.Window = []int{9, 0, 3}
	c, err := New(s, "h2o:heavy=2,recent=2")
	if err != nil {
		t.Fatal(err)
	}
	generate(c, s, 23, 6, 9, 1, func() {
		p := c.pol.(*h2o)
		for l := range s.Layers {
			for g := range c.Heads() {
				if len(p.acc[l][g]) != c.Len(l, g) {
					t.Fatalf("layer %d head %d: %d accumulators for %d entries", l, g, len(p.acc[l][g]), c.Len(l, g))
				}
				if c.Len(l, g) > 4 {
					t.Fatalf("layer %d head %d holds %d entries, budget 4", l, g, c.Len(l, g))
				}
			}
		}
	})
}

// The meter counts what each query saw: min(position + 1, window) on a local layer.
// Two layers (window 4, global) with 2 KV heads, 10 prompt tokens in chunks of 3,
// then 5 decoded: 15 queries at positions 0…14.
func TestWindowMeter(t *testing.T) {
	s := Shape{Layers: 2, Heads: 2, KVHeads: 2, HeadDim: 4, Window: []int{4, 0}}
	meter := footprint.NewMeter(s.Layers, s.KVHeads)
	c, err := New(s, "full", WithObserver(meter))
	if err != nil {
		t.Fatal(err)
	}
	generate(c, s, 10, 3, 5, 2, nil)
	// local: 1+2+3+4·12 = 54; global: 1+…+15 = 120; per head mean over 2 layers
	want := (54.0 + 120.0) / 2 / 120
	if r := meter.Report(false); math.Abs(r.Footprint-want) > 1e-12 {
		t.Errorf("footprint %v, want %v", r.Footprint, want)
	}
}

// PeakBytes: a local layer's head holds at most window − 1 + chunk entries. Shape of
// 2 layers (window 4, global), 2 KV heads of head dim 2 (f32: 16 bytes an entry);
// prompt 10 in chunks of 2 and 3 generated (2 fed): the global heads hold 12 entries,
// the local ones min(12, 3 + 2) = 5.
func TestWindowPeakBytes(t *testing.T) {
	s := Shape{Layers: 2, Heads: 2, KVHeads: 2, HeadDim: 2, Window: []int{4, 0}}
	f, err := Describe(s, "full")
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.PeakBytes(Workload{Prompt: 10, MaxTokens: 3, Chunk: 2})
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(2*12*16 + 2*5*16); got != want {
		t.Errorf("peak bytes %d, want %d", got, want)
	}
	meter := footprint.NewMeter(s.Layers, s.KVHeads)
	c, _ := New(s, "full", WithObserver(meter))
	generate(c, s, 10, 2, 2, 3, nil)
	if r := meter.Report(false); r.PeakBytes > got {
		t.Errorf("measured peak %d bytes above the bound %d", r.PeakBytes, got)
	}
}

// Every registered policy and composition runs on a model with a local layer: the
// local layer never holds an entry its next query cannot see, nor more than window − 1,
// and the peak bytes stay within Describe's bound (the server admits by it).
func TestEveryPolicyOnLocalLayers(t *testing.T) {
	s := registryShape
	s.Window = []int{6, 0}
	dir := writeRegistryMasks(t)
	specs, _ := registrySpecs()
	for _, spec := range specs {
		t.Run(spec, func(t *testing.T) {
			meter := footprint.NewMeter(s.Layers, s.KVHeads)
			c, err := New(s, spec, WithDir(dir), WithObserver(meter))
			if err != nil {
				t.Fatal(err)
			}
			const prompt, chunk, decode = 40, 16, 9
			generate(c, s, prompt, chunk, decode, 4, func() {
				for g := range c.Heads() {
					pos := c.Positions(0, g)
					if len(pos) > 5 || (len(pos) > 0 && int(pos[0]) <= c.Pos()-6) {
						t.Fatalf("at %d the local layer's head %d holds positions %v", c.Pos(), g, pos)
					}
				}
			})
			f, err := Describe(s, spec, WithDir(dir))
			if err != nil {
				t.Fatal(err)
			}
			bound, err := f.PeakBytes(Workload{Prompt: prompt, MaxTokens: decode + 1, Chunk: chunk})
			if err != nil {
				t.Fatal(err)
			}
			if r := meter.Report(false); r.PeakBytes > bound {
				t.Errorf("peak %d bytes above Describe's bound %d", r.PeakBytes, bound)
			}
		})
	}
}
