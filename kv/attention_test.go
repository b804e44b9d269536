package kv

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kvfoot/kvfoot/model"
	"github.com/kvfoot/kvfoot/tensor"
)

// refAttention is the straightforward attention the tiled kernel replaces: per query
// head and query, a dot product with every visible key, a softmax, a weighted sum of
// the values; the asked probabilities summed over the asked queries and averaged over
// the group (Local: normalised over the chunk's keys). K[g], V[g] hold past[g]+n rows.
func refAttention(s Shape, q []float32, n int, K, V [][]float32, past []int, req []ScoreRequest) (out []float32, scores [][]float32) {
	d, group := s.HeadDim, s.Heads/s.KVHeads
	scale := float32(1 / math.Sqrt(float64(d)))
	out = make([]float32, n*s.Heads*d)
	scores = make([][]float32, s.KVHeads)
	for g := range scores {
		r := req[g]
		if r.To > r.From {
			scores[g] = make([]float32, past[g]+n)
		}
		for qh := g * group; qh < (g+1)*group; qh++ {
			for i := 0; i < n; i++ {
				sc := make([]float32, past[g]+i+1)
				qi := q[(i*s.Heads+qh)*d : (i*s.Heads+qh+1)*d]
				for j := range sc {
					sc[j] = tensor.Dot(qi, K[g][j*d:(j+1)*d]) * scale
				}
				asked := i >= r.From && i < r.To
				if asked && r.Local {
					t := append([]float32(nil), sc[past[g]:]...)
					tensor.Softmax(t)
					for j, p := range t {
						scores[g][past[g]+j] += p / float32(group)
					}
				}
				tensor.Softmax(sc)
				if asked && !r.Local {
					for j, p := range sc {
						scores[g][j] += p / float32(group)
					}
				}
				o := out[(i*s.Heads+qh)*d : (i*s.Heads+qh+1)*d]
				for j, p := range sc {
					tensor.Axpy(p, V[g][j*d:(j+1)*d], o)
				}
			}
		}
	}
	return out, scores
}

// probe asks for fixed score requests, keeps everything and records the scores.
type probe struct {
	req    func(f *Forward) ScoreRequest
	scores [][]float32
}

func (p *probe) Scores(f *Forward) ScoreRequest { return p.req(f) }
func (p *probe) Keep(f *Forward) []int {
	p.scores[f.Head] = append([]float32(nil), f.Scores...)
	return nil
}

func close32(got, want, tol float32) bool {
	return math.Abs(float64(got-want)) <= float64(tol)*(1+math.Abs(float64(want)))
}

