package tensor

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// u is the unit roundoff of float32.
const u = 0x1p-24

// withImpls runs fn once per kernel set this CPU has (the portable one included)
// and per part count 1, 2 and 5 (more parts than this machine may have cores),
// restoring the defaults afterwards.
func withImpls(t *testing.T, fn func(t *testing.T)) {
	t.Helper()
	saved, savedThreads := active, threads
	defer func() { active, threads = saved, savedThreads }()
	for _, im := range impls {
		for _, th := range []int{1, 2, 5} {
			active, threads = im, th
			t.Run(fmt.Sprintf("%s/t%d", im.name, th), fn)
		}
	}
}

func randSlice(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64())
	}
	return s
}

// checkSum compares got with the float64 sum of products want whose absolute terms
// add up to abs. Any summation order of k float32 products (each rounded once, or
// fused) is within γ_k·abs ≈ k·u·abs of the exact sum; 2·(k+1)·u leaves room for
// the final rounding.
func checkSum(t *testing.T, what string, got float32, want, abs float64, k int) {
	t.Helper()
	tol := 2 * float64(k+1) * u * abs
	if d := math.Abs(float64(got) - want); !(d <= tol) {
		t.Fatalf("%s = %v, want %v (|diff| %.3g > tol %.3g)", what, got, want, d, tol)
	}
}

// shapes covers block multiples, ragged edges on every axis, k=1, tiny sizes, k
// across several kc blocks, m across several mc blocks and n across nc blocks.
var shapes = []struct{ m, n, k int }{
	{1, 1, 1}, {1, 3, 5}, {1, 4, 16}, {1, 7, 33}, {1, 13, 100}, {1, 64, 4096}, {1, 9, 1000},
	{2, 3, 4}, {3, 1, 1}, {12, 32, 256}, {13, 33, 257}, {6, 16, 8}, {7, 17, 9},
	{25, 65, 513}, {100, 70, 1}, {64, 64, 64}, {200, 40, 300}, {5, 2100, 20}, {37, 1, 70},
}

// TestMatMulT checks both routes (the matrix-vector kernel for few rows, the GEMM) on
// every shape and weight storage: float32, bf16, and F16 blocks (widened into panels
// for the GEMM), the F16 values including subnormals.
func TestMatMulT(t *testing.T) {
	defer func(s int) { smallM = s }(smallM)
	withImpls(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 2))
		for _, sh := range shapes {
			for _, store := range []string{"f32", "bf16", "f16"} {
				for _, small := range []int{64, 0} { // 64: every shape's m ≤ 64 takes the matrix-vector route
					smallM = small
					m, n, k := sh.m, sh.n, sh.k
					x := randSlice(r, m*k)
					wf := randSlice(r, n*k)
					w := &Mat{Rows: n, Cols: k}
					switch store {
					case "f32":
						w.F32 = wf
					case "bf16":
						w.BF16 = make([]uint16, n*k)
						for i, v := range wf {
							w.BF16[i] = FloatToBF16(v)
							wf[i] = BF16ToFloat(w.BF16[i]) // the exact values the kernel sees
						}
					case "f16":
						w.Block, w.Blocks = &BlockF16, make([]byte, 2*n*k)
						for i, v := range wf {
							h := FloatToF16(v)
							if i%7 == 3 {
								h = uint16(i%0x3ff+1) | uint16(i%2)<<15 // a subnormal, either sign
							}
							binary.LittleEndian.PutUint16(w.Blocks[2*i:], h)
							wf[i] = F16ToFloat(h)
						}
					}
					dst := make([]float32, m*n+1)
					dst[m*n] = 42 // sentinel: nothing past the output may be written
					MatMulT(dst, x, m, w)
					for i := 0; i < m; i++ {
						for j := 0; j < n; j++ {
							var want, abs float64
							for p := 0; p < k; p++ {
								v := float64(x[i*k+p]) * float64(wf[j*k+p])
								want += v
								abs += math.Abs(v)
							}
							checkSum(t, fmt.Sprintf("m%d n%d k%d %s smallM=%d dst[%d,%d]", m, n, k, store, smallM, i, j), dst[i*n+j], want, abs, k)
						}
					}
					if dst[m*n] != 42 {
						t.Fatalf("m%d n%d k%d: wrote past the output", m, n, k)
					}
				}
			}
		}
	})
}

