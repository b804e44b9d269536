package kv

import (
	"math"
	"sync/atomic"

	"github.com/kvfoot/kvfoot/tensor"
)

// The chunk attention kernel (n > 1 queries): flash-attention style. A unit of work is
// one KV head x one block of queries, with the query heads of the GQA group stacked as
// rows (so the keys and values are read once for the group). It walks the visible keys
// in tiles: scores = Q·Kᵀ by GEMM, the causal mask on the tiles that cross the chunk's
// diagonal, an online softmax (running max and sum per row), and O += P·V by GEMM, so
// memory stays O(rows x tile) whatever the context. Units run on Threads() goroutines.
//
// The probabilities a policy asks for (ScoreRequest) need each asked query's whole
// normalised row; they are computed afterwards, per query head, the way attendHead
// does it, with the scores again by GEMM.

const (
	attnRows = 192 // query rows (group heads x queries) per unit: a multiple of the 12-row micro-tile
	attnKeys = 512 // keys per tile
	scoreBuf = 1 << 20
)

// attnWork is one goroutine's scratch.
type attnWork struct {
	q, o, s, t  []float32 // queries [R, d], output accumulators [R, d], score tile [R, attnKeys], P·V tile [R, d]
	m, l, alpha []float32 // per row: running max, running sum, rescale of the tile
	p, tmp      []float32 // score rows of the asked queries, local probabilities
}

// work returns the scratch of t goroutines.
func (c *Cache) work(t int) []attnWork {
	if len(c.ws) < t {
		c.ws = append(c.ws, make([]attnWork, t-len(c.ws))...)
	}
	return c.ws[:t]
}

// runUnits runs fn(w, u) for u in [0, units) on up to Threads() goroutines, each with
// its own scratch w, handing out units in order.
func (c *Cache) runUnits(units int, fn func(w *attnWork, u int)) {
	t := min(tensor.Threads(), units)
	ws := c.work(max(t, 1))
	if t <= 1 {
		for u := 0; u < units; u++ {
			fn(&ws[0], u)
		}
		return
	}
	var next atomic.Int64
	tensor.Parallel(t, func(lo, hi int) {
		for id := lo; id < hi; id++ {
			w := &ws[id]
			for u := int(next.Add(1) - 1); u < units; u = int(next.Add(1) - 1) {
				fn(w, u)
			}
		}
	})
}

// attendChunk computes the attention of the n queries of the forward for every query
// head, and the asked probabilities into c.acc.
func (c *Cache) attendChunk(q, out []float32, n int) {
	s := c.shape
	group := s.Heads / s.KVHeads
	bq := max(1, attnRows/group) // queries per unit
	blocks := (n + bq - 1) / bq
	// Latest blocks first: they see the most keys, so the last units to start are short.
	c.runUnits(s.KVHeads*blocks, func(w *attnWork, u int) {
		b := blocks - 1 - u/s.KVHeads
		g := u % s.KVHeads
		i0 := b * bq
		c.attendBlock(w, q, out, n, g, i0, min(i0+bq, n))
	})
	asked := false
	for g := range c.req[:s.KVHeads] {
		asked = asked || !c.req[g].none()
	}
	if asked {
		c.runUnits(s.Heads, func(w *attnWork, qh int) { c.scoreHead(w, q, n, qh) })
	}
}

