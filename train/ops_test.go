package train

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kvfoot/kvfoot/tensor"
)

// Every op's backward against central finite differences of an independent float64
// implementation of its forward: for a random upstream gradient dy, the directional
// loss L(x) = Σ dy ⊙ f(x) has dL/dx = the op's input gradient.

func randVec(r *rand.Rand, n int, std float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64() * std)
	}
	return v
}

func f64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// checkFD compares analytic[i] with the central difference of loss at x[i] for the
// indices idx (all when nil), with tolerance atol + rtol·|fd|.
func checkFD(t *testing.T, name string, loss func([]float64) float64, x []float64, analytic []float32, idx []int, atol, rtol float64) {
	t.Helper()
	if idx == nil {
		idx = make([]int, len(x))
		for i := range idx {
			idx[i] = i
		}
	}
	const eps = 1e-5
	worst := 0.0
	for _, i := range idx {
		x0 := x[i]
		x[i] = x0 + eps
		lp := loss(x)
		x[i] = x0 - eps
		lm := loss(x)
		x[i] = x0
		fd := (lp - lm) / (2 * eps)
		d := math.Abs(fd - float64(analytic[i]))
		if d > atol+rtol*math.Abs(fd) {
			t.Fatalf("%s[%d]: analytic %.8g, finite difference %.8g", name, i, analytic[i], fd)
		}
		worst = max(worst, d)
	}
	t.Logf("%s: %d coordinates, max |analytic − fd| %.2g", name, len(idx), worst)
}

func dot64(a []float64, b []float32) float64 {
	var s float64
	for i := range a {
		s += a[i] * float64(b[i])
	}
	return s
}

func TestRMSNormBackward(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	n, h := 3, 16
	const eps = 1e-5
	x, w, dy := randVec(r, n*h, 1), randVec(r, h, 1), randVec(r, n*h, 1)
	ref := func(x, w []float64) []float64 {
		y := make([]float64, len(x))
		for i := 0; i < n; i++ {
			var ss float64
			for _, v := range x[i*h : (i+1)*h] {
				ss += v * v
			}
			s := 1 / math.Sqrt(ss/float64(h)+eps)
			for j := 0; j < h; j++ {
				y[i*h+j] = x[i*h+j] * s * w[j]
			}
		}
		return y
	}
	y := make([]float32, n*h)
	rmsNormForward(y, x, w, eps, n)
	want := ref(f64(x), f64(w))
	for i := range y {
		if math.Abs(float64(y[i])-want[i]) > 1e-5 {
			t.Fatalf("forward [%d] = %v, want %v", i, y[i], want[i])
		}
	}
	dx, dw := make([]float32, n*h), make([]float32, h)
	rmsNormBackward(dx, dw, dy, x, w, eps, n)
	xs, ws := f64(x), f64(w)
	checkFD(t, "dx", func(v []float64) float64 { return dot64(ref(v, ws), dy) }, xs, dx, nil, 1e-5, 1e-4)
	checkFD(t, "dw", func(v []float64) float64 { return dot64(ref(xs, v), dy) }, ws, dw, nil, 1e-5, 1e-4)
}

func TestLinearBackward(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	n, in, out := 5, 12, 7
	x, dy := randVec(r, n*in, 1), randVec(r, n*out, 1)
	l := Linear{W: randVec(r, out*in, 1), B: randVec(r, out, 1), Out: out, In: in}
	ref := func(x, w, b []float64) []float64 {
		y := make([]float64, n*out)
		for i := 0; i < n; i++ {
			for o := 0; o < out; o++ {
				s := b[o]
				for p := 0; p < in; p++ {
					s += x[i*in+p] * w[o*in+p]
				}
				y[i*out+o] = s
			}
		}
		return y
	}
	y := make([]float32, n*out)
	linearForward(y, x, n, &l)
	xs, ws, bs := f64(x), f64(l.W), f64(l.B)
	for i, v := range ref(xs, ws, bs) {
		if math.Abs(float64(y[i])-v) > 1e-4 {
			t.Fatalf("forward [%d] = %v, want %v", i, y[i], v)
		}
	}
	// dx accumulates: start from ones and subtract them after.
	dx := make([]float32, n*in)
	for i := range dx {
		dx[i] = 1
	}
	g := Linear{W: make([]float32, out*in), B: make([]float32, out), Out: out, In: in}
	linearBackward(dx, dy, x, n, &l, &g, make([]float32, n*in), make([]float32, out*in))
	for i := range dx {
		dx[i]--
	}
	checkFD(t, "dx", func(v []float64) float64 { return dot64(ref(v, ws, bs), dy) }, xs, dx, nil, 1e-4, 1e-4)
	checkFD(t, "dW", func(v []float64) float64 { return dot64(ref(xs, v, bs), dy) }, ws, g.W, nil, 1e-4, 1e-4)
	checkFD(t, "db", func(v []float64) float64 { return dot64(ref(xs, ws, v), dy) }, bs, g.B, nil, 1e-4, 1e-4)
}

