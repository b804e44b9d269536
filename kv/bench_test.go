package kv

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/kvfoot/kvfoot/compute"
	"github.com/kvfoot/kvfoot/model"
	"github.com/kvfoot/kvfoot/tensor"
)

// fill stands in for pre-filling ctx tokens in one chunk: it appends random keys and
// values to every head, then lets the policy evict as after that chunk. (A real
// pre-fill of 32K tokens would take hours on the benchmark machine; decode cost
// depends only on what the cache holds.)
func fill(c *Cache, ctx int, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	d := c.shape.HeadDim
	rows := make([]float32, ctx*d)
	rows2 := make([]float32, ctx*d)
	for l := range c.heads {
		for g := range c.heads[l] {
			for i := range rows {
				rows[i] = float32(rng.NormFloat64())
				rows2[i] = float32(rng.NormFloat64())
			}
			c.seed(l, g, rows, rows2, ctx, d)
			f := Forward{Layer: l, Head: g, Layers: c.shape.Layers, N: ctx, Prefill: true, Final: true, Pos: c.heads[l][g]}
			if c.pol.Scores(&f).none() {
				if keep := c.pol.Keep(&f); keep != nil {
					c.keepSeeded(l, g, keep)
				}
			}
		}
	}
	c.pos = ctx
}

// smolMasks writes a masks file for the SmolLM2-135M shape with random values.
func smolMasks(b *testing.B, s Shape) string {
	rng := rand.New(rand.NewPCG(5, 5))
	rows := make([][]float64, s.Layers)
	for l := range rows {
		rows[l] = make([]float64, s.KVHeads)
		for g := range rows[l] {
			rows[l][g] = rng.Float64()
		}
	}
	return writeMasks(&testing.T{}, rows)
}

