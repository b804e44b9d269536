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
	// 8 query heads × 3 rows: a max and a sum (one split of the keys), and a log-sum-exp
	if b := ScoresWorkBytes(8, heads); b != 8*3*(2+1)*4 {
		t.Fatalf("ScoresWorkBytes = %d, want %d", b, 8*3*(2+1)*4)
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

// scoresReference is kv's definition in float64: per asked KV head, each asked row's softmax
// over the entries it sees (from First, up to its own), per query head, summed over the rows and
// averaged over the group, for the first Count entries, head after head. logit(g, i, h, j) is
// row i's score of entry j for the group's query head h, in natural units.
func scoresReference(heads []ScoreHead, G int, logit func(g, i, h, j int) float64) []float64 {
	var out []float64
	for g, sh := range heads {
		if sh.To <= sh.From {
			continue
		}
		want := make([]float64, max(sh.Count, sh.Past+sh.To))
		for i := sh.From; i < sh.To; i++ {
			for h := range G {
				end := sh.Past + i + 1
				logits := make([]float64, end-sh.First)
				mx := math.Inf(-1)
				for j := range logits {
					logits[j] = logit(g, i, h, sh.First+j)
					mx = max(mx, logits[j])
				}
				var sum float64
				for j := range logits {
					logits[j] = math.Exp(logits[j] - mx)
					sum += logits[j]
				}
				for j, e := range logits {
					want[sh.First+j] += e / sum / float64(G)
				}
			}
		}
		out = append(out, want[:sh.Count]...)
	}
	return out
}

// The scores kernels, float32 and tensor-core, against the float64 reference and each other:
// GQA groups of 1 to 8, head dimensions 64 and 128, patch rows (Count below Past+n), First =
// Past (a chunk-local softmax) and First inside the cache, rows and entries that are not
// multiples of the tiles, and enough entries that the tensor-core statistics split the keys.
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
		{128, 12, 77, []ScoreHead{{From: 0, To: 77, Past: 37, Count: 109}, {From: 5, To: 72, Past: 191, First: 191, Count: 258}, {}, {From: 70, To: 77, Past: 0, Count: 71}}},
		{64, 2, 150, []ScoreHead{{From: 3, To: 150, Past: 300, First: 130, Count: 444}, {From: 0, To: 150, Past: 64, First: 64, Count: 214}}},
		{128, 8, 64, []ScoreHead{{From: 0, To: 64, Past: 5000, Count: 5064}, {From: 0, To: 64, Past: 4000, First: 4000, Count: 4058}}},
	} {
		splits, _ := scoreSplits(c.hq, c.heads)
		t.Run(fmt.Sprintf("d%d-hq%d-hkv%d-n%d-splits%d", c.dim, c.hq, len(c.heads), c.n, splits), func(t *testing.T) {
			lens := make([]int, len(c.heads))
			for g, h := range c.heads {
				lens[g] = h.Past + c.n
			}
			f := newCacheFixture(t, d, r, c.dim, c.hq, lens)
			G := c.hq / len(c.heads)
			q, qf := randBF16(r, c.n*c.hq*c.dim, 2)
			qDev := upload(t, d, q, 2)
			scale := float64(f.heads.Scale)
			want := scoresReference(c.heads, G, func(g, i, h, j int) float64 {
				var dot float64
				for x, kx := range f.keys[g][j] {
					dot += qf[(i*c.hq+g*G+h)*c.dim+x] * kx
				}
				return dot * scale
			})
			total := ScoresLen(c.heads)
			work, err := d.Alloc(max(ScoresWorkBytes(c.hq, c.heads), 4))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Free(work) })
			run := func(kernels string) []float64 {
				out := poisonedF32(t, d, total)
				if err := d.attentionScores(kernels, out, qDev, f.pool, f.heads, c.n, c.heads, work); err != nil {
					t.Fatal(err)
				}
				got32 := make([]float32, total)
				if err := Download(d, got32, out); err != nil {
					t.Fatal(err)
				}
				got := make([]float64, total)
				for j, v := range got32 {
					got[j] = float64(v)
				}
				return got
			}
			results := map[string][]float64{}
			for _, kernels := range []string{"f32", "mma"} {
				got := run(kernels)
				results[kernels] = got
				// Both read the same bf16 q and k and sum exact bf16 products in float32; the
				// rest is float32 softmax arithmetic: errors of a few 2^-24 per score.
				checkClose(t, kernels+" scores", got, want, 1e-4)
				off := 0
				for g, h := range c.heads {
					if h.To <= h.From {
						continue
					}
					for j := 0; j < h.First; j++ {
						if got[off+j] != 0 {
							t.Fatalf("%s: head %d: entry %d before the first seen has score %g", kernels, g, j, got[off+j])
						}
					}
					off += h.Count
				}
			}
			checkClose(t, "mma against f32", results["mma"], results["f32"], 1e-4)
			if again := run("mma"); !slices.Equal(again, results["mma"]) {
				t.Fatal("mma: a second run gave other scores (the kernels are meant to be deterministic)")
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
	for _, kernels := range []string{"f32", "mma"} {
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
			b.Run(kernels+"/"+c.name, func(b *testing.B) {
				pool, heads := benchCache(b, d, hq, hkv, dim, c.past+c.n)
				req := make([]ScoreHead, hkv)
				for g := range req {
					req[g] = ScoreHead{From: c.n - c.window, To: c.n, Past: c.past, Count: c.past + c.n}
				}
				q := alloc(b, d, int64(c.n*hq*dim*2))
				fillRandom(b, d, q, 4)
				out := alloc(b, d, int64(ScoresLen(req))*4)
				work := alloc(b, d, ScoresWorkBytes(hq, req))
				ms := timeIt(b, d, func(int) error { return d.attentionScores(kernels, out, q, pool, heads, c.n, req, work) })
				// q·k twice (statistics, then probabilities) over the asked rows' visible entries
				pairs := float64(c.window)*float64(c.past) + float64(c.window)*float64(2*c.n-c.window+1)/2
				b.ReportMetric(ms, "ms/op")
				b.ReportMetric(4*pairs*dim*hq/(ms*1e-3)/1e12, "TFLOP/s")
			})
		}
	}
}

