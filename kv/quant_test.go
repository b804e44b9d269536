package kv

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/kvfoot/kvfoot/tensor"
)

// Every dequantized value is within half a quantization step of the original, where
// the step is (max−min)/(2^bits−1) of its group, computed here from the raw data:
// keys per channel over groups of `group` tokens, values per token over `group` channels.
func TestQuantErrorBound(t *testing.T) {
	const d, n, group, residual = 16, 100, 8, 8
	for _, bits := range []int{2, 4, 8} {
		rng := rand.New(rand.NewPCG(uint64(bits), 2))
		k, v := randRows(rng, n*d), randRows(rng, n*d)
		s := quant{bits: bits, group: group, residual: residual}.newStore(d).(*quantStore)
		s.appendRows(k, v, n, d)
		// flushes while ≥ residual+group rows are full precision: 11 groups, 12 residual
		if s.nq() != 88 || s.nr() != 12 {
			t.Fatalf("bits %d: %d quantized, %d residual rows, want 88 and 12", bits, s.nq(), s.nr())
		}
		var kb, vb []float32
		K, V := s.view(&kb, &vb)
		levels := float64(int(1)<<bits - 1)
		for tok := 0; tok < n; tok++ {
			for c := 0; c < d; c++ {
				var kstep, vstep float64
				if tok < 88 {
					g0 := tok / group * group
					lo, hi := math.Inf(1), math.Inf(-1)
					for u := g0; u < g0+group; u++ {
						lo, hi = min(lo, float64(k[u*d+c])), max(hi, float64(k[u*d+c]))
					}
					kstep = (hi - lo) / levels
					c0 := c / group * group
					lo, hi = math.Inf(1), math.Inf(-1)
					for u := c0; u < c0+group; u++ {
						lo, hi = min(lo, float64(v[tok*d+u])), max(hi, float64(v[tok*d+u]))
					}
					vstep = (hi - lo) / levels
				}
				i := tok*d + c
				if e := math.Abs(float64(K[i] - k[i])); e > kstep/2*(1+1e-5)+1e-6 {
					t.Fatalf("bits %d: key (%d,%d) error %g > half step %g", bits, tok, c, e, kstep/2)
				}
				if e := math.Abs(float64(V[i] - v[i])); e > vstep/2*(1+1e-5)+1e-6 {
					t.Fatalf("bits %d: value (%d,%d) error %g > half step %g", bits, tok, c, e, vstep/2)
				}
			}
		}
		// codes: 88 rows × d·bits/8 bytes, keys and values; scales and minima (float32):
		// 11 key groups × d × 2 + 88 rows × 2 value groups × 2; residual 12 rows × d × 2.
		want := int64(2*88*d*bits/8 + 4*(11*d*2+88*2*2+12*d*2))
		if s.bytes() != want {
			t.Errorf("bits %d: %d bytes, want %d", bits, s.bytes(), want)
		}
	}
}

// Evicting rows from quantized storage keeps the survivors' values bit for bit.
func TestQuantKeepPreservesRows(t *testing.T) {
	const d, n = 8, 70
	rng := rand.New(rand.NewPCG(4, 4))
	k, v := randRows(rng, n*d), randRows(rng, n*d)
	s := quant{bits: 4, group: 4, residual: 4}.newStore(d).(*quantStore)
	s.appendRows(k, v, n, d)
	var kb, vb []float32
	K0, V0 := s.view(&kb, &vb)
	K0, V0 = slices.Clone(K0), slices.Clone(V0)
	var keep []int
	for i := 0; i < n; i++ {
		if i%3 != 1 && !(i >= 8 && i < 16) { // also drops two whole key groups
			keep = append(keep, i)
		}
	}
	s.keep(keep)
	K, V := s.view(&kb, &vb)
	for r, j := range keep {
		if !slices.Equal(K[r*d:(r+1)*d], K0[j*d:(j+1)*d]) || !slices.Equal(V[r*d:(r+1)*d], V0[j*d:(j+1)*d]) {
			t.Fatalf("row %d (was %d) changed", r, j)
		}
	}
	if got := len(s.kmin) / d; got != 14 { // 64 quantized rows: 16 groups, two emptied
		t.Errorf("%d key groups after eviction, want 14", got)
	}
}

func TestBF16StoreRoundTrip(t *testing.T) {
	s := &bf16Store{d: 2}
	s.appendRows([]float32{1, 1.00390625, 3, -2}, []float32{0.5, 1e-3, 7, 8}, 2, 2)
	var kb, vb []float32
	K, V := s.view(&kb, &vb)
	if !slices.Equal(K, []float32{1, 1, 3, -2}) || V[0] != 0.5 || math.Abs(float64(V[1])-1e-3) > 1e-5 || s.bytes() != 16 {
		t.Errorf("K %v V %v bytes %d", K, V, s.bytes())
	}
}

