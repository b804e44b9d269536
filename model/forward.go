package model

import (
	"fmt"
	"math"

	"github.com/kvfoot/kvfoot/tensor"
)

// Runner runs the forward pass of one sequence at a time. It owns the scratch
// buffers, sized once for a chunk capacity, so that decoding allocates nothing.
type Runner struct {
	m     *Model
	chunk int // capacity of the buffers, in tokens

	x, xb     []float32 // residual stream and normed input, [chunk, hidden]
	q, att    []float32 // queries and attention output, [chunk, heads·head_dim]
	k, v      []float32 // [chunk, kv_heads·head_dim]
	gate, up  []float32 // [chunk, intermediate]
	cos, sin  []float32 // rotary tables of the chunk's positions, [chunk, head_dim/2]
	logits    []float32 // [vocab], or [n, vocab] when every position's logits are asked for
	decodeIDs [1]int
}

// NewRunner returns a Runner whose buffers hold chunks of up to chunk tokens; a
// larger chunk grows them once.
func NewRunner(m *Model, chunk int) *Runner {
	r := &Runner{m: m}
	r.grow(max(chunk, 1))
	r.logits = make([]float32, m.Config.Vocab)
	return r
}

func (r *Runner) grow(n int) {
	if n <= r.chunk {
		return
	}
	c := &r.m.Config
	qd, kvd := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	r.chunk = n
	r.x, r.xb = make([]float32, n*c.Hidden), make([]float32, n*c.Hidden)
	r.q, r.att = make([]float32, n*qd), make([]float32, n*qd)
	r.k, r.v = make([]float32, n*kvd), make([]float32, n*kvd)
	r.gate, r.up = make([]float32, n*c.Intermediate), make([]float32, n*c.Intermediate)
	r.cos, r.sin = make([]float32, n*c.HeadDim/2), make([]float32, n*c.HeadDim/2)
}

// Forward feeds a chunk of token ids at positions cache.Pos()… and returns the
// logits of the chunk's last token ([vocab]), or of every token ([len(ids), vocab])
// when all is set. The returned slice is reused by the next call.
func (r *Runner) Forward(cache Cache, ids []int, all bool) ([]float32, error) {
	m, c := r.m, &r.m.Config
	n := len(ids)
	if n == 0 {
		return nil, fmt.Errorf("model: empty chunk")
	}
	for i, id := range ids {
		if id < 0 || id >= c.Vocab {
			return nil, fmt.Errorf("model: token id %d at position %d is outside the vocabulary [0, %d)", id, cache.Pos()+i, c.Vocab)
		}
	}
	r.grow(n)
	H, qd, kvd, F := c.Hidden, c.Heads*c.HeadDim, c.KVHeads*c.HeadDim, c.Intermediate
	x, xb := r.x[:n*H], r.xb[:n*H]
	q, att, k, v := r.q[:n*qd], r.att[:n*qd], r.k[:n*kvd], r.v[:n*kvd]
	gate, up := r.gate[:n*F], r.up[:n*F]

	for i, id := range ids {
		embedRow(x[i*H:(i+1)*H], &m.Embed, id)
	}
	r.ropeTables(cache.Pos(), n)

	for l := range m.Layers {
		L := &m.Layers[l]
		// attention: x += O · attend(rope(Q·norm(x)), rope(K·norm(x)), V·norm(x))
		rmsNormRows(xb, x, L.AttnNorm, c.NormEps, n)
		linear(q, xb, n, &L.Q)
		linear(k, xb, n, &L.K)
		linear(v, xb, n, &L.V)
		r.rope(q, n, c.Heads)
		r.rope(k, n, c.KVHeads)
		cache.Attend(l, q, k, v, att, n)
		linear(xb, att, n, &L.O)
		tensor.Axpy(1, xb, x)
		// MLP: x += Down · (silu(Gate·norm(x)) ⊙ Up·norm(x))
		rmsNormRows(xb, x, L.MLPNorm, c.NormEps, n)
		linear(gate, xb, n, &L.Gate)
		linear(up, xb, n, &L.Up)
		tensor.SiLUMul(gate, up)
		linear(xb, gate, n, &L.Down)
		tensor.Axpy(1, xb, x)
	}
	cache.Commit(n)

	rows := x[(n-1)*H:]
	if all {
		rows = x
	}
	m2 := len(rows) / H
	rmsNormRows(xb[:m2*H], rows, m.Norm, c.NormEps, m2)
	if len(r.logits) < m2*c.Vocab {
		r.logits = make([]float32, m2*c.Vocab)
	}
	logits := r.logits[:m2*c.Vocab]
	tensor.MatMulT(logits, xb[:m2*H], m2, &m.Head)
	return logits, nil
}

// linear computes dst[n, out] = x[n, in] · Wᵀ + bias.
func linear(dst, x []float32, n int, l *Linear) {
	tensor.MatMulT(dst, x, n, &l.W)
	if l.Bias == nil {
		return
	}
	out := l.W.Rows
	for i := 0; i < n; i++ {
		tensor.Axpy(1, l.Bias, dst[i*out:(i+1)*out])
	}
}

func rmsNormRows(dst, x, weight []float32, eps float32, n int) {
	h := len(weight)
	for i := 0; i < n; i++ {
		tensor.RMSNorm(dst[i*h:(i+1)*h], x[i*h:(i+1)*h], weight, eps)
	}
}

func embedRow(dst []float32, e *tensor.Mat, id int) {
	h := e.Cols
	if e.F32 != nil {
		copy(dst, e.F32[id*h:(id+1)*h])
		return
	}
	for j, b := range e.BF16[id*h : (id+1)*h] {
		dst[j] = tensor.BF16ToFloat(b)
	}
}

// ropeTables fills cos and sin for positions pos…pos+n−1. As in transformers, the
// angle pos·inv_freq is rounded to float32 before its cosine and sine are taken.
func (r *Runner) ropeTables(pos, n int) {
	half := len(r.m.invFreq)
	for i := 0; i < n; i++ {
		p := float32(pos + i)
		for j, f := range r.m.invFreq {
			a := float64(p * f)
			r.cos[i*half+j] = float32(math.Cos(a))
			r.sin[i*half+j] = float32(math.Sin(a))
		}
	}
}

// rope rotates each head of x [n, heads·head_dim] in place, pairing dimension j
// with j+head_dim/2 (the rotate_half layout of Hugging Face checkpoints).
func (r *Runner) rope(x []float32, n, heads int) {
	half := len(r.m.invFreq)
	d := 2 * half
	for i := 0; i < n; i++ {
		cos, sin := r.cos[i*half:(i+1)*half], r.sin[i*half:(i+1)*half]
		for h := 0; h < heads; h++ {
			v := x[(i*heads+h)*d : (i*heads+h+1)*d]
			for j := 0; j < half; j++ {
				a, b := v[j], v[j+half]
				v[j] = a*cos[j] - b*sin[j]
				v[j+half] = b*cos[j] + a*sin[j]
			}
		}
	}
}