func TestScoresChoice(t *testing.T) {
	for v, want := range map[string]string{"": "mma", "f32": "f32", "mma": "mma"} {
		if got, err := scoresChoice(v); err != nil || got != want {
			t.Errorf("scoresChoice(%q) = %q, %v; want %q", v, got, err, want)
		}
	}
	for _, v := range []string{"MMA", "tensor", "1", "f16"} {
		_, err := scoresChoice(v)
		if err == nil || !strings.Contains(err.Error(), scoresEnv) || !strings.Contains(err.Error(), fmt.Sprintf("%q", v)) {
			t.Errorf("scoresChoice(%q): error %v should name $%s and the value", v, err, scoresEnv)
		}
	}
	// Open refuses a bad value before it looks for a driver, so this holds without a GPU too.
	t.Setenv(scoresEnv, "tensor")
	if d, err := Open(0); err == nil {
		d.Close()
		t.Fatalf("Open with $%s=tensor succeeded", scoresEnv)
	} else if !strings.Contains(err.Error(), scoresEnv) {
		t.Fatalf("Open with $%s=tensor: %v does not name the variable", scoresEnv, err)
	}
}

// scoreSplits by hand: SnapKV's 64-row window over 32K entries on Llama-3.1-8B's heads is 2
// row blocks for each of 8 KV heads, 16 in all, so 32 splits of the 512 key tiles; H2O's 4K rows
// fill the GPU without splitting; a short cache is not split below 8 tiles a split.
func TestScoreSplits(t *testing.T) {
	heads := func(n int, h ScoreHead) []ScoreHead { return slices.Repeat([]ScoreHead{h}, n) }
	for _, c := range []struct {
		name        string
		hq          int
		heads       []ScoreHead
		splits, per int
	}{
		{"snapkv-32K", 32, heads(8, ScoreHead{From: 4032, To: 4096, Past: 28 << 10, Count: 32 << 10}), 32, 16},
		{"h2o-4K", 32, heads(8, ScoreHead{From: 0, To: 4096, Past: 28 << 10, Count: 32 << 10}), 1, 512},
		{"short", 32, heads(8, ScoreHead{From: 0, To: 10, Past: 1000, Count: 1010}), 2, 8},    // 16 tiles
		{"odd", 4, heads(1, ScoreHead{From: 0, To: 1, Past: 1200, Count: 1201}), 2, 10},       // 19 tiles: 2 splits
		{"long", 4, heads(1, ScoreHead{From: 0, To: 1, Past: 256191, Count: 256192}), 445, 9}, // 4003 tiles: 500 splits of 9 need only 445
		{"none", 8, []ScoreHead{{}, {}}, 1, 0},
	} {
		splits, per := scoreSplits(c.hq, c.heads)
		if splits != c.splits || per != c.per {
			t.Errorf("%s: scoreSplits = %d splits of %d tiles, want %d of %d", c.name, splits, per, c.splits, c.per)
		}
	}
}

