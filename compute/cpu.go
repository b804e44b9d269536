package compute

import (
	"math"

	"github.com/kvfoot/kvfoot/tensor"
)

// CPU is the host backend: tensor's kernels on its worker pool.
var CPU Backend = cpu{}

type cpu struct{}

func (cpu) Name() string                      { return "cpu" }
func (cpu) Alloc(n int) Buf                   { return Host(make([]float32, n)) }
func (cpu) Host(b Buf, _ []float32) []float32 { return b.H }

func (cpu) Embed(dst Buf, e *tensor.Mat, ids []int) {
	d, h := dst.H, e.Cols
	for i, id := range ids {
		e.Row(d[i*h:(i+1)*h], id)
	}
}

func (cpu) RMSNorm(dst, x Buf, w []float32, eps float32, rows int) {
	tensor.RMSNormRows(dst.H, x.H, w, eps, rows)
}

func (cpu) Linear(x Buf, rows int, outs ...Out) {
	var ps [4]tensor.Proj
	p := ps[:0]
	for _, o := range outs {
		p = append(p, tensor.Proj{Dst: o.Dst.H, W: o.W})
	}
	tensor.MatMulTs(x.H, rows, p...)
	for _, o := range outs {
		if o.Bias == nil {
			continue
		}
		d, n := o.Dst.H, o.W.Rows
		for i := range rows {
			tensor.Axpy(1, o.Bias, d[i*n:(i+1)*n])
		}
	}
}

func (cpu) RoPETables(cos, sin Buf, invFreq []float32, pos, rows int) {
	tensor.RoPETables(cos.H, sin.H, invFreq, pos, rows)
}

func (cpu) RoPE(x Buf, rows, heads int, cos, sin Buf) {
	tensor.RotateHalf(x.H, rows, heads, cos.H, sin.H, false)
}

func (cpu) SwiGLU(gate, up Buf) { tensor.SiLUMul(gate.H, up.H) }

func (cpu) Add(dst, x Buf) { tensor.Axpy(1, x.H, dst.H) }

// elementwise runs fn over [0, n) in blocks of 4096 on tensor's pool: the tanh of
// GeGLU and of the logits' soft cap cost enough to share out.
func elementwise(n int, fn func(lo, hi int)) {
	const block = 4096
	tensor.Parallel((n+block-1)/block, func(a, b int) { fn(a*block, min(b*block, n)) })
}

func (cpu) GeGLU(gate, up Buf) {
	g, u := gate.H, up.H[:len(gate.H)]
	elementwise(len(g), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			g[i] = GELUTanh(g[i]) * u[i]
		}
	})
}

func (cpu) Scale(x Buf, s float32) {
	for i := range x.H {
		x.H[i] *= s
	}
}

func (cpu) SoftCap(x Buf, cap float32) {
	v := x.H
	elementwise(len(v), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			v[i] = SoftCap(v[i], cap)
		}
	})
}

// GELUTanh is GELU's tanh approximation, 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))),
// computed in float64 and rounded once.
func GELUTanh(x float32) float32 {
	v := float64(x)
	return float32(0.5 * v * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(v+0.044715*v*v*v))))
}

// SoftCap is cap·tanh(x/cap).
func SoftCap(x, cap float32) float32 {
	return float32(float64(cap) * math.Tanh(float64(x)/float64(cap)))
}
