package kv

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kvfoot/kvfoot/footprint"
	"github.com/kvfoot/kvfoot/model"
	"github.com/kvfoot/kvfoot/tensor"
)

// registryShape is small enough to drive every policy through a long prompt quickly.
var registryShape = Shape{Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 8}

// writeRegistryMasks puts the masks.tsv that the headmask example names into a folder.
func writeRegistryMasks(t testing.TB) string {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "masks.tsv"), []byte("1\t0.2\n0\t0.9\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// registrySpecs is every registered example and every composition the grammar
// allows: each token selector alone, under the head role, and with each storage.
func registrySpecs() (ok, refused []string) {
	var sel, role, storage []string
	for _, r := range Registry() {
		switch r.Kind {
		case Selector:
			sel = append(sel, r.Example)
		case Role:
			role = append(role, r.Example)
		case Stored:
			storage = append(storage, r.Example)
		}
	}
	for _, s := range sel {
		heads := []string{s}
		for _, r := range role {
			h := r + "+" + s
			if strings.HasPrefix(s, "streaming") {
				refused = append(refused, h)
				continue
			}
			heads = append(heads, h)
		}
		for _, h := range heads {
			ok = append(ok, h)
			for _, st := range storage {
				ok = append(ok, h+"+"+st)
			}
		}
	}
	return append(ok, role...), refused
}

// promise is what a policy guarantees to keep, checked after every step: the
// positions that must be held by (layer, stored head) given everything fed so far.
type promise func(c *Cache, layer, head int, chunks [][2]int) []int32

func sinkWindow(sink, window int) promise {
	return func(c *Cache, _, _ int, _ [][2]int) []int32 {
		var want []int32
		for p := 0; p < c.Pos(); p++ {
			if p < sink || p >= c.Pos()-window {
				want = append(want, int32(p))
			}
		}
		return want
	}
}

// promises of the built-in policies, by the parts of a spec; a policy registered later
// is held to the properties every policy shares.
func promises(t *testing.T, c *Cache) func(layer, head int) promise {
	hm, _ := c.pol.(*headmask)
	inner := c.pol
	if hm != nil {
		inner = hm.inner
	}
	return func(layer, head int) promise {
		if hm != nil && hm.stream[layer][head/c.rep] {
			return sinkWindow(hm.streaming.sink, hm.streaming.window)
		}
		switch p := inner.(type) {
		case full:
			return sinkWindow(1<<30, 0)
		case streaming:
			return sinkWindow(p.sink, p.window)
		case *h2o:
			return sinkWindow(0, p.recent)
		case *random:
			return func(c *Cache, _, _ int, chunks [][2]int) []int32 {
				var want []int32 // every pre-fill chunk keeps its last window tokens
				for _, s := range chunks {
					for q := max(s[0], s[1]-p.window); q < s[1]; q++ {
						want = append(want, int32(q))
					}
				}
				return want
			}
		case *snapkv:
			return func(c *Cache, _, _ int, chunks [][2]int) []int32 {
				var want []int32 // every compressed span keeps its observation window
				spans := chunks
				if !p.chunked {
					spans = [][2]int{{0, chunks[len(chunks)-1][1]}}
				}
				for _, s := range spans {
					for q := max(s[0], s[1]-p.window); q < s[1]; q++ {
						want = append(want, int32(q))
					}
				}
				return want
			}
		}
		return nil
	}
}

// analyticParams is the paper's footprint formula's view of a spec, where one exists.
func analyticParams(c *Cache) (footprint.Params, bool) {
	switch p := c.pol.(type) {
	case full:
		return footprint.Params{HeadSparsity: 0}, true
	case streaming:
		return footprint.Params{Sink: p.sink, Window: p.window, HeadSparsity: 1}, true
	case *headmask:
		if _, ok := p.inner.(full); !ok {
			return footprint.Params{}, false
		}
		n, s := 0, 0
		for _, row := range p.stream {
			for _, x := range row {
				n++
				if x {
					s++
				}
			}
		}
		return footprint.Params{Sink: p.streaming.sink, Window: p.streaming.window, HeadSparsity: float64(s) / float64(n)}, true
	}
	return footprint.Params{}, false
}

// Every registered policy and every composition the grammar allows, driven through a
// chunked pre-fill and decoding: kept entries are ascending, in range and never
// renumbered; what the policy promises is kept; the measured footprint is in (0, 1]
// and equals the paper's formula where it has one; decoding allocates nothing.
func TestEveryRegisteredPolicy(t *testing.T) {
	defer tensor.SetThreads(tensor.Threads())
	tensor.SetThreads(1)
	dir := writeRegistryMasks(t)
	specs, refused := registrySpecs()
	if len(specs) < len(Registry()) {
		t.Fatalf("only %d specs for %d registrations", len(specs), len(Registry()))
	}
	for _, spec := range refused {
		if _, err := New(registryShape, spec, WithDir(dir)); err == nil {
			t.Errorf("%s: accepted, want a refusal", spec)
		}
	}
	const prompt, chunk, decode = 1500, 256, 24
	s := registryShape
	for _, spec := range specs {
		t.Run(spec, func(t *testing.T) {
			meter := footprint.NewMeter(s.Layers, s.KVHeads)
			c, err := New(s, spec, WithDir(dir), WithObserver(meter))
			if err != nil {
				t.Fatal(err)
			}
			promise := promises(t, c)
			heads := c.Heads() // the KV heads, or the query heads of an expanded cache
			prev := make([][]int32, s.Layers*heads)
			var chunks [][2]int
			check := func() {
				for l := 0; l < s.Layers; l++ {
					for g := 0; g < heads; g++ {
						got := c.Positions(l, g)
						fed := append(slices.Clone(prev[l*heads+g]), []int32{}...)
						for p := chunks[len(chunks)-1][0]; p < c.Pos(); p++ {
							fed = append(fed, int32(p))
						}
						if !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
							t.Fatalf("layer %d head %d at Pos %d: positions %v not strictly ascending", l, g, c.Pos(), got)
						}
						for _, p := range got {
							if _, found := slices.BinarySearch(fed, p); !found {
								t.Fatalf("layer %d head %d at Pos %d: position %d was never fed or was evicted before", l, g, c.Pos(), p)
							}
						}
						if pr := promise(l, g); pr != nil {
							for _, p := range pr(c, l, g, chunks) {
								if _, found := slices.BinarySearch(got, p); !found {
									t.Fatalf("layer %d head %d at Pos %d: promised position %d was evicted", l, g, c.Pos(), p)
								}
							}
						}
						prev[l*heads+g] = slices.Clone(got)
					}
				}
			}
			fed := 0
			generate(c, s, prompt, chunk, decode, 2, func() {
				chunks = append(chunks, [2]int{fed, c.Pos()})
				fed = c.Pos()
				check()
			})
			rep := meter.Report(false)
			if !(rep.Footprint > 0 && rep.Footprint <= 1) || !(rep.Peak > 0 && rep.Peak <= 1) {
				t.Errorf("footprint %v, peak %v: want both in (0, 1]", rep.Footprint, rep.Peak)
			}
			if p, ok := analyticParams(c); ok {
				p.Prompt, p.Response, p.Chunk = prompt, decode, chunk
				want, err := footprint.Analytic(p)
				if err != nil {
					t.Fatal(err)
				}
				if math.Abs(rep.Footprint-want.Footprint) > 1e-12 || math.Abs(rep.Peak-want.Peak) > 1e-12 {
					t.Errorf("measured footprint %v peak %v, the paper's formula %v and %v", rep.Footprint, rep.Peak, want.Footprint, want.Peak)
				}
			}
			rng := rand.New(rand.NewPCG(1, 2))
			q, k, v := randRows(rng, s.Heads*s.HeadDim), randRows(rng, s.KVHeads*s.HeadDim), randRows(rng, s.KVHeads*s.HeadDim)
			out := make([]float32, len(q))
			step := func() {
				mustBegin(c, decodeStep(c))
				for l := 0; l < s.Layers; l++ {
					c.attendHost(l, q, k, v, out)
				}
				c.Commit()
			}
			if a := testing.AllocsPerRun(50, step); a != 0 {
				t.Errorf("%v allocations per decode step", a)
			}
		})
	}
}