// attendBlock is the attention of queries [i0, i1) of every query head of KV head g.
func (c *Cache) attendBlock(w *attnWork, q, out []float32, n, g, i0, i1 int) {
	s := c.shape
	d, group := s.HeadDim, s.Heads/s.KVHeads
	K, V, past := c.kview[g], c.vview[g], c.fwd[g].Past
	nq := i1 - i0
	R := group * nq
	scale := float32(1 / math.Sqrt(float64(d)))
	Q := grow(&w.q, R*d)
	O := grow(&w.o, R*d)
	S := grow(&w.s, R*attnKeys)
	T := grow(&w.t, R*d)
	M, L, A := grow(&w.m, R), grow(&w.l, R), grow(&w.alpha, R)
	// Row r = h*nq + (i-i0) holds query i of query head g*group+h, pre-scaled.
	for h := 0; h < group; h++ {
		qh := g*group + h
		for i := i0; i < i1; i++ {
			dst := Q[(h*nq+i-i0)*d : (h*nq+i-i0+1)*d]
			for x, v := range q[(i*s.Heads+qh)*d : (i*s.Heads+qh+1)*d] {
				dst[x] = v * scale
			}
		}
	}
	clear(O)
	for r := range M {
		M[r], L[r] = float32(math.Inf(-1)), 0
	}
	keys := past + i1 // keys visible to the block's last query
	for j0 := 0; j0 < keys; j0 += attnKeys {
		nk := min(attnKeys, keys-j0)
		tensor.MulNT(S, attnKeys, Q, d, K[j0*d:], d, R, nk, d)
		diag := j0+nk > past+i0 // some row of the block sees only part of this tile
		for r := 0; r < R; r++ {
			row := S[r*attnKeys : r*attnKeys+nk]
			vis := nk
			if diag {
				vis = min(nk, past+i0+r%nq+1-j0)
			}
			if vis <= 0 {
				clear(row)
				A[r] = 1
				continue
			}
			mnew := max(M[r], tensor.Max(row[:vis]))
			A[r] = float32(math.Exp(float64(M[r] - mnew)))
			L[r] = L[r]*A[r] + tensor.ExpSum(row[:vis], mnew)
			clear(row[vis:])
			M[r] = mnew
		}
		tensor.MulNN(T, d, S, attnKeys, V[j0*d:], d, R, d, nk)
		for r := 0; r < R; r++ {
			o, t, a := O[r*d:(r+1)*d], T[r*d:(r+1)*d], A[r]
			if a == 1 {
				for x, v := range t {
					o[x] += v
				}
				continue
			}
			for x, v := range t {
				o[x] = o[x]*a + v
			}
		}
	}
	for h := 0; h < group; h++ {
		qh := g*group + h
		for i := i0; i < i1; i++ {
			r := h*nq + i - i0
			inv := 1 / L[r]
			dst := out[(i*s.Heads+qh)*d : (i*s.Heads+qh+1)*d]
			for x, v := range O[r*d : (r+1)*d] {
				dst[x] = v * inv
			}
		}
	}
}

// scoreHead accumulates into c.acc[qh] the probabilities of the queries its KV head's
// request asks for: each asked query's softmax over all it sees (or, Local, over the
// chunk's keys it sees), as attendHead computes them.
func (c *Cache) scoreHead(w *attnWork, q []float32, n, qh int) {
	s := c.shape
	d := s.HeadDim
	g := qh / (s.Heads / s.KVHeads)
	req, past, K := c.req[g], c.fwd[g].Past, c.kview[g]
	if req.none() {
		return
	}
	scale := float32(1 / math.Sqrt(float64(d)))
	acc := grow(&c.acc[qh], past+n)
	clear(acc)
	rb := max(4, min(64, scoreBuf/(past+req.To))) // asked queries per GEMM
	for i0 := req.From; i0 < req.To; i0 += rb {
		i1 := min(i0+rb, req.To)
		ld := past + i1
		P := grow(&w.p, (i1-i0)*ld)
		tensor.MulNT(P, ld, q[(i0*s.Heads+qh)*d:], s.Heads*d, K, d, i1-i0, ld, d)
		for i := i0; i < i1; i++ {
			visible := P[(i-i0)*ld : (i-i0)*ld+past+i+1]
			for j := range visible {
				visible[j] *= scale
			}
			if req.Local {
				t := grow(&w.tmp, i+1)
				copy(t, visible[past:])
				tensor.Softmax(t)
				for j, p := range t {
					acc[past+j] += p
				}
				continue
			}
			tensor.Softmax(visible)
			for j, p := range visible {
				acc[j] += p
			}
		}
	}
}