func TestRopeBackward(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	n, heads, d := 7, 3, 8
	inv := []float32{1, 0.3, 0.1, 0.01}
	cos, sin := make([]float32, n*d/2), make([]float32, n*d/2)
	tensor.RoPETables(cos, sin, inv, 100, n)
	x, dy := randVec(r, n*heads*d, 1), randVec(r, n*heads*d, 1)
	ref := func(x []float64) []float64 {
		y := make([]float64, len(x))
		for i := 0; i < n; i++ {
			for h := 0; h < heads; h++ {
				o := (i*heads + h) * d
				for j := 0; j < d/2; j++ {
					th := float64(float32(100+i) * inv[j])
					a, b := x[o+j], x[o+j+d/2]
					y[o+j] = a*math.Cos(th) - b*math.Sin(th)
					y[o+j+d/2] = b*math.Cos(th) + a*math.Sin(th)
				}
			}
		}
		return y
	}
	y := append([]float32(nil), x...)
	tensor.RotateHalf(y, n, heads, cos, sin, false)
	for i, v := range ref(f64(x)) {
		if math.Abs(float64(y[i])-v) > 1e-5 {
			t.Fatalf("forward [%d] = %v, want %v", i, y[i], v)
		}
	}
	dx := append([]float32(nil), dy...)
	tensor.RotateHalf(dx, n, heads, cos, sin, true)
	checkFD(t, "dx", func(v []float64) float64 { return dot64(ref(v), dy) }, f64(x), dx, nil, 1e-5, 1e-4)
}

func TestSwiGLUBackward(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	n := 3000 // more than one block of the parallel split
	g, u, da := randVec(r, n, 3), randVec(r, n, 1), randVec(r, n, 1)
	ref := func(g, u []float64) []float64 {
		y := make([]float64, n)
		for i := range y {
			y[i] = g[i] / (1 + math.Exp(-g[i])) * u[i]
		}
		return y
	}
	act := make([]float32, n)
	swigluForward(act, g, u)
	gs, us := f64(g), f64(u)
	for i, v := range ref(gs, us) {
		if math.Abs(float64(act[i])-v) > 1e-5*(1+math.Abs(v)) {
			t.Fatalf("forward [%d] = %v, want %v", i, act[i], v)
		}
	}
	dg, du := make([]float32, n), make([]float32, n)
	swigluBackward(dg, du, da, g, u)
	idx := []int{0, 1, 2, 500, 1023, 1024, 2999}
	checkFD(t, "dgate", func(v []float64) float64 { return dot64(ref(v, us), da) }, gs, dg, idx, 1e-5, 1e-4)
	checkFD(t, "dup", func(v []float64) float64 { return dot64(ref(gs, v), da) }, us, du, idx, 1e-5, 1e-4)
}

func TestEmbedBackward(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	vocab, h := 6, 4
	ids := []int{3, 1, 3, 5}
	e, dy := randVec(r, vocab*h, 1), randVec(r, len(ids)*h, 1)
	x := make([]float32, len(ids)*h)
	embedForward(x, e, ids, h)
	ref := func(e []float64) []float64 {
		y := make([]float64, len(ids)*h)
		for i, id := range ids {
			copy(y[i*h:(i+1)*h], e[id*h:(id+1)*h])
		}
		return y
	}
	for i, v := range ref(f64(e)) {
		if float64(x[i]) != v {
			t.Fatalf("forward [%d] = %v, want %v", i, x[i], v)
		}
	}
	de := make([]float32, vocab*h)
	embedBackward(de, dy, ids, h)
	checkFD(t, "dE", func(v []float64) float64 { return dot64(ref(v), dy) }, f64(e), de, nil, 1e-6, 1e-6)
}

