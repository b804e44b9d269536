package kv

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
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
