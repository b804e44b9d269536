package train

import (
	"math"
	"sync"
	"sync/atomic"

	"github.com/kvfoot/kvfoot/tensor"
)

// band says which keys a query at position i sees: every j ≤ i (full), or, for a
// streaming head, the first sink positions and the window most recent ones (i
// included): j ≤ i and (j < sink or i − j < window).
type band struct {
	full         bool
	sink, window int
}

// qBlock is the number of query rows one unit of attention work handles.
const qBlock = 64

// span is a half-open range of positions [lo, hi).
type span struct{ lo, hi int }

// keys returns the key ranges a query block [i0, i1) needs, sorted and disjoint.
func (b band) keys(i0, i1 int, out *[2]span) []span {
	if b.full {
		out[0] = span{0, i1}
		return out[:1]
	}
	lo := max(0, i0-b.window+1)
	switch {
	case b.sink >= lo:
		out[0] = span{0, i1}
	case b.sink == 0:
		out[0] = span{lo, i1}
	default:
		out[0], out[1] = span{0, b.sink}, span{lo, i1}
		return out[:2]
	}
	return out[:1]
}

// visible returns the positions query i sees, sorted and disjoint.
func (b band) visible(i int, out *[2]span) []span {
	if b.full {
		out[0] = span{0, i + 1}
		return out[:1]
	}
	lo := max(0, i-b.window+1)
	s := min(b.sink, i+1)
	if s >= lo {
		out[0] = span{0, i + 1}
		return out[:1]
	}
	if s == 0 {
		out[0] = span{lo, i + 1}
		return out[:1]
	}
	out[0], out[1] = span{0, s}, span{lo, i + 1}
	return out[:2]
}

// attnShape is the attention geometry of a layer.
type attnShape struct {
	heads, kvHeads, headDim int
	scale                   float32 // of q·k: the model's (Gemma's query_pre_attn_scalar); 0: 1/√headDim
	softCap                 float32 // scores become softCap·tanh(s/softCap) (Gemma 2); 0: none
}

// attnScratch is one worker's buffers, sized for sequences of up to t tokens.
type attnScratch struct {
	p, dp []float32 // [qBlock, t]: probabilities, and their gradient
	dcap  []float32 // [qBlock, t]: the soft cap's derivative 1 − (s/cap)² (nil without one)
	tmp   []float32 // [t, headDim]
}

func newAttnScratch(t int, s attnShape) *attnScratch {
	w := &attnScratch{p: make([]float32, qBlock*t), dp: make([]float32, qBlock*t), tmp: make([]float32, t*s.headDim)}
	if s.softCap != 0 {
		w.dcap = make([]float32, qBlock*t)
	}
	return w
}

// attention runs causal attention of a band over n tokens: out [n, heads·d] from
// q [n, heads·d] (after RoPE), k and v [n, kvHeads·d]. Query head h reads KV head
// h / (heads / kvHeads) (GQA). Work is split into units (a head and a block of rows)
// that each own the rows they write, so results do not depend on the number of
// workers. Probabilities are recomputed by the backward pass from the log-sum-exp
// of every row, never stored.
type attention struct {
	shape   attnShape
	scratch []*attnScratch
}

func newAttention(t int, s attnShape, workers int) *attention {
	if s.scale == 0 {
		s.scale = float32(1 / math.Sqrt(float64(s.headDim)))
	}
	a := &attention{shape: s}
	for range workers {
		a.scratch = append(a.scratch, newAttnScratch(t, s))
	}
	return a
}

// run calls fn(worker, head, i0, i1) for every head and block of qBlock rows of n,
// the costliest first: with causal attention, the last blocks of queries (the first
// blocks of keys when firstFirst is set).
func (a *attention) run(heads, n int, firstFirst bool, fn func(w *attnScratch, h, i0, i1 int)) {
	nb := (n + qBlock - 1) / qBlock
	units := nb * heads
	workers := min(len(a.scratch), units, max(tensor.Threads(), 1))
	var next atomic.Int64
	work := func(w *attnScratch) {
		for {
			u := int(next.Add(1) - 1)
			if u >= units {
				return
			}
			b, h := nb-1-u/heads, u%heads
			if firstFirst {
				b = u / heads
			}
			fn(w, h, b*qBlock, min((b+1)*qBlock, n))
		}
	}
	var wg sync.WaitGroup
	for i := 1; i < workers; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); work(a.scratch[i]) }()
	}
	work(a.scratch[0])
	wg.Wait()
}