func TestMatMulAndTN(t *testing.T) {
	withImpls(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(3, 4))
		for _, sh := range shapes {
			m, n, k := sh.m, sh.n, sh.k
			a := randSlice(r, m*k) // [m,k] for MatMul, [k,m] for MatMulTN
			b := randSlice(r, k*n)
			for _, tn := range []bool{false, true} {
				dst := randSlice(r, m*n) // stale contents must be overwritten
				ai := func(i, p int) float32 { return a[i*k+p] }
				name := "MatMul"
				if tn {
					MatMulTN(dst, a, b, m, n, k)
					ai = func(i, p int) float32 { return a[p*m+i] }
					name = "MatMulTN"
				} else {
					MatMul(dst, a, b, m, n, k)
				}
				for i := 0; i < m; i++ {
					for j := 0; j < n; j++ {
						var want, abs float64
						for p := 0; p < k; p++ {
							v := float64(ai(i, p)) * float64(b[p*n+j])
							want += v
							abs += math.Abs(v)
						}
						checkSum(t, fmt.Sprintf("%s m%d n%d k%d [%d,%d]", name, m, n, k, i, j), dst[i*n+j], want, abs, k)
					}
				}
			}
		}
	})
}

func TestMatMulZeroK(t *testing.T) {
	withImpls(t, func(t *testing.T) {
		dst := []float32{1, 2, 3, 4, 5, 6}
		MatMul(dst, nil, nil, 2, 3, 0)
		for i, v := range dst {
			if v != 0 {
				t.Fatalf("k=0: dst[%d] = %v, want 0 (an empty sum)", i, v)
			}
		}
	})
}

func TestDotAxpy(t *testing.T) {
	withImpls(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(5, 6))
		for _, n := range []int{0, 1, 3, 7, 8, 15, 16, 17, 31, 32, 63, 64, 65, 100, 128, 129, 1000} {
			a, b := randSlice(r, n), randSlice(r, n+3)
			var want, abs float64
			for i := range a {
				want += float64(a[i]) * float64(b[i])
				abs += math.Abs(float64(a[i]) * float64(b[i]))
			}
			checkSum(t, fmt.Sprintf("Dot n=%d", n), Dot(a, b), want, abs, n)

			alpha := float32(r.NormFloat64())
			y := append([]float32(nil), b...)
			Axpy(alpha, a, y)
			for i := range y {
				var ax float64 // alpha·x[i]; y past len(x) must stay as it was
				if i < n {
					ax = float64(alpha) * float64(a[i])
				}
				want := float64(b[i]) + ax
				// One product and one sum: at most two roundings (one if fused).
				tol := 2 * u * (math.Abs(float64(b[i])) + math.Abs(ax))
				if d := math.Abs(float64(y[i]) - want); d > tol {
					t.Fatalf("Axpy n=%d: y[%d] = %v, want %v (tol %.3g)", n, i, y[i], want, tol)
				}
			}
		}
	})
}

func TestSum(t *testing.T) {
	withImpls(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(7, 8))
		for _, n := range []int{0, 1, 63, 64, 65, 1000, 4096} {
			a := randSlice(r, n)
			var want, abs float64
			for _, v := range a {
				want += float64(v)
				abs += math.Abs(float64(v))
			}
			checkSum(t, fmt.Sprintf("sum n=%d", n), active.sum(a), want, abs, n)
		}
	})
}

func TestFloatToBF16(t *testing.T) {
	for _, c := range []struct {
		in   uint32
		want uint16
		why  string
	}{
		{0x3f800000, 0x3f80, "1.0 is exact"},
		{0x3f808000, 0x3f80, "tie rounds to even (down)"},
		{0x3f818000, 0x3f82, "tie rounds to even (up)"},
		{0x3f808001, 0x3f81, "above the tie rounds up"},
		{0x3f807fff, 0x3f80, "below the tie rounds down"},
		{0xbf808001, 0xbf81, "negative rounds by magnitude"},
		{0x7f800000, 0x7f80, "+Inf"},
		{0xff800000, 0xff80, "-Inf"},
		{0x7f7fffff, 0x7f80, "max float32 rounds up to +Inf"},
		{0x7f7f7fff, 0x7f7f, "just below the overflow tie stays finite"},
		{0x00000000, 0x0000, "+0"},
		{0x80000000, 0x8000, "-0"},
		{0x00000001, 0x0000, "smallest subnormal rounds to 0"},
		{0x00008000, 0x0000, "subnormal tie to even (0)"},
		{0x00018000, 0x0002, "subnormal tie to even (up)"},
		{0x0000ffff, 0x0001, "subnormal rounds up"},
		{0x007fffff, 0x0080, "largest subnormal rounds to the smallest normal"},
	} {
		if got := FloatToBF16(math.Float32frombits(c.in)); got != c.want {
			t.Errorf("FloatToBF16(%#08x) = %#04x, want %#04x (%s)", c.in, got, c.want, c.why)
		}
	}
	for _, in := range []uint32{0x7fc00000, 0x7f800001, 0xffc00001, 0x7f80ffff, 0x7fffffff} {
		got := FloatToBF16(math.Float32frombits(in))
		if g := BF16ToFloat(got); !math.IsNaN(float64(g)) || got>>15 != uint16(in>>31) {
			t.Errorf("FloatToBF16(NaN %#08x) = %#04x, want a NaN of the same sign", in, got)
		}
	}
}

