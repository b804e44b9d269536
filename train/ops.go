package train

import (
	"math"

	"github.com/kvfoot/kvfoot/compute"
	"github.com/kvfoot/kvfoot/tensor"
)

// The ops of the forward pass, each followed by its backward. Forward ops write their
// output; backward ops add the input gradient into dx (so that residual branches sum)
// and, when g is not nil, add the parameter gradients into g.

// embedForward sets x[i] = e[ids[i]] (rows of h values).
func embedForward(x, e []float32, ids []int, h int) {
	for i, id := range ids {
		copy(x[i*h:(i+1)*h], e[id*h:(id+1)*h])
	}
}

// embedBackward adds dx[i] into the embedding gradient's row ids[i].
func embedBackward(de, dx []float32, ids []int, h int) {
	for i, id := range ids {
		tensor.Axpy(1, dx[i*h:(i+1)*h], de[id*h:(id+1)*h])
	}
}

// rmsNormForward sets y = x / sqrt(mean(x²) + eps) ⊙ w for n rows (model's rmsNormRows).
func rmsNormForward(y, x, w []float32, eps float32, n int) {
	h := len(w)
	tensor.Parallel(n, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			tensor.RMSNorm(y[i*h:(i+1)*h], x[i*h:(i+1)*h], w, eps)
		}
	})
}

// rmsScale is 1/sqrt(mean(x²) + eps), computed as tensor.RMSNorm does.
func rmsScale(x []float32, eps float32) float32 {
	var ss float64
	for _, v := range x {
		ss += float64(v) * float64(v)
	}
	return float32(1 / math.Sqrt(ss/float64(len(x))+float64(eps)))
}

// rmsNormBackward adds to dx the gradient through y = x·r ⊙ w, r = 1/sqrt(mean(x²)+eps):
// dx = r·(w⊙dy) − r³/h · x · Σ(w⊙dy⊙x); and dw += Σ_rows dy ⊙ x·r when dw is not nil.
func rmsNormBackward(dx, dw, dy, x, w []float32, eps float32, n int) {
	h := len(w)
	tensor.Parallel(n, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			xr, dyr, dxr := x[i*h:(i+1)*h], dy[i*h:(i+1)*h], dx[i*h:(i+1)*h]
			r := rmsScale(xr, eps)
			var s float64
			for j, v := range xr {
				s += float64(w[j] * dyr[j] * v)
			}
			c := float32(s) * r * r * r / float32(h)
			for j, v := range xr {
				dxr[j] += r*w[j]*dyr[j] - c*v
			}
		}
	})
	if dw == nil {
		return
	}
	for i := 0; i < n; i++ {
		xr, dyr := x[i*h:(i+1)*h], dy[i*h:(i+1)*h]
		r := rmsScale(xr, eps)
		for j, v := range xr {
			dw[j] += dyr[j] * v * r
		}
	}
}

// linearForward sets y[n, out] = x[n, in] · Wᵀ + b.
func linearForward(y, x []float32, n int, l *Linear) {
	w := l.mat()
	tensor.MatMulT(y, x, n, &w)
	if l.B == nil {
		return
	}
	tensor.Parallel(n, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			tensor.Axpy(1, l.B, y[i*l.Out:(i+1)*l.Out])
		}
	})
}

// linearBackward adds dy · W into dx (tmp holds n·in values) and, when g is not nil,
// dyᵀ · x into g.W (tmpW holds out·in values) and Σ_rows dy into g.B.
func linearBackward(dx, dy, x []float32, n int, l, g *Linear, tmp, tmpW []float32) {
	tmp = tmp[:n*l.In]
	tensor.MatMul(tmp, dy, l.W, n, l.In, l.Out)
	tensor.Axpy(1, tmp, dx[:n*l.In])
	if g == nil {
		return
	}
	tmpW = tmpW[:l.Out*l.In]
	tensor.MatMulTN(tmpW, dy, x, l.Out, l.In, n)
	tensor.Axpy(1, tmpW, g.W)
	if g.B != nil {
		for i := 0; i < n; i++ {
			tensor.Axpy(1, dy[i*l.Out:(i+1)*l.Out], g.B)
		}
	}
}

// swigluForward sets act = silu(gate) ⊙ up, keeping gate and up.
func swigluForward(act, gate, up []float32) {
	tensor.Parallel(len(act)/1024+1, func(lo, hi int) {
		a, b := lo*1024, min(hi*1024, len(act))
		if a >= b {
			return
		}
		copy(act[a:b], gate[a:b])
		tensor.SiLUMul(act[a:b], up[a:b])
	})
}

// swigluBackward sets dgate and dup from dact: with σ = sigmoid(g), silu(g) = g·σ and
// silu'(g) = σ·(1 + g·(1 − σ)).
func swigluBackward(dgate, dup, dact, gate, up []float32) {
	tensor.Parallel(len(dact)/1024+1, func(lo, hi int) {
		for i := lo * 1024; i < min(hi*1024, len(dact)); i++ {
			g := gate[i]
			s := sigmoid32(g)
			dup[i] = dact[i] * g * s
			dgate[i] = dact[i] * up[i] * s * (1 + g*(1-s))
		}
	})
}

func sigmoid32(x float32) float32 {
	if x >= 0 {
		return 1 / (1 + float32(math.Exp(float64(-x))))
	}
	e := float32(math.Exp(float64(x)))
	return e / (1 + e)
}

// gegluForward sets act = gelu_tanh(gate) ⊙ up (Gemma), keeping gate and up.
func gegluForward(act, gate, up []float32) {
	tensor.Parallel(len(act)/1024+1, func(lo, hi int) {
		for i := lo * 1024; i < min(hi*1024, len(act)); i++ {
			act[i] = compute.GELUTanh(gate[i]) * up[i]
		}
	})
}

// gegluBackward sets dgate and dup from dact: with u = c·(g + 0.044715·g³), c = √(2/π),
// gelu(g) = ½·g·(1 + tanh u) and gelu'(g) = ½·(1 + tanh u) + ½·g·(1 − tanh²u)·c·(1 + 3·0.044715·g²).
func gegluBackward(dgate, dup, dact, gate, up []float32) {
	c := math.Sqrt(2 / math.Pi)
	tensor.Parallel(len(dact)/1024+1, func(lo, hi int) {
		for i := lo * 1024; i < min(hi*1024, len(dact)); i++ {
			g := float64(gate[i])
			th := math.Tanh(c * (g + 0.044715*g*g*g))
			dgelu := 0.5*(1+th) + 0.5*g*(1-th*th)*c*(1+3*0.044715*g*g)
			dup[i] = dact[i] * compute.GELUTanh(gate[i])
			dgate[i] = float32(float64(dact[i]) * float64(up[i]) * dgelu)
		}
	})
}