// For the full policy the pre-fill chunk size changes nothing but float rounding:
// every query's attention output is the same at chunks of 1, 7, 64 and the whole prompt.
func TestFullChunkInvariance(t *testing.T) {
	s := registryShape
	const n = 150
	rng := rand.New(rand.NewPCG(5, 5))
	d := s.HeadDim
	q, k, v := randRows(rng, n*s.Heads*d), randRows(rng, n*s.KVHeads*d), randRows(rng, n*s.KVHeads*d)
	run := func(chunk int) []float32 {
		c, err := New(s, "full")
		if err != nil {
			t.Fatal(err)
		}
		out := make([]float32, len(q))
		for lo := 0; lo < n; lo += chunk {
			hi := min(lo+chunk, n)
			mustBegin(c, model.Step{Pos: lo, Rows: hi - lo, Prefill: true, Final: hi == n})
			for l := 0; l < s.Layers; l++ {
				c.attendHost(l, q[lo*s.Heads*d:hi*s.Heads*d], k[lo*s.KVHeads*d:hi*s.KVHeads*d], v[lo*s.KVHeads*d:hi*s.KVHeads*d], out[lo*s.Heads*d:hi*s.Heads*d])
			}
			c.Commit()
		}
		return out
	}
	want := run(n)
	for _, chunk := range []int{1, 7, 64} {
		got := run(chunk)
		for i := range want {
			if !close32(got[i], want[i], 1e-5) {
				t.Fatalf("chunk %d: out[%d] = %v, whole prompt %v", chunk, i, got[i], want[i])
			}
		}
	}
}