// refAttention is causal GQA attention of a band in float64, the naive way.
func refAttention(b band, q, k, v []float64, n int, s attnShape) []float64 {
	d, qd, kvd := s.headDim, s.heads*s.headDim, s.kvHeads*s.headDim
	out := make([]float64, n*qd)
	sc := make([]float64, n)
	for h := 0; h < s.heads; h++ {
		g := h / (s.heads / s.kvHeads)
		for i := 0; i < n; i++ {
			mx := math.Inf(-1)
			for j := 0; j <= i; j++ {
				sc[j] = math.Inf(-1)
				if b.full || j < b.sink || i-j < b.window {
					var dot float64
					for c := 0; c < d; c++ {
						dot += q[i*qd+h*d+c] * k[j*kvd+g*d+c]
					}
					sc[j] = dot / math.Sqrt(float64(d))
					mx = max(mx, sc[j])
				}
			}
			var sum float64
			for j := 0; j <= i; j++ {
				sc[j] = math.Exp(sc[j] - mx)
				sum += sc[j]
			}
			for j := 0; j <= i; j++ {
				for c := 0; c < d; c++ {
					out[i*qd+h*d+c] += sc[j] / sum * v[j*kvd+g*d+c]
				}
			}
		}
	}
	return out
}

func TestAttentionBackward(t *testing.T) {
	s := attnShape{heads: 4, kvHeads: 2, headDim: 8}
	n := 150 // three query blocks, the last one short
	qd, kvd := s.heads*s.headDim, s.kvHeads*s.headDim
	for _, b := range []band{{full: true}, {sink: 3, window: 40}, {sink: 0, window: 70}, {sink: 100, window: 5}, {sink: 2, window: 1}} {
		r := rand.New(rand.NewPCG(11, uint64(b.sink*1000+b.window)))
		q, k, v, dout := randVec(r, n*qd, 1), randVec(r, n*kvd, 1), randVec(r, n*kvd, 1), randVec(r, n*qd, 1)
		run := func(workers int) (out, dq, dk, dv []float32) {
			a := newAttention(n, s, workers)
			out, lse := make([]float32, n*qd), make([]float32, n*s.heads)
			a.forward(b, out, lse, q, k, v, n)
			dq, dk, dv = make([]float32, n*qd), make([]float32, n*kvd), make([]float32, n*kvd)
			a.backward(b, dq, dk, dv, dout, out, lse, make([]float32, n*s.heads), q, k, v, n)
			return
		}
		out, dq, dk, dv := run(3)
		qs, ks, vs := f64(q), f64(k), f64(v)
		for i, w := range refAttention(b, qs, ks, vs, n, s) {
			if math.Abs(float64(out[i])-w) > 1e-5 {
				t.Fatalf("band %+v: forward [%d] = %v, want %v", b, i, out[i], w)
			}
		}
		r2 := rand.New(rand.NewPCG(12, 13))
		pick := func(m int) []int {
			idx := []int{0, m - 1, m / 2}
			for range 12 {
				idx = append(idx, r2.IntN(m))
			}
			return idx
		}
		checkFD(t, "dq", func(x []float64) float64 { return dot64(refAttention(b, x, ks, vs, n, s), dout) }, qs, dq, pick(n*qd), 1e-4, 1e-3)
		checkFD(t, "dk", func(x []float64) float64 { return dot64(refAttention(b, qs, x, vs, n, s), dout) }, ks, dk, pick(n*kvd), 1e-4, 1e-3)
		checkFD(t, "dv", func(x []float64) float64 { return dot64(refAttention(b, qs, ks, x, n, s), dout) }, vs, dv, pick(n*kvd), 1e-4, 1e-3)
		// the split into units owns its rows: one worker gives the same bits
		out1, dq1, dk1, dv1 := run(1)
		for name, p := range map[string][2][]float32{"out": {out, out1}, "dq": {dq, dq1}, "dk": {dk, dk1}, "dv": {dv, dv1}} {
			for i := range p[0] {
				if p[0][i] != p[1][i] {
					t.Fatalf("band %+v: %s[%d] with 3 workers %v, with 1 %v", b, name, i, p[0][i], p[1][i])
				}
			}
		}
	}
}
