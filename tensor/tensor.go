// Package tensor provides the dense float32 kernels every other package runs on:
// matrix products against weight matrices (float32 or bf16), dot and axpy for
// attention, RMSNorm, softmax, SiLU, and a worker pool sized to the cores.
package tensor

import (
	"fmt"
	"math"
)

// Mat is a row-major weight matrix of Rows x Cols, stored as float32 or as bf16
// (exactly one of F32 and BF16 is set). A Hugging Face Linear weight [out, in] is a
// Mat with Rows = out, Cols = in.
type Mat struct {
	Rows, Cols int
	F32        []float32
	BF16       []uint16
}

// MatMulT computes dst[m, w.Rows] = x[m, w.Cols] · wᵀ: a Linear layer without bias,
// for m tokens at once (m = 1 is a matrix-vector product). It panics if a slice is
// shorter than the shapes say, as copy-like kernels do on a caller's bug.
func MatMulT(dst, x []float32, m int, w *Mat) {
	n, k := w.Rows, w.Cols
	if len(x) < m*k || len(dst) < m*n {
		panic(fmt.Sprintf("tensor.MatMulT: m=%d, w %dx%d needs len(x) ≥ %d, len(dst) ≥ %d; have %d, %d",
			m, n, k, m*k, m*n, len(x), len(dst)))
	}
	if n*k > 0 && ((w.F32 == nil) == (w.BF16 == nil) || len(w.F32)+len(w.BF16) < n*k) {
		panic(fmt.Sprintf("tensor.MatMulT: w %dx%d needs exactly one of F32, BF16 with ≥ %d values; have %d, %d",
			n, k, n*k, len(w.F32), len(w.BF16)))
	}
	matMulT(active, threads, dst, x, m, w)
}

func matMulT(im *impl, t int, dst, x []float32, m int, w *Mat) {
	n, k := w.Rows, w.Cols
	if m == 1 {
		// Decode: memory-bound, so stream each weight row once through the
		// multi-row kernel; split rows in blocks of 4 to keep the 4-row kernel fed.
		x := x[:k]
		parallelFor(t, (n+3)/4, func(lo, hi int) {
			r0, r1 := lo*4, min(hi*4, n)
			if w.F32 != nil {
				im.matvec(dst[r0:r1], w.F32[r0*k:r1*k], k, x)
			} else {
				im.matvecBF16(dst[r0:r1], w.BF16[r0*k:r1*k], k, x)
			}
		})
		return
	}
	gemm(im, t, dst, n, m, n, k,
		operand{f32: x, rs: k, cs: 1},
		operand{f32: w.F32, bf16: w.BF16, rs: k, cs: 1})
}

// MatMul computes dst[m, n] = a[m, k] · b[k, n], all row-major (in training: the
// gradient of a Linear layer's input, dY · W).
func MatMul(dst, a, b []float32, m, n, k int) {
	checkMatMul("MatMul", dst, a, b, m, n, k)
	gemm(active, threads, dst, n, m, n, k,
		operand{f32: a, rs: k, cs: 1},
		operand{f32: b, rs: 1, cs: n})
}

// MatMulTN computes dst[m, n] = aᵀ · b with a [k, m] and b [k, n] row-major (in
// training: the gradient of a Linear layer's weight, dYᵀ · X).
func MatMulTN(dst, a, b []float32, m, n, k int) {
	checkMatMul("MatMulTN", dst, a, b, m, n, k)
	gemm(active, threads, dst, n, m, n, k,
		operand{f32: a, rs: 1, cs: m},
		operand{f32: b, rs: 1, cs: n})
}

func checkMatMul(name string, dst, a, b []float32, m, n, k int) {
	if m < 0 || n < 0 || k < 0 || len(a) < m*k || len(b) < k*n || len(dst) < m*n {
		panic(fmt.Sprintf("tensor.%s: m=%d n=%d k=%d needs len(a) ≥ %d, len(b) ≥ %d, len(dst) ≥ %d; have %d, %d, %d",
			name, m, n, k, m*k, k*n, m*n, len(a), len(b), len(dst)))
	}
}

// Dot returns Σ a[i]·b[i] over len(a) elements.
func Dot(a, b []float32) float32 { return active.dot(a, b) }

// Axpy computes y += alpha·x over len(x) elements.
func Axpy(alpha float32, x, y []float32) { active.axpy(alpha, x, y) }

// RMSNorm writes x / sqrt(mean(x²) + eps) · weight into dst (dst may alias x).
func RMSNorm(dst, x, weight []float32, eps float32) {
	var ss float64
	for _, v := range x {
		ss += float64(v) * float64(v)
	}
	scale := float32(1 / math.Sqrt(ss/float64(len(x))+float64(eps)))
	for i, v := range x {
		dst[i] = v * scale * weight[i]
	}
}

// Softmax replaces x by softmax(x), computed stably.
func Softmax(x []float32) {
	if len(x) == 0 {
		return
	}
	mx := x[0]
	for _, v := range x[1:] {
		if v > mx {
			mx = v
		}
	}
	inv := 1 / active.expSum(x, mx)
	for i := range x {
		x[i] *= inv
	}
}

// SiLUMul computes gate[i] = silu(gate[i]) · up[i], the SwiGLU activation.
//
// silu(g) = g·σ(g) with σ from e = exp(-|g|) ≤ 1 (the vectorised exp of the active
// kernel set, in blocks on the stack): σ(g) = 1/(1+e) for g ≥ 0, e/(1+e) below, so
// nothing overflows whatever g.
func SiLUMul(gate, up []float32) {
	up = up[:len(gate)]
	var e [256]float32
	for b := 0; b < len(gate); b += len(e) {
		g := gate[b:min(b+len(e), len(gate))]
		u := up[b : b+len(g)]
		t := e[:len(g)]
		for i, v := range g {
			t[i] = -abs32(v)
		}
		active.expSum(t, 0)
		for i, v := range g {
			num := t[i]
			if v >= 0 {
				num = 1
			}
			g[i] = v * num / (1 + t[i]) * u[i]
		}
	}
}

func abs32(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ (1 << 31)) }

// BF16ToFloat widens one bf16 value.
func BF16ToFloat(b uint16) float32 { return math.Float32frombits(uint32(b) << 16) }

// BF16ToFloats widens src into dst[:len(src)].
func BF16ToFloats(dst []float32, src []uint16) { active.bf16ToF32(dst, src) }

// FloatToBF16 rounds to the nearest bf16, ties to even; NaN stays NaN.
func FloatToBF16(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 {
		return uint16(u>>16) | 0x40
	}
	return uint16((u + 0x7fff + (u>>16)&1) >> 16)
}