// scores fills w.p [i1−i0, nk] with the scaled (and soft-capped) scores q·k·scale of queries [i0, i1) of
// head h against the key ranges ks (columns in range order) and returns nk.
func (a *attention) scores(w *attnScratch, q, k []float32, h, i0, i1 int, ks []span) int {
	d, qd, kvd := a.shape.headDim, a.shape.heads*a.shape.headDim, a.shape.kvHeads*a.shape.headDim
	g := h / (a.shape.heads / a.shape.kvHeads)
	nk := 0
	for _, r := range ks {
		nk += r.hi - r.lo
	}
	col := 0
	for _, r := range ks {
		tensor.MulNT(w.p[col:], nk, q[i0*qd+h*d:], qd, k[r.lo*kvd+g*d:], kvd, i1-i0, r.hi-r.lo, d)
		col += r.hi - r.lo
	}
	scale := a.shape.scale
	for j := range w.p[:(i1-i0)*nk] {
		w.p[j] *= scale
	}
	if c := a.shape.softCap; c != 0 {
		for j, v := range w.p[:(i1-i0)*nk] {
			t := float32(math.Tanh(float64(v / c)))
			w.p[j], w.dcap[j] = c*t, 1-t*t
		}
	}
	return nk
}

// visibleCols returns the columns of row i (of a score block over the key ranges ks)
// that query i sees, sorted and disjoint.
func (b band) visibleCols(i int, ks []span, out *[4]span) []span {
	var vb [2]span
	vis := b.visible(i, &vb)
	nc, off := 0, 0
	for _, r := range ks {
		for _, v := range vis {
			lo, hi := max(r.lo, v.lo), min(r.hi, v.hi)
			if lo < hi {
				out[nc] = span{off + lo - r.lo, off + hi - r.lo}
				nc++
			}
		}
		off += r.hi - r.lo
	}
	return out[:nc]
}

// exp sets row to exp(row − lse) on the visible columns and 0 elsewhere.
func expRow(row []float32, cols []span, lse float32) {
	prev := 0
	for _, c := range cols {
		clear(row[prev:c.lo])
		tensor.ExpSum(row[c.lo:c.hi], lse)
		prev = c.hi
	}
	clear(row[prev:])
}

// forward sets out to the band's attention and lse [heads, n] to the log-sum-exp of
// every row's scaled scores.
func (a *attention) forward(b band, out, lse, q, k, v []float32, n int) {
	d, qd, kvd := a.shape.headDim, a.shape.heads*a.shape.headDim, a.shape.kvHeads*a.shape.headDim
	a.run(a.shape.heads, n, false, func(w *attnScratch, h, i0, i1 int) {
		g := h / (a.shape.heads / a.shape.kvHeads)
		var kb [2]span
		ks := b.keys(i0, i1, &kb)
		nk := a.scores(w, q, k, h, i0, i1, ks)
		for i := i0; i < i1; i++ {
			row := w.p[(i-i0)*nk : (i-i0+1)*nk]
			var cb [4]span
			cols := b.visibleCols(i, ks, &cb)
			mx := float32(math.Inf(-1))
			for _, c := range cols {
				mx = max(mx, tensor.Max(row[c.lo:c.hi]))
			}
			var sum float32
			prev := 0
			for _, c := range cols {
				clear(row[prev:c.lo])
				sum += tensor.ExpSum(row[c.lo:c.hi], mx)
				prev = c.hi
			}
			clear(row[prev:])
			inv := 1 / sum
			for j := range row {
				row[j] *= inv
			}
			lse[h*n+i] = mx + float32(math.Log(float64(sum)))
		}
		m := i1 - i0
		col := 0
		for ri, r := range ks {
			if ri == 0 {
				tensor.MulNN(out[i0*qd+h*d:], qd, w.p[col:], nk, v[r.lo*kvd+g*d:], kvd, m, d, r.hi-r.lo)
			} else {
				tensor.MulNN(w.tmp, d, w.p[col:], nk, v[r.lo*kvd+g*d:], kvd, m, d, r.hi-r.lo)
				for i := 0; i < m; i++ {
					tensor.Axpy(1, w.tmp[i*d:(i+1)*d], out[(i0+i)*qd+h*d:(i0+i)*qd+h*d+d])
				}
			}
			col += r.hi - r.lo
		}
	})
}