// scoresMMAModel is scores_mma_stats, scores_mma_lse and scores_mma_probs in Go at the level of
// their blocks and tiles: the same grids (from scoreSplits and AttentionScores's launch
// arithmetic), row orders, tile ranges, loaded lengths, edge-tile tests and masks, with float64
// arithmetic and score(g, v, j) for row v's score of entry j in log2 units. It fails t where a pair that is
// used reads a key the kernel zero-fills or a table entry past the head's blocks, and returns
// the scores and, per head, how often each (row, entry) pair entered each pass.
func scoresMMAModel(t *testing.T, heads []ScoreHead, n, hq int, score func(g, v, j int) float64) (out []float64, stats, probs [][][]int) {
	hkv, G := len(heads), hq/len(heads)
	maxRows := maxRows(heads)
	splits, per := scoreSplits(hq, heads)
	statsGrid := (maxRows*G + scoresMMARows - 1) / scoresMMARows
	ml := make([]float64, splits*hq*maxRows*2) // the workspace: (max, sum) per split and row
	stats, probs = make([][][]int, hkv), make([][][]int, hkv)
	for g, sh := range heads {
		rows := max(0, sh.To-sh.From) * G
		stats[g], probs[g] = make([][]int, rows), make([][]int, rows)
		for v := range rows {
			stats[g][v], probs[g][v] = make([]int, sh.Past+n), make([]int, sh.Past+n)
		}
	}
	blocksOf := func(sh ScoreHead) int { return (sh.Past + n + BlockEntries - 1) / BlockEntries }
	for z := range splits {
		for g, sh := range heads {
			for bx := range statsGrid {
				rows := (sh.To - sh.From) * G
				v0 := (statsGrid - 1 - bx) * 128
				if v0 >= rows {
					continue
				}
				pFirst, pLast := sh.From+v0/G, sh.From+(min(rows, v0+128)-1)/G
				end := sh.Past + pLast + 1
				t0, t1 := max(sh.First/64, z*per), min((end+63)/64, (z+1)*per)
				m, l := make([]float64, 128), make([]float64, 128)
				for r := range m {
					m[r] = math.Inf(-1)
				}
				for tile := t0; tile < t1; tile++ {
					if tile >= blocksOf(sh) {
						t.Fatalf("stats: head %d reads table entry %d of %d", g, tile, blocksOf(sh))
					}
					j0 := tile * 64
					edge := j0 < sh.First || j0+63 > sh.Past+pFirst
					for r := range 128 {
						v := v0 + r
						lo, hi := sh.First-j0, sh.Past+sh.From+v/G-j0
						s := make([]float64, 64)
						mx := math.Inf(-1)
						for c := range s {
							s[c] = math.Inf(-1)
							if edge && (c < lo || c > hi) || v >= rows {
								continue
							}
							if c >= end-j0 {
								t.Fatalf("stats: head %d row %d uses entry %d, past the %d loaded", g, v, j0+c, end)
							}
							s[c] = score(g, v, j0+c)
							stats[g][v][j0+c]++
							mx = max(mx, s[c])
						}
						mnew := max(m[r], mx)
						mu := mnew
						if math.IsInf(mnew, -1) {
							mu = 0
						}
						var sum float64
						for _, x := range s {
							sum += math.Exp2(x - mu)
						}
						l[r] = l[r]*math.Exp2(m[r]-mu) + sum
						m[r] = mnew
					}
				}
				for r := range 128 {
					if v := v0 + r; v < rows {
						i := ((z*hkv+g)*maxRows*G + v) * 2
						ml[i], ml[i+1] = m[r], l[r]
					}
				}
			}
		}
	}
	lse := make([]float64, hq*maxRows) // scores_mma_lse: block (bx, g)
	for g, sh := range heads {
		for bx := range statsGrid {
			for tid := range 128 {
				v := bx*128 + tid
				if v >= (sh.To-sh.From)*G {
					continue
				}
				row := g*maxRows*G + v
				M, S := math.Inf(-1), 0.0
				for z := range splits {
					M = max(M, ml[(z*hkv*maxRows*G+row)*2])
				}
				for z := range splits {
					i := (z*hkv*maxRows*G + row) * 2
					S += ml[i+1] * math.Exp2(ml[i]-M)
				}
				lse[row] = M + math.Log2(S)
			}
		}
	}
	most := 0
	for _, sh := range heads {
		if sh.To > sh.From {
			most = max(most, sh.Count)
		}
	}
	out = make([]float64, ScoresLen(heads))
	for i := range out {
		out[i] = math.NaN()
	}
	off := 0
	for g, sh := range heads {
		for bx := range (most + scoresMMARows - 1) / scoresMMARows {
			j0 := bx * 128
			if sh.To <= sh.From || j0 >= sh.Count {
				continue
			}
			rows := (sh.To - sh.From) * G
			vStart := max(0, j0-sh.Past-sh.From) * G
			if j0+127 < sh.First {
				vStart = rows
			}
			T := (rows - vStart + 63) / 64
			valid := sh.Count - j0
			if last := j0/64 + min(valid, 128)/65; last >= blocksOf(sh) {
				t.Fatalf("probs: head %d reads table entry %d of %d", g, last, blocksOf(sh))
			}
			acc := make([]float64, 128)
			for it := range T {
				v0 := vStart + it*64
				edge := j0 < sh.First || j0+127 > sh.Past+sh.From+v0/G
				for c := range 64 {
					v := v0 + c
					if v >= rows { // lse = +inf: weight 0
						continue
					}
					rowLse := lse[g*maxRows*G+v]
					lo, hi := sh.First-j0, sh.Past+sh.From+v/G-j0
					for k := range 128 {
						if edge && (k < lo || k > hi) || k >= valid {
							continue
						}
						probs[g][v][j0+k]++
						acc[k] += math.Exp2(score(g, v, j0+k) - rowLse)
					}
				}
			}
			for k, p := range acc {
				if j := j0 + k; j < sh.Count {
					out[off+j] = p / float64(G)
				}
			}
		}
		if sh.To > sh.From {
			off += sh.Count
		}
	}
	return out, stats, probs
}

