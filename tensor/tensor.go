// Package tensor provides the dense float32 kernels every other package runs on:
// matrix products against weight matrices (float32 or bf16), dot and axpy for
// attention, RMSNorm, softmax, SiLU, and a worker pool sized to the cores.
package tensor

import "math"

// Mat is a row-major weight matrix of Rows x Cols, stored as float32 or as bf16
// (exactly one of F32 and BF16 is set). A Hugging Face Linear weight [out, in] is a
// Mat with Rows = out, Cols = in.
type Mat struct {
	Rows, Cols int
	F32        []float32
	BF16       []uint16
}

// MatMulT computes dst[m, w.Rows] = x[m, w.Cols] · wᵀ: a Linear layer without bias,
// for m tokens at once (m = 1 is a matrix-vector product).
func MatMulT(dst, x []float32, m int, w *Mat) {
	n, k := w.Rows, w.Cols
	if len(x) < m*k || len(dst) < m*n {
		panic("tensor.MatMulT: short buffer")
	}
	Parallel(n, func(lo, hi int) {
		for j := lo; j < hi; j++ {
			if w.F32 != nil {
				row := w.F32[j*k : (j+1)*k]
				for i := 0; i < m; i++ {
					dst[i*n+j] = Dot(x[i*k:(i+1)*k], row)
				}
			} else {
				row := w.BF16[j*k : (j+1)*k]
				for i := 0; i < m; i++ {
					xi := x[i*k : (i+1)*k]
					var s float32
					for c, b := range row {
						s += xi[c] * BF16ToFloat(b)
					}
					dst[i*n+j] = s
				}
			}
		}
	})
}

// Dot returns Σ a[i]·b[i] over len(a) elements.
func Dot(a, b []float32) float32 {
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

// Axpy computes y += alpha·x over len(x) elements.
func Axpy(alpha float32, x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += alpha * v
	}
}

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
	var sum float32
	for i, v := range x {
		e := float32(math.Exp(float64(v - mx)))
		x[i] = e
		sum += e
	}
	inv := 1 / sum
	for i := range x {
		x[i] *= inv
	}
}

// SiLUMul computes gate[i] = silu(gate[i]) · up[i], the SwiGLU activation.
func SiLUMul(gate, up []float32) {
	up = up[:len(gate)]
	for i, g := range gate {
		gate[i] = g / (1 + float32(math.Exp(float64(-g)))) * up[i]
	}
}

// BF16ToFloat widens one bf16 value.
func BF16ToFloat(b uint16) float32 { return math.Float32frombits(uint32(b) << 16) }

// FloatToBF16 rounds to the nearest bf16, ties to even; NaN stays NaN.
func FloatToBF16(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 {
		return uint16(u>>16) | 0x40
	}
	return uint16((u + 0x7fff + (u>>16)&1) >> 16)
}