// backward adds to dq, dk, dv the gradients of the band's attention given dout, the
// gradient of its output out (lse from forward; delta holds heads·n values). With P
// the probabilities and S the scaled scores (FlashAttention-2's backward):
// D = rowsum(dO ⊙ O), dP = dO·Vᵀ, dS = P ⊙ (dP − D), dQ = dS·K·scale, dK = dSᵀ·Q·scale,
// dV = Pᵀ·dO. dQ is computed by units of query rows, dK and dV by units of key rows.
func (a *attention) backward(b band, dq, dk, dv, dout, out, lse, delta, q, k, v []float32, n int) {
	d, qd, kvd := a.shape.headDim, a.shape.heads*a.shape.headDim, a.shape.kvHeads*a.shape.headDim
	group := a.shape.heads / a.shape.kvHeads
	scale := a.shape.scale
	// dS of a block of query rows [i0, i1) against the key ranges ks, left in w.dp
	// (w.p keeps P); returns the number of columns.
	dScores := func(w *attnScratch, h, i0, i1 int, ks []span) int {
		g := h / group
		nk := a.scores(w, q, k, h, i0, i1, ks)
		for i := i0; i < i1; i++ {
			var cb [4]span
			expRow(w.p[(i-i0)*nk:(i-i0+1)*nk], b.visibleCols(i, ks, &cb), lse[h*n+i])
		}
		col := 0
		for _, r := range ks {
			tensor.MulNT(w.dp[col:], nk, dout[i0*qd+h*d:], qd, v[r.lo*kvd+g*d:], kvd, i1-i0, r.hi-r.lo, d)
			col += r.hi - r.lo
		}
		for i := i0; i < i1; i++ {
			p, dp := w.p[(i-i0)*nk:(i-i0+1)*nk], w.dp[(i-i0)*nk:(i-i0+1)*nk]
			D := delta[h*n+i]
			for j := range dp {
				dp[j] = p[j] * (dp[j] - D) * scale
			}
			if w.dcap != nil {
				for j, f := range w.dcap[(i-i0)*nk : (i-i0+1)*nk] {
					dp[j] *= f
				}
			}
		}
		return nk
	}
	// D and dQ: units of query rows.
	a.run(a.shape.heads, n, false, func(w *attnScratch, h, i0, i1 int) {
		g := h / group
		for i := i0; i < i1; i++ {
			o := i*qd + h*d
			delta[h*n+i] = tensor.Dot(dout[o:o+d], out[o:o+d])
		}
		var kb [2]span
		ks := b.keys(i0, i1, &kb)
		nk := dScores(w, h, i0, i1, ks)
		m, col := i1-i0, 0
		for _, r := range ks {
			tensor.MulNN(w.tmp, d, w.dp[col:], nk, k[r.lo*kvd+g*d:], kvd, m, d, r.hi-r.lo)
			for i := 0; i < m; i++ {
				o := (i0+i)*qd + h*d
				tensor.Axpy(1, w.tmp[i*d:(i+1)*d], dq[o:o+d])
			}
			col += r.hi - r.lo
		}
	})
	// dK and dV: units of key rows [j0, j1) of one KV head, over every query head of
	// its group and every block of queries that sees them.
	a.run(a.shape.kvHeads, n, true, func(w *attnScratch, g, j0, j1 int) {
		ks := []span{{j0, j1}}
		qEnd := n
		if !b.full && j0 >= b.sink {
			qEnd = min(n, j1-1+b.window)
		}
		nr := j1 - j0
		for h := g * group; h < (g+1)*group; h++ {
			for i0 := j0 / qBlock * qBlock; i0 < qEnd; i0 += qBlock {
				i1 := min(i0+qBlock, n)
				dScores(w, h, i0, i1, ks)
				m := i1 - i0
				tensor.MulTN(w.tmp, d, w.dp, nr, q[i0*qd+h*d:], qd, nr, d, m)
				for j := 0; j < nr; j++ {
					o := (j0+j)*kvd + g*d
					tensor.Axpy(1, w.tmp[j*d:(j+1)*d], dk[o:o+d])
				}
				tensor.MulTN(w.tmp, d, w.p, nr, dout[i0*qd+h*d:], qd, nr, d, m)
				for j := 0; j < nr; j++ {
					o := (j0+j)*kvd + g*d
					tensor.Axpy(1, w.tmp[j*d:(j+1)*d], dv[o:o+d])
				}
			}
		}
	})
}