// The registry refuses names and keys that would make specs ambiguous, and a new
// selector is usable by name at once.
func TestRegister(t *testing.T) {
	sel := func(Args) (Policy, error) { return full{}, nil }
	for _, r := range []Registration{
		{Name: "full", Example: "full", NewSelector: sel},
		{Name: "a+b", Example: "a+b", NewSelector: sel},
		{Name: "x1", Example: "x1:k=1", NewSelector: sel},
		{Name: "x2", Example: "x2", NewSelector: sel, Params: []Param{{Key: "k"}, {Key: "k"}}},
		{Name: "x3", Example: "x3", NewSelector: sel, Params: []Param{{Key: "k", Type: Int, Default: "9", Max: 5}}},
		{Name: "x4", Example: "x4"},
	} {
		if err := Register(r); err == nil {
			t.Errorf("%+v: registered", r)
		}
	}
	err := Register(Registration{Name: "keepfirst", Example: "keepfirst:n=4", Doc: "keeps the first n entries",
		Params:      []Param{{Key: "n", Type: Int, Default: "8", Min: 1, Max: 100}},
		NewSelector: func(a Args) (Policy, error) { return keepFirst{a.Int("n")}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer delete(registry, "keepfirst")
	c, err := New(registryShape, "keepfirst:n=3+bf16")
	if err != nil {
		t.Fatal(err)
	}
	forwardFn(c, registryShape, rand.New(rand.NewPCG(1, 1)))(model.Step{Rows: 10, Prefill: true, Final: true})
	if got := c.Positions(1, 1); !slices.Equal(got, []int32{0, 1, 2}) {
		t.Errorf("kept %v, want [0 1 2]", got)
	}
	if _, err := New(registryShape, "keepfirst:n=0"); err == nil || !strings.Contains(err.Error(), "n=0: want 1…100") {
		t.Errorf("n=0: error %v", err)
	}
}

type keepFirst struct{ n int }

func (keepFirst) Scores(*Forward) ScoreRequest { return ScoreRequest{} }
func (p keepFirst) Keep(f *Forward) []int {
	if f.Len() <= p.n {
		return nil
	}
	k := make([]int, p.n)
	for i := range k {
		k[i] = i
	}
	return k
}

// FuzzSpec: no spec makes New or a short run panic; a spec New accepts runs with
// positions in range.
func FuzzSpec(f *testing.F) {
	for _, r := range Registry() {
		f.Add(r.Example)
	}
	f.Add("headmask:masks=masks.tsv,sink=0,window=0+snapkv:sparsity=1,window=0,chunked=true,patch=3+quant:bits=2,group=1,residual=0")
	f.Add("tova:budget=1+bf16")
	f.Add("a:b=c,+d")
	f.Add("pyramidkv:sparsity=0.3,beta=10")
	f.Add("snapkv:sparsity=0.9,window=100000,pool=1023")
	dir := writeRegistryMasks(f)
	f.Fuzz(func(t *testing.T, spec string) {
		c, err := New(registryShape, spec, WithDir(dir))
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		generate(c, registryShape, 20, 8, 1, 1, nil)
		for l := 0; l < registryShape.Layers; l++ {
			for g := 0; g < registryShape.KVHeads; g++ {
				for _, p := range c.Positions(l, g) {
					if p < 0 || int(p) >= c.Pos() {
						t.Fatalf("%q: position %d outside [0, %d)", spec, p, c.Pos())
					}
				}
			}
		}
	})
}

// FuzzMasks: no masks file makes the reader panic; one it accepts has the model's
// shape and only finite values in [0, 1].
func FuzzMasks(f *testing.F) {
	f.Add([]byte("1\t0.2\n0\t0.9\n"))
	f.Add([]byte("1 0\n\n0 1\n"))
	f.Add([]byte("NaN\t1\n0\t0\n"))
	f.Add([]byte("1e400\t-1\n0\t0\n"))
	f.Add([]byte("1\t0\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		file := filepath.Join(dir, fmt.Sprintf("m%d.tsv", len(data)))
		if err := os.WriteFile(file, data, 0o644); err != nil {
			t.Fatal(err)
		}
		vals, err := ReadMasks(file, 2, 2)
		if err != nil {
			return
		}
		if len(vals) != 2 {
			t.Fatalf("%d rows", len(vals))
		}
		for _, row := range vals {
			if len(row) != 2 {
				t.Fatalf("%d columns", len(row))
			}
			for _, x := range row {
				if !(x >= 0 && x <= 1) {
					t.Fatalf("value %v outside [0, 1]", x)
				}
			}
		}
	})
}
