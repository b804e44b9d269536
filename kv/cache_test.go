package kv

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/kvfoot/kvfoot/footprint"
	"github.com/kvfoot/kvfoot/model"
	"github.com/kvfoot/kvfoot/tensor"
)

var small = Shape{Layers: 3, Heads: 4, KVHeads: 2, HeadDim: 8}

func randRows(rng *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	return x
}

// mustBegin starts a step as the model does, failing loudly on a step the cache refuses.
func mustBegin(c *Cache, st model.Step) {
	if err := c.Begin(st); err != nil {
		panic(err)
	}
}

// prefillStep and decodeStep are the steps model.Prefill and model.Decode hand a cache.
func prefillStep(c *Cache, n int, final bool) model.Step {
	return model.Step{Pos: c.Pos(), Rows: n, Prefill: true, Final: final}
}

func decodeStep(c *Cache) model.Step { return model.Step{Pos: c.Pos(), Rows: 1} }

// forwardFn runs one step through every layer, with fresh random q/k/v.
func forwardFn(c *Cache, s Shape, rng *rand.Rand) func(st model.Step) []float32 {
	return func(st model.Step) []float32 {
		n := st.Rows
		mustBegin(c, st)
		q := randRows(rng, n*s.Heads*s.HeadDim)
		k := randRows(rng, n*s.KVHeads*s.HeadDim)
		v := randRows(rng, n*s.KVHeads*s.HeadDim)
		out := make([]float32, len(q))
		for l := 0; l < s.Layers; l++ {
			c.attendHost(l, q, k, v, out)
		}
		c.Commit()
		return out
	}
}

// generate pre-fills a prompt of p tokens in chunks of chunk (patched if the cache
// asks) and feeds r decode tokens, the way model.Generate drives a cache.
func generate(c *Cache, s Shape, p, chunk, r int, seed uint64, after func()) {
	rng := rand.New(rand.NewPCG(seed, 7))
	step := forwardFn(c, s, rng)
	patch := min(c.PatchLen(), p)
	for a := 0; a < p; a += chunk {
		b := min(a+chunk, p)
		st := prefillStep(c, b-a, b == p)
		if patch > 0 && b < p {
			st.Rows, st.Patch = st.Rows+patch, patch
		}
		step(st)
		if after != nil {
			after()
		}
	}
	for i := 0; i < r; i++ {
		step(decodeStep(c))
		if after != nil {
			after()
		}
	}
}