// The tiled, threaded chunk kernel equals the straightforward computation up to float
// rounding: outputs and asked probabilities, for GQA groups, ragged head sizes, KV
// heads of different lengths, chunk sizes across the tile sizes, every storage.
func TestChunkAttentionMatchesReference(t *testing.T) {
	defer tensor.SetThreads(tensor.Threads())
	shapes := []Shape{
		{Layers: 1, Heads: 4, KVHeads: 2, HeadDim: 8},
		{Layers: 1, Heads: 9, KVHeads: 3, HeadDim: 64},
		{Layers: 1, Heads: 8, KVHeads: 1, HeadDim: 5},
		{Layers: 1, Heads: 3, KVHeads: 3, HeadDim: 16},
	}
	requests := []struct {
		name string
		req  func(f *Forward) ScoreRequest
	}{
		{"none", func(*Forward) ScoreRequest { return ScoreRequest{} }},
		{"window", func(f *Forward) ScoreRequest { return ScoreRequest{From: f.N - 5, To: f.N} }},
		{"local", func(f *Forward) ScoreRequest { return ScoreRequest{From: f.N - 70, To: f.N, Local: true} }},
		{"all", func(f *Forward) ScoreRequest { return ScoreRequest{From: 0, To: f.N} }},
		{"first", func(f *Forward) ScoreRequest { return ScoreRequest{From: 0, To: 1 + f.Head} }},
	}
	rng := rand.New(rand.NewPCG(11, 12))
	trial := 0
	for _, s := range shapes {
		for _, storage := range []string{"full", "full+bf16", "full+quant:bits=4,group=8,residual=8"} {
			for _, past := range []int{0, 1, 33, 300} {
				for _, n := range []int{1, 2, 7, 64, 300} {
					trial++
					threads := 1 + trial%3
					r := requests[trial%len(requests)]
					name := fmt.Sprintf("%+v/%s/past=%d/n=%d/threads=%d/%s", s, storage, past, n, threads, r.name)
					tensor.SetThreads(threads)
					c, err := New(s, storage)
					if err != nil {
						t.Fatal(err)
					}
					p := &probe{req: r.req, scores: make([][]float32, s.KVHeads)}
					c.pol = p
					d := s.HeadDim
					pasts := make([]int, s.KVHeads)
					for g := range pasts {
						pasts[g] = past * (g + 1) / s.KVHeads // KV heads of different lengths
						c.seed(0, g, randRows(rng, pasts[g]*d), randRows(rng, pasts[g]*d), pasts[g], d)
					}
					c.pos = past
					mustBegin(c, model.Step{Pos: past, Rows: n, Prefill: true})
					q := randRows(rng, n*s.Heads*d)
					k := randRows(rng, n*s.KVHeads*d)
					v := randRows(rng, n*s.KVHeads*d)
					got := make([]float32, len(q))
					c.attendHost(0, q, k, v, got)
					K, V := make([][]float32, s.KVHeads), make([][]float32, s.KVHeads)
					reqs := make([]ScoreRequest, s.KVHeads)
					for g := range K {
						var kb, vb []float32
						k, v := c.store(0, g).view(&kb, &vb)
						K[g], V[g] = append([]float32(nil), k...), append([]float32(nil), v...)
						f := &Forward{Head: g, Past: pasts[g], N: n}
						reqs[g] = r.req(f)
						reqs[g].From, reqs[g].To = max(reqs[g].From, 0), min(reqs[g].To, n)
					}
					want, wantScores := refAttention(s, q, n, K, V, pasts, reqs)
					checkAttention(t, name, got, want, p.scores, wantScores)
				}
			}
		}
	}
}

// chunkBench pre-fills nothing: it times one Attend of n queries at layer 0 with an
// empty cache (past 0), the whole causal chunk, like a one-chunk pre-fill's attention.
func chunkBench(b *testing.B, s Shape, n, threads int) {
	defer tensor.SetThreads(tensor.Threads())
	tensor.SetThreads(threads)
	rng := rand.New(rand.NewPCG(1, 2))
	d := s.HeadDim
	q := randRows(rng, n*s.Heads*d)
	k := randRows(rng, n*s.KVHeads*d)
	v := randRows(rng, n*s.KVHeads*d)
	out := make([]float32, len(q))
	s.Layers = 1
	c, err := New(s, "full")
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		mustBegin(c, prefillStep(c, n, true))
		c.attendHost(0, q, k, v, out)
		b.StopTimer()
		c.empty() // keeping its capacity
		b.StartTimer()
	}
	flops := 4 * float64(s.Heads) * float64(n) * float64(n+1) / 2 * float64(d) // QKᵀ and PV, causal
	b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

// BenchmarkChunkAttention: one layer's attention over a whole chunk of n queries
// (causal, empty cache before it), built-in-like (8 heads, 4 KV heads) and
// SmolLM2-like (9 heads, 3 KV heads) shapes, head_dim 64, at 1 and 2 threads.
//
//	go test ./kv -run '^$' -bench ChunkAttention -benchtime 3x
func BenchmarkChunkAttention(b *testing.B) {
	for _, sh := range []struct {
		name string
		s    Shape
	}{
		{"builtin", Shape{Layers: 1, Heads: 8, KVHeads: 4, HeadDim: 64}},
		{"smollm2", Shape{Layers: 1, Heads: 9, KVHeads: 3, HeadDim: 64}},
	} {
		for _, n := range []int{2048, 4096} {
			for _, t := range []int{1, 2} {
				b.Run(fmt.Sprintf("%s/n=%d/threads=%d", sh.name, n, t), func(b *testing.B) { chunkBench(b, sh.s, n, t) })
			}
		}
	}
}

