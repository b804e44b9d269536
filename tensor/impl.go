package tensor

import (
	"math"
	"unsafe"
)

// impl is one complete set of inner kernels. Every build has the portable one; amd64
// builds add AVX-512 and AVX2+FMA sets when the CPU has them (kern_amd64.go). The
// public functions call the active set; tests run every set.
type impl struct {
	name string
	// mr x nr is the GEMM micro-tile; kernel computes one tile from packed panels:
	// c[i*ldc+j] = (add ? c[i*ldc+j] : 0) + Σ_p a[p*mr+i]·b[p*nr+j].
	mr, nr int
	kernel func(k int, a, b, c *float32, ldc int, add bool)
	// dot and axpy are Dot and Axpy on equal-length slices.
	dot  func(a, b []float32) float32
	axpy func(alpha float32, x, y []float32)
	// matvec and matvecBF16 set dst[r] = Σ_c w[r*k+c]·x[c] for r < len(dst);
	// matvecBF16 also takes xd, x as prepBF16 rearranged it for its kernel.
	matvec     func(dst, w []float32, k int, x []float32)
	matvecBF16 func(dst []float32, w []uint16, k int, x, xd []float32)
	prepBF16   func(xd, x []float32)
	// expSum sets x[i] = exp(x[i] - mx), given x[i] ≤ mx, and returns Σ x[i].
	expSum func(x []float32, mx float32) float32
	// siluMul sets gate[i] = silu(gate[i])·up[i] for len(gate) == len(up) (SiLUMul).
	siluMul func(gate, up []float32)
	// sum returns Σ a[i]; only the read-bandwidth benchmark uses it.
	sum func(a []float32) float32
	// axpyRows sets y[c] += Σ_j alpha[j]·x[j*len(y)+c] for c < len(y), j < len(alpha).
	axpyRows func(y, alpha, x []float32)
	// bf16ToF32 sets dst[i] = BF16ToFloat(src[i]) for i < len(src).
	bf16ToF32 func(dst []float32, src []uint16)
	// the kernels of codes.go, on checked arguments
	dotRowsU8, dotRowsU4         func(dst, y []float32, m int, codes []uint8, stride int, sc, mn []float32)
	axpyDequantU8, axpyDequantU4 func(y, p []float32, m int, codes []uint8, stride int, sc, mn []float32, g int)
	// packT, if set, packs rows 16 (half of a 32-row weight panel) or 12 (an
	// activation panel) rows of a k-contiguous GEMM operand: dst[p*rows+i] =
	// value(base + i*o.rs + p) for i < rows, p < kc (a positive multiple of 16), where
	// rows 16 is stored with a row stride of 32.
	packT func(dst []float32, o operand, base, kc, rows int)
}

// impls lists the kernel sets this CPU can run, fastest first; active is impls[0].
var (
	impls  = platformImpls()
	active = impls[0]
)

var goImpl = &impl{
	name: "go", mr: 4, nr: 8, kernel: kernelGo,
	dot: dotGo, axpy: axpyGo, matvec: matvecGo, matvecBF16: matvecBF16Go, prepBF16: prepBF16Go, expSum: expSumGo, siluMul: siluMulGo, sum: sumGo,
	axpyRows: axpyRowsGo, bf16ToF32: bf16ToF32Go,
	dotRowsU8: dotRowsU8Go, dotRowsU4: dotRowsU4Go, axpyDequantU8: axpyDequantU8Go, axpyDequantU4: axpyDequantU4Go,
}

func bf16ToF32Go(dst []float32, src []uint16) {
	dst = dst[:len(src)]
	for i, b := range src {
		dst[i] = BF16ToFloat(b)
	}
}

func dotGo(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

func axpyGo(alpha float32, x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += alpha * v
	}
}

func axpyRowsGo(y, alpha, x []float32) {
	k := len(y)
	x = x[:len(alpha)*k]
	for j, a := range alpha {
		axpyGo(a, x[j*k:(j+1)*k], y)
	}
}

func sumGo(a []float32) float32 {
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i]
		s1 += a[i+1]
		s2 += a[i+2]
		s3 += a[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i]
	}
	return (s0 + s1) + (s2 + s3)
}

func matvecGo(dst, w []float32, k int, x []float32) {
	for r := range dst {
		dst[r] = dotGo(x[:k], w[r*k:(r+1)*k])
	}
}

func prepBF16Go(_, _ []float32) {}

func matvecBF16Go(dst []float32, w []uint16, k int, x, _ []float32) {
	x = x[:k]
	for r := range dst {
		row := w[r*k : (r+1)*k]
		var s0, s1 float32
		c := 0
		for ; c+2 <= k; c += 2 {
			s0 += x[c] * BF16ToFloat(row[c])
			s1 += x[c+1] * BF16ToFloat(row[c+1])
		}
		if c < k {
			s0 += x[c] * BF16ToFloat(row[c])
		}
		dst[r] = s0 + s1
	}
}

// kernelGo is the portable 4x8 micro-kernel.
func kernelGo(k int, a, b, c *float32, ldc int, add bool) {
	const mr, nr = 4, 8
	as := unsafe.Slice(a, k*mr)
	bs := unsafe.Slice(b, k*nr)
	var acc [mr][nr]float32
	for p := 0; p < k; p++ {
		ap := as[p*mr : p*mr+mr]
		bp := bs[p*nr : p*nr+nr]
		for i, av := range ap {
			for j, bv := range bp {
				acc[i][j] += av * bv
			}
		}
	}
	cs := unsafe.Slice(c, (mr-1)*ldc+nr)
	for i := range acc {
		row := cs[i*ldc : i*ldc+nr]
		for j, v := range acc[i] {
			if add {
				row[j] += v
			} else {
				row[j] = v
			}
		}
	}
}

func siluMulGo(gate, up []float32) {
	for i, v := range gate {
		e := float32(math.Exp(float64(-abs32(v))))
		num := e
		if v >= 0 {
			num = 1
		}
		gate[i] = v * num / (1 + e) * up[i]
	}
}

func expSumGo(x []float32, mx float32) float32 {
	var sum float32
	for i, v := range x {
		e := float32(math.Exp(float64(v - mx)))
		x[i] = e
		sum += e
	}
	return sum
}
