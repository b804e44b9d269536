package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// scoreTable lays the asked heads' scores out one after the other and refuses requests the
// pool cannot answer, naming the head.
func TestScoreTable(t *testing.T) {
	heads := []ScoreHead{{From: 2, To: 5, Past: 10, Count: 14}, {}, {From: 0, To: 1, Past: 3, First: 3, Count: 4}}
	hp, err := scoreTable(heads, 6, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := []int32{2, 5, 10, 0, 14, 0, 0, 0, 0, 0, 0, 0, 0, 1, 3, 3, 4, 14}
	if !slices.Equal(hp, want) {
		t.Fatalf("got %v, want %v", hp, want)
	}
	if n := ScoresLen(heads); n != 18 {
		t.Fatalf("ScoresLen = %d, want 18", n)
	}
	if b := ScoresWorkBytes(8, heads); b != 8*3*2*4 {
		t.Fatalf("ScoresWorkBytes = %d, want %d", b, 8*3*2*4)
	}
	for _, c := range []struct {
		h    ScoreHead
		want string
	}{
		{ScoreHead{From: -1, To: 2, Count: 1}, "rows [-1, 2)"},
		{ScoreHead{From: 0, To: 7, Count: 1}, "rows [0, 7)"},
		{ScoreHead{From: 0, To: 2, Past: 3, First: 4, Count: 1}, "first entry 4"},
		{ScoreHead{From: 0, To: 2, Past: 3, Count: 10}, "scores 10 entries of 9"},
		{ScoreHead{From: 0, To: 2, Past: 60, Count: 10}, "holds 66 entries"},
	} {
		if _, err := scoreTable([]ScoreHead{{}, c.h}, 6, 1); err == nil || !strings.Contains(err.Error(), "head 1") ||
			!strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want an error naming head 1 and %q", c.h, err, c.want)
		}
	}
}

// The scores kernels against a float64 reference of kv's definition: per KV head, each asked
// row's softmax over the entries it sees (from First, up to its own), per query head, summed
// over the rows and averaged over the group, for the first Count entries.
func TestGPUAttentionScores(t *testing.T) {
	d := gpu(t)
	r := rand.New(rand.NewPCG(11, 12))
	for _, c := range []struct {
		dim, hq, n int
		heads      []ScoreHead // Past of each head: the fixture holds Past+n entries
	}{
		{64, 8, 40, []ScoreHead{{From: 32, To: 40, Past: 100, Count: 140}, {From: 32, To: 40, Past: 0, Count: 40}}},
		{128, 4, 30, []ScoreHead{{From: 0, To: 30, Past: 70, Count: 95}, {}, {From: 24, To: 30, Past: 5, First: 5, Count: 29}, {From: 0, To: 30, Past: 300, Count: 330}}},
		{64, 32, 1, []ScoreHead{{From: 0, To: 1, Past: 500, Count: 501}, {From: 0, To: 1, Past: 63, Count: 64}, {}, {From: 0, To: 1, Past: 64, First: 64, Count: 65}}},
		{128, 8, 1, []ScoreHead{{From: 0, To: 1, Past: 1000, Count: 1001}}}, // 8 query heads per KV head
		{64, 4, 200, []ScoreHead{{From: 0, To: 200, Past: 129, Count: 329}, {From: 0, To: 200, Past: 0, Count: 200}}},
	} {
		t.Run(fmt.Sprintf("d%d-hq%d-hkv%d-n%d", c.dim, c.hq, len(c.heads), c.n), func(t *testing.T) {
			lens := make([]int, len(c.heads))
			for g, h := range c.heads {
				lens[g] = h.Past + c.n
			}
			f := newCacheFixture(t, d, r, c.dim, c.hq, lens)
			G := c.hq / len(c.heads)
			q, qf := randBF16(r, c.n*c.hq*c.dim, 2)
			total := ScoresLen(c.heads)
			nan := make([]float32, total)
			for i := range nan {
				nan[i] = float32(math.NaN())
			}
			out := upload(t, d, nan, 4)
			work, err := d.Alloc(max(ScoresWorkBytes(c.hq, c.heads), 4))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Free(work) })
			if err := d.AttentionScores(out, upload(t, d, q, 2), f.pool, f.heads, c.n, c.heads, work); err != nil {
				t.Fatal(err)
			}
			got32 := make([]float32, total)
			if err := Download(d, got32, out); err != nil {
				t.Fatal(err)
			}
			scale := float64(f.heads.Scale)
			off := 0
			for g, h := range c.heads {
				if h.To <= h.From {
					continue
				}
				want := make([]float64, h.Past+c.n)
				for i := h.From; i < h.To; i++ {
					for qh := g * G; qh < (g+1)*G; qh++ {
						qo := (i*c.hq + qh) * c.dim
						end := h.Past + i + 1
						logits := make([]float64, end-h.First)
						mx := math.Inf(-1)
						for j := range logits {
							var dot float64
							for x, kx := range f.keys[g][h.First+j] {
								dot += qf[qo+x] * kx
							}
							logits[j] = dot * scale
							mx = max(mx, logits[j])
						}
						var sum float64
						for j := range logits {
							logits[j] = math.Exp(logits[j] - mx)
							sum += logits[j]
						}
						for j, e := range logits {
							want[h.First+j] += e / sum / float64(G)
						}
					}
				}
				got := make([]float64, h.Count)
				for j := range got {
					got[j] = float64(got32[off+j])
				}
				checkClose(t, fmt.Sprintf("head %d scores", g), got, want[:h.Count], 1e-4)
				for j := 0; j < h.First; j++ {
					if got[j] != 0 {
						t.Fatalf("head %d: entry %d before the first seen has score %g", g, j, got[j])
					}
				}
				off += h.Count
			}
		})
	}
}