func writeMasks(t *testing.T, rows [][]float64) string {
	t.Helper()
	var b strings.Builder
	for _, r := range rows {
		for i, x := range r {
			if i > 0 {
				b.WriteByte('\t')
			}
			fmt.Fprintf(&b, "%g", x)
		}
		b.WriteByte('\n')
	}
	f := filepath.Join(t.TempDir(), "masks.tsv")
	if err := os.WriteFile(f, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// The meter's footprint and peak equal the paper's get_kv_footprint, called with the
// meter's prompt_len and response_len, for every policy the formula models, and the
// harness's own arithmetic (footprint.Exact) for SnapKV, whose harness keeps
// int((1−s)·n) of a chunk, window included, where the formula counts round((1−s)·n)+w.
func TestMeasuredEqualsAnalytic(t *testing.T) {
	masks := writeMasks(t, [][]float64{{0.9, 0.1}, {0.3, 0.8}, {0.2, 0.7}})
	// sparsity H makes ceil(H·5) of the 6 heads streaming.
	type tc struct {
		spec  string
		h, s  float64
		sink  int
		win   int
		kvWin int
		onePF bool // post-fill eviction
		patch bool
	}
	cases := []tc{
		{spec: "full"},
		{spec: "streaming:sink=4,window=32", h: 1, sink: 4, win: 32},
		{spec: "streaming:sink=0,window=80", h: 1, win: 80},
		{spec: "headmask:masks=" + masks + ",sparsity=0.2,sink=4,window=32", h: 1.0 / 6, sink: 4, win: 32},
		{spec: "headmask:masks=" + masks + ",sparsity=0.5,sink=4,window=32", h: 0.5, sink: 4, win: 32},
		{spec: "headmask:masks=" + masks + ",sparsity=0.9,sink=8,window=16", h: 5.0 / 6, sink: 8, win: 16},
		{spec: "headmask:masks=" + masks + ",sink=4,window=32", h: 0.5, sink: 4, win: 32}, // values ≤ 0.5
		{spec: "snapkv:sparsity=0.5,window=16,chunked=true", s: 0.5, kvWin: 16},
		{spec: "snapkv:sparsity=0.7,window=8,pool=3,chunked=true", s: 0.7, kvWin: 8},
		{spec: "snapkv:sparsity=0.5,window=16,chunked=true,patch=16", s: 0.5, kvWin: 16, patch: true},
		{spec: "snapkv:sparsity=0.9,window=16,chunked=true", s: 0.9, kvWin: 16}, // the capacity below the window
		{spec: "snapkv:sparsity=0.9,window=16,chunked=true,patch=16", s: 0.9, kvWin: 16, patch: true},
		{spec: "snapkv:sparsity=0.5,window=16,chunked=true,gqa=mean", s: 0.5, kvWin: 16},
		{spec: "snapkv:sparsity=0.5,window=16,chunked=true+bf16", s: 0.5, kvWin: 16},
		{spec: "headmask:masks=" + masks + ",sparsity=0.5,sink=4,window=32+snapkv:sparsity=0.6,window=16,chunked=true",
			h: 0.5, s: 0.6, sink: 4, win: 32, kvWin: 16},
		{spec: "snapkv:sparsity=0.6,window=16", s: 0.6, kvWin: 16, onePF: true},
		{spec: "streaming:sink=4,window=32+quant:bits=4,group=8,residual=8", h: 1, sink: 4, win: 32},
	}
	for _, c := range cases {
		for _, g := range []struct{ p, chunk, r int }{{300, 64, 0}, {300, 64, 25}, {256, 64, 9}, {50, 64, 5}} {
			t.Run(fmt.Sprintf("%s/P%d-C%d-R%d", c.spec, g.p, g.chunk, g.r), func(t *testing.T) {
				m := footprint.NewMeter(small.Layers, small.KVHeads)
				cache, err := New(small, c.spec, WithObserver(m))
				if err != nil {
					t.Fatal(err)
				}
				generate(cache, small, g.p, g.chunk, g.r, 1, nil)
				rep := m.Report(false)
				if rep.PromptLen != g.p || rep.ResponseLen != g.r {
					t.Fatalf("prompt_len %d response_len %d, want %d %d", rep.PromptLen, rep.ResponseLen, g.p, g.r)
				}
				p := footprint.Params{Prompt: rep.PromptLen, Response: rep.ResponseLen, Chunk: g.chunk,
					Sink: c.sink, Window: c.win, HeadSparsity: c.h, KVSparsity: c.s, KVWindow: c.kvWin, PostFill: c.onePF, Patch: c.patch}
				formula := footprint.Analytic
				if c.kvWin > 0 {
					formula = footprint.Exact
				}
				want, err := formula(p)
				if err != nil {
					t.Fatal(err)
				}
				if math.Abs(rep.Footprint-want.Footprint) > 1e-12 || math.Abs(rep.Peak-want.Peak) > 1e-12 {
					t.Errorf("measured (%.15f, %.15f), analytic (%.15f, %.15f)", rep.Footprint, rep.Peak, want.Footprint, want.Peak)
				}
			})
		}
	}
}

// refFull is the plain full cache kvfoot started with: every entry, exact attention.
type refFull struct {
	s    Shape
	pos  int
	rows int           // of the step in progress
	k, v [][][]float32 // [layer][kv head] rows
}

func (r *refFull) attend(layer int, q, k, v, out []float32, n int) {
	s, d := r.s, r.s.HeadDim
	group := s.Heads / s.KVHeads
	scale := float32(1 / math.Sqrt(float64(d)))
	for g := 0; g < s.KVHeads; g++ {
		past := len(r.k[layer][g]) / d
		for i := 0; i < n; i++ {
			off := (i*s.KVHeads + g) * d
			r.k[layer][g] = append(r.k[layer][g], k[off:off+d]...)
			r.v[layer][g] = append(r.v[layer][g], v[off:off+d]...)
		}
		K, V := r.k[layer][g], r.v[layer][g]
		for qh := g * group; qh < (g+1)*group; qh++ {
			for i := 0; i < n; i++ {
				sc := make([]float32, past+i+1)
				qi := q[(i*s.Heads+qh)*d : (i*s.Heads+qh+1)*d]
				for j := range sc {
					sc[j] = tensor.Dot(qi, K[j*d:(j+1)*d]) * scale
				}
				tensor.Softmax(sc)
				o := out[(i*s.Heads+qh)*d : (i*s.Heads+qh+1)*d]
				clear(o)
				for j, p := range sc {
					tensor.Axpy(p, V[j*d:(j+1)*d], o)
				}
			}
		}
	}
}

// The full and a not-yet-evicting policy give the plain cache's attention up to float
// rounding (the tiled chunk kernel and the streaming decode kernel sum in other orders).
func TestFullMatchesReference(t *testing.T) {
	for _, spec := range []string{"", "full", "streaming:sink=4,window=1000"} {
		c, err := New(small, spec)
		if err != nil {
			t.Fatal(err)
		}
		ref := &refFull{s: small, k: make([][][]float32, small.Layers), v: make([][][]float32, small.Layers)}
		for l := range ref.k {
			ref.k[l], ref.v[l] = make([][]float32, small.KVHeads), make([][]float32, small.KVHeads)
		}
		rng := rand.New(rand.NewPCG(3, 3))
		for i, n := range []int{37, 64, 1, 1, 5, 1} {
			st := prefillStep(c, n, i == 1)
			if n == 1 {
				st = decodeStep(c)
			}
			mustBegin(c, st)
			d := small.HeadDim
			q := randRows(rng, n*small.Heads*d)
			k := randRows(rng, n*small.KVHeads*d)
			v := randRows(rng, n*small.KVHeads*d)
			got, want := make([]float32, len(q)), make([]float32, len(q))
			for l := 0; l < small.Layers; l++ {
				c.attendHost(l, q, k, v, got)
				ref.attend(l, q, k, v, want, n)
				for i := range got {
					if !close32(got[i], want[i], 1e-5) {
						t.Fatalf("%q: layer %d, n %d: out[%d] = %v, reference %v", spec, l, n, i, got[i], want[i])
					}
				}
			}
			c.Commit()
		}
	}
}

// Keys keep their original positions; Pos counts tokens fed, not entries kept.
func TestStreamingKeepsSinkAndWindow(t *testing.T) {
	const sink, window = 4, 16
	c, err := New(small, fmt.Sprintf("streaming:sink=%d,window=%d", sink, window))
	if err != nil {
		t.Fatal(err)
	}
	generate(c, small, 100, 24, 10, 5, func() {
		pos := c.Pos()
		var want []int32
		for p := 0; p < pos; p++ {
			if pos <= sink+window || p < sink || p >= pos-window {
				want = append(want, int32(p))
			}
		}
		for l := 0; l < small.Layers; l++ {
			for g := 0; g < small.KVHeads; g++ {
				if got := c.Positions(l, g); !slices.Equal(got, want) {
					t.Fatalf("pos %d, head (%d,%d): positions %v, want %v", pos, l, g, got, want)
				}
			}
		}
	})
	if c.Pos() != 110 {
		t.Errorf("Pos %d, want 110", c.Pos())
	}
}

// snapkv (chunked) keeps exactly what a direct computation of the paper's scoring
// selects: the chunk-local softmax of the last window queries, summed, average-pooled
// with zero padding, top k by score, plus the window. With gqa=mean a KV head scores by
// the mean over its query heads; with gqa=expand (the default) the cache holds a copy
// of the KV head for each query head, which selects by its own scores.
func TestSnapKVChunkedSelection(t *testing.T) {
	for _, gqa := range []string{"mean", "expand"} {
		t.Run(gqa, func(t *testing.T) { testSnapKVSelection(t, gqa) })
	}
}

func testSnapKVSelection(t *testing.T, gqa string) {
	s := Shape{Layers: 1, Heads: 4, KVHeads: 2, HeadDim: 8}
	const window, pool, chunk, x = 4, 3, 20, 0.5
	c, err := New(s, fmt.Sprintf("snapkv:sparsity=%g,window=%d,pool=%d,chunked=true,gqa=%s", x, window, pool, gqa))
	if err != nil {
		t.Fatal(err)
	}
	// stored heads and the query heads each one scores with
	heads, group := 2, [][]int{{0, 1}, {2, 3}}
	if gqa == "expand" {
		heads, group = 4, [][]int{{0}, {1}, {2}, {3}}
	}
	if c.Heads() != heads {
		t.Fatalf("cache stores %d heads per layer, want %d", c.Heads(), heads)
	}
	rng := rand.New(rand.NewPCG(11, 1))
	want := make([][]int32, heads)
	for ci := 0; ci < 2; ci++ {
		d := s.HeadDim
		q := randRows(rng, chunk*s.Heads*d)
		k := randRows(rng, chunk*s.KVHeads*d)
		v := randRows(rng, chunk*s.KVHeads*d)
		mustBegin(c, prefillStep(c, chunk, ci == 1))
		c.attendHost(0, q, k, v, make([]float32, len(q)))
		c.Commit()
		for h := 0; h < heads; h++ {
			votes := make([]float64, chunk-window)
			for _, qh := range group[h] {
				g := qh / 2 // the KV head of query head qh
				for i := chunk - window; i < chunk; i++ {
					logits := make([]float64, i+1)
					var mx float64 = math.Inf(-1)
					for j := range logits {
						var dot float64
						for c := 0; c < d; c++ {
							dot += float64(q[(i*s.Heads+qh)*d+c]) * float64(k[(j*s.KVHeads+g)*d+c])
						}
						logits[j] = dot / math.Sqrt(float64(d))
						mx = max(mx, logits[j])
					}
					var z float64
					for j := range logits {
						logits[j] = math.Exp(logits[j] - mx)
						z += logits[j]
					}
					for j := 0; j < chunk-window; j++ {
						if j <= i {
							votes[j] += logits[j] / z / float64(len(group[h]))
						}
					}
				}
			}
			pooled := make([]float64, len(votes))
			for j := range pooled {
				for t := j - 1; t <= j+1; t++ {
					if t >= 0 && t < len(votes) {
						pooled[j] += votes[t] / 3
					}
				}
			}
			order := make([]int, len(pooled))
			for i := range order {
				order[i] = i
			}
			slices.SortStableFunc(order, func(a, b int) int {
				switch {
				case pooled[a] > pooled[b]:
					return -1
				case pooled[a] < pooled[b]:
					return 1
				}
				return 0
			})
			top := order[:int((1-x)*chunk)-window] // the capacity int((1−x)·n) counts the window
			slices.Sort(top)
			for _, j := range top {
				want[h] = append(want[h], int32(ci*chunk+j))
			}
			for j := chunk - window; j < chunk; j++ {
				want[h] = append(want[h], int32(ci*chunk+j))
			}
			if got := c.Positions(0, h); !slices.Equal(got, want[h]) {
				t.Fatalf("chunk %d, head %d: kept %v, want %v", ci, h, got, want[h])
			}
		}
	}
}

// With patch=Q the forward carries Q extra tokens; they are scored with, then
// dropped, and Pos advances by the chunk alone.
func TestSnapKVPatchDropsPatchTokens(t *testing.T) {
	c, err := New(small, "snapkv:sparsity=0.5,window=8,chunked=true,patch=8")
	if err != nil {
		t.Fatal(err)
	}
	var seen []int
	generate(c, small, 100, 32, 3, 9, func() { seen = append(seen, c.Pos()) })
	if want := []int{32, 64, 96, 100, 101, 102, 103}; !slices.Equal(seen, want) {
		t.Errorf("Pos after each forward %v, want %v", seen, want)
	}
	// 3 chunks of 32 keep int(16) = 16 each (the patch plays the window); the last chunk
	// of 4 (capacity 2, below the window of 8) keeps all; 3 decoded.
	for l := 0; l < small.Layers; l++ {
		pos := c.Positions(l, 0)
		if len(pos) != 3*16+4+3 {
			t.Fatalf("layer %d holds %d entries, want %d", l, len(pos), 3*16+4+3)
		}
		for i, p := range pos {
			if p >= 103 || (i > 0 && p <= pos[i-1]) {
				t.Fatalf("layer %d: positions %v not ascending below 103", l, pos)
			}
		}
	}
}

func TestPyramidKVLayerBudgets(t *testing.T) {
	s := Shape{Layers: 4, Heads: 2, KVHeads: 1, HeadDim: 4}
	c, err := New(s, "pyramidkv:sparsity=0.8,window=4,chunked=true")
	if err != nil {
		t.Fatal(err)
	}
	generate(c, s, 100, 100, 0, 2, nil)
	// cap = int((1−0.8)·100) = 19 (1−0.8 is 0.19999… in floating point, in Python too),
	// window included: cap−w = 15; min 15//20 = 0, max 30; steps 30//3 = 10: 30, 20, 10,
	// 0 plus the window.
	for l, want := range []int{34, 24, 14, 4} {
		if got := c.Len(l, 0); got != want {
			t.Errorf("layer %d keeps %d, want %d", l, got, want)
		}
	}
}

func TestH2OAndTOVABudgets(t *testing.T) {
	for _, tc := range []struct {
		spec   string
		budget int
		recent int
	}{{"h2o:heavy=10,recent=6", 16, 6}, {"tova:budget=12", 12, 0}} {
		c, err := New(small, tc.spec)
		if err != nil {
			t.Fatal(err)
		}
		generate(c, small, 40, 16, 20, 4, func() {
			for l := 0; l < small.Layers; l++ {
				for g := 0; g < small.KVHeads; g++ {
					pos := c.Positions(l, g)
					if len(pos) != min(c.Pos(), tc.budget) {
						t.Fatalf("%s at %d: head holds %d, want %d", tc.spec, c.Pos(), len(pos), min(c.Pos(), tc.budget))
					}
					for i := 0; i < tc.recent; i++ {
						if pos[len(pos)-1-i] != int32(c.Pos()-1-i) {
							t.Fatalf("%s: recent %d missing: %v", tc.spec, c.Pos()-1-i, pos)
						}
					}
				}
			}
		})
	}
}

// TOVA keeps the entries the last query attends to most: a key aligned with the
// query survives, one opposite to it goes.
func TestTOVAKeepsAttendedKey(t *testing.T) {
	s := Shape{Layers: 1, Heads: 1, KVHeads: 1, HeadDim: 2}
	c, err := New(s, "tova:budget=2")
	if err != nil {
		t.Fatal(err)
	}
	q := []float32{0, 0, 0, 0, 5, 0}
	k := []float32{5, 0, -5, 0, 0, 0}
	mustBegin(c, prefillStep(c, 3, true))
	c.attendHost(0, q, k, k, make([]float32, 6))
	c.Commit()
	if got := c.Positions(0, 0); !slices.Equal(got, []int32{0, 2}) {
		t.Errorf("kept %v, want [0 2]", got)
	}
}

func TestHeadmaskSelection(t *testing.T) {
	s := Shape{Layers: 2, Heads: 6, KVHeads: 3, HeadDim: 4}
	for _, tc := range []struct {
		vals [][]float64
		spec string
		want [][]bool
	}{
		// ceil(0.5·5) = 3 streaming; four zeros tie: the first three in layer-major order.
		{[][]float64{{0, 1, 0}, {0, 1, 0}}, "sparsity=0.5", [][]bool{{true, false, true}, {true, false, false}}},
		{[][]float64{{0.2, 0.9, 0.4}, {0.6, 0.1, 0.3}}, "sparsity=0.2", [][]bool{{false, false, false}, {false, true, false}}},
		{[][]float64{{0.2, 0.9, 0.4}, {0.6, 0.1, 0.3}}, "sparsity=1", [][]bool{{true, true, true}, {true, true, true}}},
		{[][]float64{{0.2, 0.9, 0.4}, {0.6, 0.1, 0.3}}, "sparsity=0", [][]bool{{false, false, false}, {false, false, false}}},
		{[][]float64{{0.2, 0.9, 0.5}, {0.6, 1, 0}}, "sink=1", [][]bool{{true, false, true}, {false, false, true}}},
	} {
		c, err := New(s, "headmask:masks="+writeMasks(t, tc.vals)+","+tc.spec)
		if err != nil {
			t.Fatal(err)
		}
		hm := c.pol.(*headmask)
		if !slices.EqualFunc(hm.stream, tc.want, slices.Equal) {
			t.Errorf("%v %s: streaming %v, want %v", tc.vals, tc.spec, hm.stream, tc.want)
		}
	}
}

// Every head of a headmask cache attends fully in the first chunk; afterwards
// streaming heads hold sink+window, full heads everything.
func TestHeadmaskHeadSizes(t *testing.T) {
	c, err := New(small, "headmask:masks="+writeMasks(t, [][]float64{{1, 0}, {0, 1}, {1, 1}})+",sink=2,window=8")
	if err != nil {
		t.Fatal(err)
	}
	generate(c, small, 60, 20, 5, 1, nil)
	for l, row := range [][]int{{65, 10}, {10, 65}, {65, 65}} {
		for g, want := range row {
			if got := c.Len(l, g); got != want {
				t.Errorf("head (%d,%d) holds %d, want %d", l, g, got, want)
			}
		}
	}
}

func TestSpecErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.tsv")
	os.WriteFile(bad, []byte("1\t0\n0\t1\n"), 0o644)
	cols := filepath.Join(dir, "cols.tsv")
	os.WriteFile(cols, []byte("1\t0\t1\n0\t1\t1\n1\t1\t1\n"), 0o644)
	good := filepath.Join(dir, "good.tsv")
	os.WriteFile(good, []byte("1\t0\n0\t1\n1\t1\n"), 0o644)
	nan := filepath.Join(dir, "nan.tsv")
	os.WriteFile(nan, []byte("1\tx\n0\t1\n1\t1\n"), 0o644)
	for _, tc := range []struct{ spec, want string }{
		{"nope", `unknown policy "nope"`},
		{"streaming:sink=-1", "sink=-1"},
		{"streaming:foo=1", `unknown key "foo"`},
		{"streaming:sink", "want key=value"},
		{"streaming:sink=4,sink=5", "given twice"},
		{"full:x=1", "full takes no keys"},
		{"snapkv:window=64", "sparsity=X is required"},
		{"snapkv:sparsity=1.5", "sparsity=1.5"},
		{"snapkv:sparsity=0.5,pool=4", "odd"},
		{"snapkv:sparsity=0.5,patch=64", "needs chunked=true"},
		{"snapkv:sparsity=0.5,chunked=maybe", "true or false"},
		{"snapkv:sparsity=0.5+h2o", "both a token selector"},
		{"quant:bits=3", "bits=3"},
		{"quant+bf16", "both a storage"},
		{"headmask:sparsity=0.5", "masks=FILE is required"},
		{"headmask:masks=" + filepath.Join(dir, "missing.tsv"), "missing.tsv"},
		{"headmask:masks=" + bad, "2 rows, want one per layer (3)"},
		{"headmask:masks=" + cols, "3 columns, want one per KV head (2)"},
		{"headmask:masks=" + nan, `"x" is not a number`},
		{"headmask:masks=" + good + "+streaming", "headmask+streaming"},
		{"+", "empty policy name"},
	} {
		_, err := New(small, tc.spec)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want it to mention %q", tc.spec, err, tc.want)
		}
	}
}

