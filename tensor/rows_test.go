package tensor

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// rowSizes are the row counts and widths DotRows and AxpyRows are checked at: ragged
// around the lane counts (8, 16), the 4-row matvec block and the 64-column AxpyRows
// block, head dims 5, 64, 80 and 128.
var (
	rowCounts = []int{0, 1, 2, 3, 4, 5, 7, 8, 13, 64, 129}
	rowWidths = []int{1, 5, 7, 8, 15, 16, 17, 33, 48, 64, 65, 80, 96, 128, 200}
)

func TestDotRows(t *testing.T) {
	withImpls(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(21, 22))
		for _, n := range rowCounts {
			for _, k := range rowWidths {
				x, y := randSlice(r, n*k+3), randSlice(r, k)
				dst := randSlice(r, n+1) // the element past len(dst) must stay
				last := dst[n]
				DotRows(dst[:n], x, y)
				for j := 0; j < n; j++ {
					var want, abs float64
					for c := 0; c < k; c++ {
						p := float64(x[j*k+c]) * float64(y[c])
						want += p
						abs += math.Abs(p)
					}
					checkSum(t, fmt.Sprintf("DotRows n=%d k=%d: dst[%d]", n, k, j), dst[j], want, abs, k)
				}
				if dst[n] != last {
					t.Fatalf("DotRows n=%d k=%d wrote past len(dst)", n, k)
				}
			}
		}
	})
}

func TestAxpyRows(t *testing.T) {
	withImpls(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(23, 24))
		for _, n := range rowCounts {
			for _, k := range rowWidths {
				alpha, x := randSlice(r, n), randSlice(r, n*k+3)
				y0 := randSlice(r, k+1)
				y := append([]float32(nil), y0...)
				AxpyRows(y[:k], alpha, x)
				for c := 0; c < k; c++ {
					want, abs := float64(y0[c]), math.Abs(float64(y0[c]))
					for j := 0; j < n; j++ {
						p := float64(alpha[j]) * float64(x[j*k+c])
						want += p
						abs += math.Abs(p)
					}
					checkSum(t, fmt.Sprintf("AxpyRows n=%d k=%d: y[%d]", n, k, c), y[c], want, abs, n+1)
				}
				if y[k] != y0[k] {
					t.Fatalf("AxpyRows n=%d k=%d wrote past len(dst)", n, k)
				}
			}
		}
	})
}

// SiLUMul against float64 on normal values, the whole float32 range by magnitude,
// ±0, ±Inf, and lengths around the block size.
func TestSiLUMul(t *testing.T) {
	withImpls(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(25, 26))
		var g []float32
		for i := 0; i < 3000; i++ {
			g = append(g, float32(r.NormFloat64()*4))
		}
		for e := -40; e <= 38; e++ { // magnitudes 1e-40 (subnormal) … 1e38
			for _, m := range []float64{1, 2.5, 7.3} {
				g = append(g, float32(m*math.Pow(10, float64(e))), float32(-m*math.Pow(10, float64(e))))
			}
		}
		g = append(g, 0, float32(math.Copysign(0, -1)), 87, -87, 88.7, -88.7, 89, -89, 100, -100, 103.9, -104, 1e4, -1e4,
			float32(math.Inf(1)), math.MaxFloat32, -math.MaxFloat32, float32(math.SmallestNonzeroFloat32))
		for _, n := range []int{0, 1, 7, 8, 255, 256, 257, 513, len(g)} {
			gate := append([]float32(nil), g[:n]...)
			up := make([]float32, n)
			for i := range up {
				up[i] = float32(r.NormFloat64())
				if i%5 == 0 {
					up[i] = 1
				}
			}
			SiLUMul(gate, up)
			for i := range gate {
				x := float64(g[i])
				want := x / (1 + math.Exp(-x)) * float64(up[i])
				if math.IsInf(x, 1) {
					want = math.Inf(1) * float64(up[i])
				}
				want = float64(float32(want)) // beyond the float32 range: ±Inf
				got := float64(gate[i])
				// A few ulp of the result (exp is ~2 ulp, then a division and two products),
				// plus the vectorised exp's flush to 0 below about -87.3 (e < 2^-125).
				tol := 8*u*math.Abs(want) + math.Abs(x*float64(up[i]))*0x1p-125 + 0x1p-147 // + subnormal rounding
				ok := math.Abs(got-want) <= tol || math.IsInf(want, 0) && got == want ||
					math.IsNaN(want) && math.IsNaN(got) // silu(-Inf) = -Inf·0, NaN as before
				if !ok {
					t.Fatalf("n=%d: silu(%v)·%v = %v, float64 %v", n, g[i], up[i], got, want)
				}
			}
		}
	})
}

func TestBF16ToFloats(t *testing.T) {
	withImpls(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(27, 28))
		for _, n := range []int{0, 1, 7, 8, 15, 16, 17, 63, 64, 65, 129, 1000} {
			src := make([]uint16, n)
			for i := range src {
				src[i] = uint16(r.Uint32())
			}
			dst := randSlice(r, n+1)
			last := dst[n]
			BF16ToFloats(dst, src)
			for i, b := range src {
				if got, want := math.Float32bits(dst[i]), uint32(b)<<16; got != want {
					t.Fatalf("n=%d: dst[%d] = %#x, want %#x", n, i, got, want)
				}
			}
			if math.Float32bits(dst[n]) != math.Float32bits(last) {
				t.Fatalf("n=%d: wrote past len(src)", n)
			}
		}
	})
}