// The decode kernel equals the straightforward computation up to float rounding, also
// when split into units that cut KV heads (decodeUnit lowered to 1: as many units as allowed, four per thread):
// GQA groups 1 to 8, head dims 5, 64, 128, contexts across the tile sizes, KV heads of
// different lengths, every storage, every kind of score request.
func TestDecodeAttentionMatchesReference(t *testing.T) {
	defer tensor.SetThreads(tensor.Threads())
	defer func(p int) { decodeUnit = p }(decodeUnit)
	requests := []struct {
		name string
		req  func(f *Forward) ScoreRequest
	}{
		{"none", func(*Forward) ScoreRequest { return ScoreRequest{} }},
		{"all", func(f *Forward) ScoreRequest { return ScoreRequest{From: 0, To: f.N} }},
		{"local", func(f *Forward) ScoreRequest { return ScoreRequest{From: 0, To: f.N, Local: true} }},
		{"odd", func(f *Forward) ScoreRequest { return ScoreRequest{From: 0, To: f.Head % 2} }},
	}
	rng := rand.New(rand.NewPCG(13, 14))
	trial := 0
	for _, group := range []int{1, 2, 3, 4, 8} {
		for _, d := range []int{5, 64, 128} {
			s := Shape{Layers: 1, Heads: 2 * group, KVHeads: 2, HeadDim: d}
			if group == 3 {
				s.Heads, s.KVHeads = 9, 3
			}
			for _, storage := range []string{"full", "full+bf16", "full+quant:bits=4,group=8,residual=8"} {
				for _, past := range []int{0, 1, 3, 4, 63, 64, 65, 127, 128, 129, 700} {
					for _, par := range []int{65536, 1} {
						trial++
						threads := 1 + trial%3
						r := requests[trial%len(requests)]
						name := fmt.Sprintf("%+v/%s/past=%d/threads=%d/par=%d/%s", s, storage, past, threads, par, r.name)
						tensor.SetThreads(threads)
						decodeUnit = par
						c, err := New(s, storage)
						if err != nil {
							t.Fatal(err)
						}
						p := &probe{req: r.req, scores: make([][]float32, s.KVHeads)}
						c.pol = p
						pasts := make([]int, s.KVHeads)
						for g := range pasts {
							pasts[g] = past * (g + 1) / s.KVHeads
							c.seed(0, g, randRows(rng, pasts[g]*d), randRows(rng, pasts[g]*d), pasts[g], d)
						}
						c.pos = past
						mustBegin(c, decodeStep(c))
						q := randRows(rng, s.Heads*d)
						for i := range q {
							q[i] *= 3 // peakier softmax than unit-variance queries give
						}
						k := randRows(rng, s.KVHeads*d)
						v := randRows(rng, s.KVHeads*d)
						got := make([]float32, len(q))
						c.attendHost(0, q, k, v, got)
						K, V := make([][]float32, s.KVHeads), make([][]float32, s.KVHeads)
						reqs := make([]ScoreRequest, s.KVHeads)
						for g := range K {
							var kb, vb []float32
							k, v := c.store(0, g).view(&kb, &vb)
							K[g], V[g] = append([]float32(nil), k...), append([]float32(nil), v...)
							reqs[g] = r.req(&Forward{Head: g, Past: pasts[g], N: 1})
							reqs[g].From, reqs[g].To = max(reqs[g].From, 0), min(reqs[g].To, 1)
						}
						want, wantScores := refAttention(s, q, 1, K, V, pasts, reqs)
						checkAttention(t, name, got, want, p.scores, wantScores)
					}
				}
			}
		}
	}
}

// checkAttention compares outputs and asked probabilities with the reference, 1e-5
// relative.
func checkAttention(t *testing.T, name string, got, want []float32, scores, wantScores [][]float32) {
	t.Helper()
	for i := range want {
		if !close32(got[i], want[i], 1e-5) {
			t.Fatalf("%s: out[%d] = %v, reference %v", name, i, got[i], want[i])
		}
	}
	for g := range wantScores {
		if len(scores[g]) != len(wantScores[g]) {
			t.Fatalf("%s: KV head %d: %d scores, reference %d", name, g, len(scores[g]), len(wantScores[g]))
		}
		for j := range wantScores[g] {
			if !close32(scores[g][j], wantScores[g][j], 1e-5) {
				t.Fatalf("%s: KV head %d: score[%d] = %v, reference %v", name, g, j, scores[g][j], wantScores[g][j])
			}
		}
	}
}