// Decoding with a bounded cache allocates nothing once its buffers have grown.
func TestDecodeAllocatesNothing(t *testing.T) {
	defer tensor.SetThreads(tensor.Threads())
	tensor.SetThreads(1)
	for _, spec := range []string{"streaming:sink=4,window=32", "headmask:masks=" + writeMasks(t, [][]float64{{1, 0}, {0, 1}, {1, 0}}) + ",sink=4,window=32",
		"streaming:sink=4,window=32+quant:bits=4,group=8,residual=8", "streaming:sink=4,window=40+quant:bits=2,group=3,residual=0"} {
		c, err := New(small, spec)
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(1, 1))
		d := small.HeadDim
		q, k, v := randRows(rng, small.Heads*d), randRows(rng, small.KVHeads*d), randRows(rng, small.KVHeads*d)
		out := make([]float32, len(q))
		step := func() {
			mustBegin(c, decodeStep(c))
			for l := 0; l < small.Layers; l++ {
				c.attendHost(l, q, k, v, out)
			}
			c.Commit()
		}
		for i := 0; i < 200; i++ {
			step()
		}
		if a := testing.AllocsPerRun(100, step); a != 0 {
			t.Errorf("%s: %v allocations per decode step", spec, a)
		}
	}
}

// An expanded cache (gqa=expand) that evicts nothing attends exactly like the plain
// one, and holds one copy of every KV head per query head: twice the entries and
// bytes for a group of two.
func TestExpandedCacheAttendsLikeFull(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	d := small.HeadDim
	plain, err := New(small, "full")
	if err != nil {
		t.Fatal(err)
	}
	exp, err := New(small, "snapkv:sparsity=0,chunked=true,gqa=expand")
	if err != nil {
		t.Fatal(err)
	}
	for ci, n := range []int{24, 24, 1, 1} {
		q, k, v := randRows(rng, n*small.Heads*d), randRows(rng, n*small.KVHeads*d), randRows(rng, n*small.KVHeads*d)
		outs := [2][]float32{make([]float32, len(q)), make([]float32, len(q))}
		for i, c := range []*Cache{plain, exp} {
			st := prefillStep(c, n, ci == 1)
			if n == 1 {
				st = model.Step{Pos: c.Pos(), Rows: 1}
			}
			mustBegin(c, st)
			for l := 0; l < small.Layers; l++ {
				c.attendHost(l, q, k, v, outs[i])
			}
			c.Commit()
		}
		for j := range outs[0] {
			if !close32(outs[1][j], outs[0][j], 1e-5) {
				t.Fatalf("forward %d: output %d = %v, plain cache %v", ci, j, outs[1][j], outs[0][j])
			}
		}
	}
	if exp.Heads() != small.Heads || plain.Heads() != small.KVHeads {
		t.Errorf("stored heads %d and %d, want %d and %d", exp.Heads(), plain.Heads(), small.Heads, small.KVHeads)
	}
	if exp.Bytes() != 2*plain.Bytes() || exp.Len(0, 3) != plain.Len(0, 1) {
		t.Errorf("expanded cache holds %d bytes, %d entries per head; plain %d and %d", exp.Bytes(), exp.Len(0, 3), plain.Bytes(), plain.Len(0, 1))
	}
}