// BenchmarkDecode: tokens/s of one decode step of the SmolLM2-135M-shaped random model
// after ctx tokens of context, per policy; kvB/tok is the KV storage per context token.
//
//	go test ./kv -run '^$' -bench Decode -benchtime 3x
func BenchmarkDecode(b *testing.B) {
	cfg := model.Presets["smollm2-135m"]
	cfg.MaxPositions = 1 << 16 // random weights: the contexts below pass the preset's 8192
	m := model.NewRandom(cfg, 1)
	s := Shape(m.Shape())
	masks := smolMasks(b, s)
	for _, p := range []struct{ name, spec string }{
		{"full", "full"},
		{"streaming", "streaming:sink=128,window=1024"},
		{"headmask0.7", "headmask:masks=" + masks + ",sparsity=0.7,sink=128,window=1024"},
		{"full+bf16", "full+bf16"},
		{"full+quant8", "full+quant:bits=8,group=32,residual=32"},
		{"full+quant4", "full+quant:bits=4,group=32,residual=32"},
	} {
		for _, ctx := range []int{1024, 2048, 4096, 8192, 16384, 32768} {
			b.Run(fmt.Sprintf("%s/ctx=%d", p.name, ctx), func(b *testing.B) {
				c, err := New(s, p.spec)
				if err != nil {
					b.Fatal(err)
				}
				fill(c, ctx, 1)
				kvPerTok := float64(c.Bytes()) / float64(ctx)
				r := model.NewRunner(m, 1)
				ids := []int{42}
				if _, err := r.Decode(c, ids[0]); err != nil { // warm the buffers
					b.Fatal(err)
				}
				b.ResetTimer()
				for b.Loop() {
					if _, err := r.Decode(c, ids[0]); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tok/s")
				b.ReportMetric(kvPerTok, "kvB/tok")
				c = nil
				runtime.GC()
			})
		}
	}
}

// BenchmarkDecodeAttention: the attention of one decode step over all layers (no model),
// the built-in model's shape (8 layers, 8 heads, 4 KV heads, head_dim 64) and
// SmolLM2-135M's (30 layers, 9 heads, 3 KV heads), float32 and bf16 storage. GB/s
// counts the cache's stored bytes, which a bandwidth-bound step reads once.
//
//	go test ./kv -run '^$' -bench DecodeAttention -benchtime 20x
func BenchmarkDecodeAttention(b *testing.B) {
	defer tensor.SetThreads(tensor.Threads())
	for _, sh := range []struct {
		name string
		s    Shape
	}{
		{"builtin", Shape{Layers: 8, Heads: 8, KVHeads: 4, HeadDim: 64}},
		{"smollm2", Shape{Layers: 30, Heads: 9, KVHeads: 3, HeadDim: 64}},
	} {
		for _, spec := range []string{"full", "full+bf16", "full+quant:bits=8,group=32,residual=32", "full+quant:bits=4,group=32,residual=32"} {
			for _, ctx := range []int{512, 4096, 16384} {
				for _, t := range []int{1, 2} {
					b.Run(fmt.Sprintf("%s/%s/ctx=%d/threads=%d", sh.name, spec, ctx, t), func(b *testing.B) {
						tensor.SetThreads(t)
						c, err := New(sh.s, spec)
						if err != nil {
							b.Fatal(err)
						}
						fill(c, ctx, 1)
						rng := rand.New(rand.NewPCG(2, 2))
						d := sh.s.HeadDim
						q := randRows(rng, sh.s.Heads*d)
						k, v := randRows(rng, sh.s.KVHeads*d), randRows(rng, sh.s.KVHeads*d)
						out := make([]float32, len(q))
						var bytes int64
						for b.Loop() {
							mustBegin(c, decodeStep(c))
							for l := 0; l < sh.s.Layers; l++ {
								c.attendHost(l, q, k, v, out)
							}
							c.Commit()
							bytes += c.Bytes()
						}
						b.ReportMetric(float64(bytes)/b.Elapsed().Seconds()/1e9, "GB/s")
					})
				}
			}
		}
	}
}

// nullStorage holds and attends to nothing: what is left of a step is the cache's and the
// policy's host work, which on a GPU runs beside (or, when larger, ahead of) its kernels.
type nullStorage struct{}

func (nullStorage) Append(int, compute.Buf, compute.Buf, int)         {}
func (nullStorage) Attend(int, compute.Buf, compute.Buf, *AttendArgs) {}
func (nullStorage) Keep(int, int, []int)                              {}
func (nullStorage) Drop(int, int, int, int)                           {}
func (nullStorage) Truncate(int, int, int)                            {}
func (nullStorage) Bytes() int64                                      { return 0 }

// BenchmarkEvictionHost: the host work of a decode step whose 256 KV heads (the
// Llama-3.1-8B shape) are streaming with a window of 16K (the study's streaming at KV
// sparsity 0.5 of a 32K context), the policy naming the run it drops (drop) or listing
// every kept entry (keep).
//
//	go test ./kv -run '^$' -bench EvictionHost -benchtime 50x
func BenchmarkEvictionHost(b *testing.B) {
	s := Shape{Layers: 32, Heads: 32, KVHeads: 8, HeadDim: 128}
	null := func(Shape, int, Precision) (Storage, error) { return nullStorage{}, nil }
	for _, drop := range []bool{false, true} {
		b.Run(map[bool]string{false: "keep", true: "drop"}[drop], func(b *testing.B) {
			c, err := New(s, "streaming:sink=128,window=16384", WithStorage(null))
			if err != nil {
				b.Fatal(err)
			}
			if !drop {
				c.pol = keepOnly{c.pol}
			}
			step := func(st model.Step) {
				mustBegin(c, st)
				for l := range s.Layers {
					c.Attend(l, compute.Host(nil), compute.Host(nil), compute.Host(nil), compute.Host(nil))
				}
				c.Commit()
			}
			step(prefillStep(c, 32768, true))
			for b.Loop() {
				step(decodeStep(c))
			}
		})
	}
}

// scoreStorage is nullStorage that hands every asked head fixed pseudo-random scores.
type scoreStorage struct {
	nullStorage
	score []float32
}

func (s scoreStorage) Attend(_ int, _, _ compute.Buf, a *AttendArgs) {
	for g, r := range a.Req {
		if !r.none() {
			a.Scores[g] = append(a.Scores[g][:0], s.score[:a.Past[g]+a.Tokens]...)
		}
	}
}

// BenchmarkSnapKVHost: the host work of SnapKV's eviction on the Llama-3.1-8B shape at 32K
// (sparsity 0.5; gqa=expand: 1024 stored heads): one pre-fill of 32K, post-fill (one
// eviction at its end) and chunked (SnapKV*, a chunk of 32K with the patch).
//
//	go test ./kv -run '^$' -bench SnapKVHost -benchtime 3x
func BenchmarkSnapKVHost(b *testing.B) {
	s := Shape{Layers: 32, Heads: 32, KVHeads: 8, HeadDim: 128}
	const n = 32768
	r := rand.New(rand.NewPCG(5, 6))
	st := scoreStorage{score: make([]float32, n+64)}
	for i := range st.score {
		st.score[i] = r.Float32() * r.Float32()
	}
	maker := func(Shape, int, Precision) (Storage, error) { return st, nil }
	for _, spec := range []string{"snapkv:sparsity=0.5,window=64", "snapkv:sparsity=0.5,window=64,chunked=true"} {
		b.Run(spec, func(b *testing.B) {
			for b.Loop() {
				c, err := New(s, spec, WithStorage(maker))
				if err != nil {
					b.Fatal(err)
				}
				mustBegin(c, prefillStep(c, n, true))
				for l := range s.Layers {
					c.Attend(l, compute.Host(nil), compute.Host(nil), compute.Host(nil), compute.Host(nil))
				}
				c.Commit()
			}
		})
	}
}