// The tensor-core kernels' blocks and tiles, modelled in Go, cover exactly the pairs kv's
// definition asks for (each row, each entry it sees, once per pass; none it does not see) and
// give its scores, over random heads: GQA groups, patch rows, First = Past and inside the cache,
// rows and entries off the tiles, and short windows over long caches, where the keys split.
func TestScoresMMATiles(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	splitCases := 0
	for c := range 150 {
		hkv, G := 1+r.IntN(3), []int{1, 2, 3, 4, 8}[r.IntN(5)]
		n := 1 + r.IntN(200)
		heads := make([]ScoreHead, hkv)
		for g := range heads {
			if r.IntN(6) == 0 {
				continue // asks nothing
			}
			h := ScoreHead{From: r.IntN(n), Past: r.IntN(3000)}
			if r.IntN(2) == 0 { // a window of the last rows, as SnapKV's
				h.From = max(0, n-1-r.IntN(64))
			}
			h.To = h.From + 1 + r.IntN(n-h.From)
			switch r.IntN(3) {
			case 1:
				h.First = h.Past
			case 2:
				h.First = r.IntN(h.Past + 1)
			}
			h.Count = h.Past + n - r.IntN(min(n, 8)) // patch rows are not scored
			heads[g] = h
		}
		if _, err := scoreTable(heads, n, (3000+n)/BlockEntries+1); err != nil {
			t.Fatalf("case %d: %v", c, err)
		}
		if s, _ := scoreSplits(hkv*G, heads); s > 1 {
			splitCases++
		}
		score := func(g, v, j int) float64 { return 3 * math.Sin(float64(g*7919+v*104729+j*31)) }
		got, stats, probs := scoresMMAModel(t, heads, n, hkv*G, score)
		want := scoresReference(heads, G, func(g, i, h, j int) float64 {
			return score(g, (i-heads[g].From)*G+h, j) * math.Ln2 // log2 units to natural ones
		})
		for g, sh := range heads {
			for v := range stats[g] {
				for j := range stats[g][v] {
					seen := 0
					if sh.First <= j && j <= sh.Past+sh.From+v/G {
						seen = 1
					}
					if stats[g][v][j] != seen {
						t.Fatalf("case %d %+v n=%d G=%d: stats count row %d entry %d %d times, want %d", c, sh, n, G, v, j, stats[g][v][j], seen)
					}
					if j < sh.Count && probs[g][v][j] != seen {
						t.Fatalf("case %d %+v n=%d G=%d: probs count row %d entry %d %d times, want %d", c, sh, n, G, v, j, probs[g][v][j], seen)
					}
				}
			}
		}
		if len(want) > 0 {
			checkClose(t, fmt.Sprintf("case %d scores", c), got, want, 1e-12)
		}
	}
	if splitCases < 20 {
		t.Fatalf("only %d of the cases split the keys", splitCases)
	}
}