// keepOnly hides a policy's dropRun, so the cache asks Keep for every head.
type keepOnly struct{ Policy }

// Streaming heads evict by a run (dropRun, Storage.Drop) instead of a list of kept
// entries: the same attention outputs bit for bit, positions, bytes and meter as through
// Keep, on every host storage, with a zero sink, and on headmask's streaming heads.
func TestDropRunEqualsKeep(t *testing.T) {
	masks := writeMasks(t, [][]float64{{1, 0}, {0, 0}, {0, 1}})
	for _, spec := range []string{
		"streaming:sink=4,window=16", "streaming:sink=0,window=9", "streaming:sink=3,window=0",
		"streaming:sink=4,window=16+bf16", "streaming:sink=4,window=16+quant:bits=4,group=8,residual=8",
		"headmask:masks=" + masks + ",sink=2,window=8",
		"headmask:masks=" + masks + ",sink=2,window=8+snapkv:sparsity=0.5,window=4",
	} {
		var outs [2][][]float32
		var reps [2]footprint.Report
		var caches [2]*Cache
		for i := range 2 {
			m := footprint.NewMeter(small.Layers, small.KVHeads)
			c, err := New(small, spec, WithObserver(m))
			if err != nil {
				t.Fatal(err)
			}
			if i == 1 {
				c.pol = keepOnly{c.pol}
			}
			rng := rand.New(rand.NewPCG(3, 4))
			step := forwardFn(c, small, rng)
			for a := 0; a < 70; a += 24 {
				outs[i] = append(outs[i], step(prefillStep(c, min(24, 70-a), a+24 >= 70)))
			}
			for range 30 {
				outs[i] = append(outs[i], step(decodeStep(c)))
			}
			caches[i], reps[i] = c, m.Report(false)
		}
		if _, ok := caches[0].pol.(runDropper); !ok {
			t.Fatalf("%s: the policy names no run", spec)
		}
		for j := range outs[0] {
			if !slices.Equal(outs[0][j], outs[1][j]) {
				t.Fatalf("%s: step %d: outputs differ between Drop and Keep", spec, j)
			}
		}
		for l := range small.Layers {
			for g := range small.KVHeads {
				if a, b := caches[0].Positions(l, g), caches[1].Positions(l, g); !slices.Equal(a, b) {
					t.Fatalf("%s: head (%d,%d): positions %v by Drop, %v by Keep", spec, l, g, a, b)
				}
			}
		}
		if caches[0].Bytes() != caches[1].Bytes() || !reflect.DeepEqual(reps[0], reps[1]) {
			t.Fatalf("%s: bytes %d vs %d, meter %+v vs %+v", spec, caches[0].Bytes(), caches[1].Bytes(), reps[0], reps[1])
		}
	}
}