// The decode kernel's tile dequantization (keyRows, valueRows) gives the rows view
// gives, for any range: bits 2, 4, 8; groups that do and do not split a byte; tiles
// across the quantized/residual boundary; after evictions that cut key groups.
func TestQuantRowsMatchView(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for _, bits := range []int{2, 4, 8} {
		for _, c := range []struct{ d, group, residual int }{{64, 32, 32}, {64, 8, 0}, {5, 3, 4}, {7, 1, 2}, {64, 5, 3}} {
			for _, n := range []int{0, 1, 40, 65, 130, 700} {
				s := quant{bits: bits, group: c.group, residual: c.residual}.newStore(c.d).(*quantStore)
				s.appendRows(randRows(rng, n*c.d), randRows(rng, n*c.d), n, c.d)
				for evict := range 2 {
					if evict == 1 {
						var keep []int
						for i := 0; i < s.nq()+s.nr(); i++ {
							if i%5 != 2 {
								keep = append(keep, i)
							}
						}
						s.keep(keep)
					}
					var kb, vb []float32
					K, V := s.view(&kb, &vb)
					rows := s.nq() + s.nr()
					d := c.d
					for _, r := range [][2]int{{0, rows}, {0, min(rows, 128)}, {rows / 3, rows}, {rows / 2, rows / 2}, {max(0, s.nq()-3), min(rows, s.nq()+2)}} {
						j0, j1 := r[0], r[1]
						for i := 0; i < 5 && j1 > j0; i++ {
							a := j0 + rng.IntN(j1-j0)
							b := a + rng.IntN(j1-a+1)
							gk, gv := make([]float32, (b-a)*d), make([]float32, (b-a)*d)
							s.keyRows(gk, a, b)
							s.valueRows(gv, a, b)
							for x := range gk {
								if !close32(gk[x], K[a*d+x], 1e-6) || !close32(gv[x], V[a*d+x], 1e-6) {
									t.Fatalf("bits %d %+v n %d evict %d: rows [%d,%d) element %d: key %v value %v, view %v %v",
										bits, c, n, evict, a, b, x, gk[x], gv[x], K[a*d+x], V[a*d+x])
								}
							}
						}
					}
				}
			}
		}
	}
}

// Decode over quantized storage, dequantized a tile at a time, equals the attention over
// the whole dequantized cache (view) up to float rounding: bits 2, 4, 8, GQA groups 1
// to 4, contexts 0..700 across the 128-key tiles and the quantization groups, on one
// goroutine and split over pieces, with and without eviction, every kind of request.
func TestQuantDecodeMatchesReference(t *testing.T) {
	defer tensor.SetThreads(tensor.Threads())
	defer func(p int) { decodeUnit = p }(decodeUnit)
	requests := []func(f *Forward) ScoreRequest{
		func(*Forward) ScoreRequest { return ScoreRequest{} },
		func(f *Forward) ScoreRequest { return ScoreRequest{From: 0, To: f.N} },
		func(f *Forward) ScoreRequest { return ScoreRequest{From: 0, To: f.N, Local: true} },
		func(f *Forward) ScoreRequest { return ScoreRequest{From: 0, To: f.Head % 2} },
	}
	rng := rand.New(rand.NewPCG(21, 22))
	trial := 0
	for _, bits := range []int{2, 4, 8} {
		for _, qs := range []string{"group=32,residual=32", "group=8,residual=0", "group=3,residual=5"} {
			spec := fmt.Sprintf("full+quant:bits=%d,%s", bits, qs)
			for _, group := range []int{1, 2, 3, 4} {
				s := Shape{Layers: 1, Heads: 2 * group, KVHeads: 2, HeadDim: 64}
				for _, past := range []int{0, 1, 31, 32, 33, 63, 64, 65, 96, 127, 128, 129, 255, 256, 257, 383, 512, 700} {
					trial++
					par, evict := []int{65536, 1}[trial%2], trial%3 == 0
					tensor.SetThreads(1 + trial%2)
					decodeUnit = par
					c, err := New(s, spec)
					if err != nil {
						t.Fatal(err)
					}
					req := requests[trial%len(requests)]
					p := &probe{req: req, scores: make([][]float32, s.KVHeads)}
					c.pol = p
					pasts := make([]int, s.KVHeads)
					for g := range pasts {
						n := past * (g + 1) / s.KVHeads
						c.seed(0, g, randRows(rng, n*64), randRows(rng, n*64), n, 64)
						if evict {
							var keep []int
							for i := 0; i < n; i++ {
								if i%7 != 3 {
									keep = append(keep, i)
								}
							}
							c.keepSeeded(0, g, keep)
							n = len(keep)
						}
						pasts[g] = n
					}
					c.pos = past
					mustBegin(c, decodeStep(c))
					q := randRows(rng, s.Heads*64)
					for i := range q {
						q[i] *= 3
					}
					k, v := randRows(rng, s.KVHeads*64), randRows(rng, s.KVHeads*64)
					got := make([]float32, len(q))
					c.attendHost(0, q, k, v, got)
					K, V := make([][]float32, s.KVHeads), make([][]float32, s.KVHeads)
					reqs := make([]ScoreRequest, s.KVHeads)
					for g := range K {
						var kb, vb []float32
						k, v := c.store(0, g).view(&kb, &vb)
						K[g], V[g] = slices.Clone(k), slices.Clone(v)
						reqs[g] = req(&Forward{Head: g, Past: pasts[g], N: 1})
						reqs[g].From, reqs[g].To = max(reqs[g].From, 0), min(reqs[g].To, 1)
					}
					want, wantScores := refAttention(s, q, 1, K, V, pasts, reqs)
					name := fmt.Sprintf("%s/group=%d/past=%d/par=%d/evict=%v", spec, group, past, par, evict)
					checkAttention(t, name, got, want, p.scores, wantScores)
				}
			}
		}
	}
}