// $KVFOOT_SCORES=f32 on a GPU: the device opens with the float32 kernels, and
// AttentionScores runs them (its scores equal attentionScores's "f32" ones bit for bit).
func TestGPUOpenScoresChoice(t *testing.T) {
	gpu(t)
	t.Setenv(scoresEnv, "f32")
	d, err := Open(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() }) // after the fixture's cleanups, which free on d
	if d.scores != "f32" {
		t.Fatalf("$%s=f32: the device uses the %s kernels", scoresEnv, d.scores)
	}
	r := rand.New(rand.NewPCG(13, 14))
	const dim, hq, n = 64, 8, 20
	heads := []ScoreHead{{From: 0, To: n, Past: 90, Count: 90 + n}, {From: 10, To: n, Past: 30, First: 30, Count: 30 + n}}
	f := newCacheFixture(t, d, r, dim, hq, []int{90 + n, 30 + n})
	q, _ := randBF16(r, n*hq*dim, 2)
	qDev := upload(t, d, q, 2)
	work, err := d.Alloc(ScoresWorkBytes(hq, heads))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Free(work)
	var got [2][]float32
	for i, run := range []func(out Buffer) error{
		func(out Buffer) error { return d.AttentionScores(out, qDev, f.pool, f.heads, n, heads, work) },
		func(out Buffer) error { return d.attentionScores("f32", out, qDev, f.pool, f.heads, n, heads, work) },
	} {
		out := poisonedF32(t, d, ScoresLen(heads))
		if err := run(out); err != nil {
			t.Fatal(err)
		}
		got[i] = make([]float32, ScoresLen(heads))
		if err := Download(d, got[i], out); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(got[0], got[1]) {
		t.Fatal("AttentionScores under $KVFOOT_SCORES=f32 differs from the f32 kernels")
	}
}