// TestFloatToBF16Nearest checks random inputs against the definition: the nearer of
// the two bf16 neighbours (truncation and the next value up in magnitude), ties to
// the even one; past the largest finite value the next one up is Inf, standing for 2^128.
func TestFloatToBF16Nearest(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	val := func(b uint16) float64 {
		if b&0x7fff == 0x7f80 {
			return math.Copysign(0x1p128, float64(BF16ToFloat(b)))
		}
		return float64(BF16ToFloat(b))
	}
	for range 1 << 20 {
		in := r.Uint32()
		f := math.Float32frombits(in)
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			continue
		}
		lo := uint16(in >> 16)
		hi := lo + 1
		dl, dh := math.Abs(float64(f)-val(lo)), math.Abs(float64(f)-val(hi))
		want := lo
		if dh < dl || (dh == dl && lo&1 == 1) {
			want = hi
		}
		if got := FloatToBF16(f); got != want {
			t.Fatalf("FloatToBF16(%#08x) = %#04x, want %#04x", in, got, want)
		}
	}
	// Widening then rounding is the identity on every non-NaN bf16 value.
	for b := range 1 << 16 {
		if f := BF16ToFloat(uint16(b)); !math.IsNaN(float64(f)) && FloatToBF16(f) != uint16(b) {
			t.Fatalf("FloatToBF16(BF16ToFloat(%#04x)) = %#04x", b, FloatToBF16(f))
		}
	}
}

func TestSoftmax(t *testing.T) {
	withImpls(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(11, 12))
		inf := float32(math.Inf(1))
		cases := [][]float32{{0}, {1, 2}, {-inf, 0, -inf, 3}, {100, -100, 50, 0, 1e-3, -87.3, -inf, -90, 88, 89, 7, 8, 12.6, 12.7, 12.8, 13}}
		for _, n := range []int{7, 8, 9, 64, 1000} {
			x := randSlice(r, n)
			for i := range x {
				x[i] *= 30 // spread over most of exp's range, below and above the clamp
			}
			cases = append(cases, x)
		}
		for _, x := range cases {
			mx := math.Inf(-1)
			for _, v := range x {
				mx = math.Max(mx, float64(v))
			}
			want := make([]float64, len(x))
			var s float64
			for i, v := range x {
				want[i] = math.Exp(float64(v) - mx)
				s += want[i]
			}
			got := append([]float32(nil), x...)
			Softmax(got)
			n := float64(len(x))
			for i := range x {
				w := want[i] / s
				// A few ulps for exp and the division, n·u for the sum, |t|·u for
				// rounding t = x - max before exp; values that underflow float32
				// (exp(t) < 2^-126 ≈ 1.2e-38) may flush to 0.
				tol := 0.0 // exp(-Inf) is exactly 0
				if w != 0 {
					tol = (8+2*n+math.Abs(float64(x[i])-mx))*u*w + 0x1p-126
				}
				if d := math.Abs(float64(got[i]) - w); !(d <= tol) {
					t.Fatalf("Softmax(n=%d)[%d] (x=%v) = %v, want %v (tol %.3g)", len(x), i, x[i], got[i], w, tol)
				}
			}
		}
		nan := []float32{1, float32(math.NaN()), 2, 3, 4, 5, 6, 7, 8}
		Softmax(nan)
		if !math.IsNaN(float64(nan[1])) {
			t.Fatalf("Softmax with a NaN input gave %v at the NaN, want NaN", nan[1])
		}
	})
}