// BenchmarkAttentionScores times the scores of Llama-3.1-8B's heads (32 query and 8 KV heads of
// 128) as the policies ask for them: SnapKV's observation window after a pre-fill (64 rows of
// the last 4K-token chunk), H2O's and Locret's every row of a 4K-token chunk, TOVA's decode step.
func BenchmarkAttentionScores(b *testing.B) {
	d := gpu(b)
	const hq, hkv, dim = 32, 8, 128
	for _, c := range []struct {
		name            string
		past, n, window int
	}{
		{"snapkv-window64-32K", 28 << 10, 4 << 10, 64},
		{"snapkv-window64-128K", 124 << 10, 4 << 10, 64},
		{"h2o-chunk4K-past0", 0, 4 << 10, 4 << 10},
		{"h2o-chunk4K-past28K", 28 << 10, 4 << 10, 4 << 10},
		{"tova-decode-32K", 32 << 10, 1, 1},
	} {
		b.Run(c.name, func(b *testing.B) {
			pool, heads := benchCache(b, d, hq, hkv, dim, c.past+c.n)
			req := make([]ScoreHead, hkv)
			for g := range req {
				req[g] = ScoreHead{From: c.n - c.window, To: c.n, Past: c.past, Count: c.past + c.n}
			}
			q := alloc(b, d, int64(c.n*hq*dim*2))
			fillRandom(b, d, q, 4)
			out := alloc(b, d, int64(ScoresLen(req))*4)
			work := alloc(b, d, ScoresWorkBytes(hq, req))
			ms := timeIt(b, d, func(int) error { return d.AttentionScores(out, q, pool, heads, c.n, req, work) })
			// q·k twice (statistics, then probabilities) over the asked rows' visible entries
			pairs := float64(c.window)*float64(c.past) + float64(c.window)*float64(2*c.n-c.window+1)/2
			b.ReportMetric(ms, "ms/op")
			b.ReportMetric(4*pairs*dim*hq/(ms*1e-3)/1e12, "TFLOP/s")
		})
	}
}
