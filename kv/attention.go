package kv

import (
	"math"

	"github.com/kvfoot/kvfoot/tensor"
)

// The chunk attention kernel (n > 1 queries): flash-attention style. A unit of work is
// one KV head x one block of queries, with the query heads of the GQA group stacked as
// rows (so the keys and values are read once for the group). It walks the visible keys
// in tiles: scores = Q·Kᵀ by GEMM, the causal mask on the tiles that cross the chunk's
// diagonal, an online softmax (running max and sum per row), and O += P·V by GEMM, so
// memory stays O(rows x tile) whatever the context. Units run on tensor's worker pool.
//
// The probabilities a policy asks for (ScoreRequest) need each asked query's whole
// normalised row; they are computed afterwards, per query head, with the scores again
// by GEMM.

const (
	attnRows    = 192 // query rows (group heads x queries) per unit: a multiple of the 12-row micro-tile
	attnRowsMin = 48
	attnKeys    = 512 // keys per tile
	scoreBuf    = 1 << 20
)

// attnWork is one goroutine's scratch.
type attnWork struct {
	q, o, s, t  []float32 // queries [R, d], output accumulators [R, d], score tile [R, attnKeys], P·V tile [R, d]
	m, l, alpha []float32 // per row: running max, running sum, rescale of the tile
	p, tmp      []float32 // score rows of the asked queries, local probabilities
}

// work returns the scratch of t parts.
func (c *hostStorage) work(t int) []attnWork {
	if len(c.ws) < t {
		c.ws = append(c.ws, make([]attnWork, t-len(c.ws))...)
	}
	return c.ws[:t]
}

// chunkJob is attendChunk's work for tensor.RunJob: phase 0's units are KV head x
// query block (latest blocks first: they see the most keys, so the parts' last units
// are short), phase 1's the query heads whose probabilities a policy asks for.
type chunkJob struct {
	c      *hostStorage
	q, out []float32
	n, bq  int
	blocks int
	asked  bool
}

func (j *chunkJob) Phases() int { return 2 }

func (j *chunkJob) Units(ph int) int {
	s := j.c.shape
	if ph == 0 {
		return s.KVHeads * j.blocks
	}
	if j.asked {
		return s.Heads
	}
	return 0
}

func (j *chunkJob) Do(w, ph, u int) {
	c, s := j.c, j.c.shape
	if ph == 1 {
		c.scoreHead(&c.ws[w], j.q, j.n, u)
		return
	}
	b := j.blocks - 1 - u/s.KVHeads
	g := u % s.KVHeads
	i0 := b * j.bq
	c.attendBlock(&c.ws[w], j.q, j.out, j.n, g, i0, min(i0+j.bq, j.n))
}

// attendChunk computes the attention of the n queries of the forward for every query
// head, and the asked probabilities into c.acc. A unit's rows are attnRows (the group's
// heads x its queries), fewer when that leaves too few units for the parts.
func (c *hostStorage) attendChunk(q, out []float32, n int) {
	s := c.shape
	group := s.Heads / s.KVHeads
	t := tensor.Threads()
	rows := attnRows
	for rows > attnRowsMin && s.KVHeads*((n+max(1, rows/group)-1)/max(1, rows/group)) < 3*t {
		rows /= 2
	}
	bq := max(1, rows/group) // queries per unit
	j := &chunkJob{c: c, q: q, out: out, n: n, bq: bq, blocks: (n + bq - 1) / bq}
	for g := range c.req[:s.KVHeads] {
		j.asked = j.asked || !c.req[g].none()
	}
	c.work(t)
	tensor.RunJob(j, t)
}

// attendBlock is the attention of queries [i0, i1) of every query head of KV head g.
func (c *hostStorage) attendBlock(w *attnWork, q, out []float32, n, g, i0, i1 int) {
	s := c.shape
	d, group := s.HeadDim, s.Heads/s.KVHeads
	K, V, past := c.kview[g], c.vview[g], c.past[g]
	nq := i1 - i0
	R := group * nq
	scale, cap := s.scale(), s.SoftCap
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
	first := 0        // the first key any row of the block sees (rows' Lo are nondecreasing)
	if c.lo != nil {
		first = c.lo[g][i0]
	}
	for j0 := first; j0 < keys; j0 += attnKeys {
		nk := min(attnKeys, keys-j0)
		tensor.MulNT(S, attnKeys, Q, d, K[j0*d:], d, R, nk, d)
		diag := j0+nk > past+i0 // some row of the block sees only part of this tile
		for r := 0; r < R; r++ {
			row := S[r*attnKeys : r*attnKeys+nk]
			vis, from := nk, 0
			if diag {
				vis = min(nk, past+i0+r%nq+1-j0)
			}
			if c.lo != nil {
				from = max(0, c.lo[g][i0+r%nq]-j0) // keys before it are out of the row's window
			}
			if vis <= from {
				clear(row)
				A[r] = 1
				continue
			}
			if cap != 0 {
				softCap(row[from:vis], cap)
			}
			mnew := max(M[r], tensor.Max(row[from:vis]))
			A[r] = float32(math.Exp(float64(M[r] - mnew)))
			L[r] = L[r]*A[r] + tensor.ExpSum(row[from:vis], mnew)
			clear(row[:from])
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
// chunk's keys it sees).
func (c *hostStorage) scoreHead(w *attnWork, q []float32, n, qh int) {
	s := c.shape
	d := s.HeadDim
	g := qh / (s.Heads / s.KVHeads)
	req, past, K := c.req[g], c.past[g], c.kview[g]
	if req.none() {
		return
	}
	scale, cap := s.scale(), s.SoftCap
	acc := grow(&c.acc[qh], past+n)
	clear(acc)
	rb := max(4, min(64, scoreBuf/(past+req.To))) // asked queries per GEMM
	for i0 := req.From; i0 < req.To; i0 += rb {
		i1 := min(i0+rb, req.To)
		ld := past + i1
		P := grow(&w.p, (i1-i0)*ld)
		tensor.MulNT(P, ld, q[(i0*s.Heads+qh)*d:], s.Heads*d, K, d, i1-i0, ld, d)
		for i := i0; i < i1; i++ {
			lo := 0 // entries before it are out of the query's window
			if c.lo != nil {
				lo = c.lo[g][i]
			}
			visible := P[(i-i0)*ld+lo : (i-i0)*ld+past+i+1]
			for j := range visible {
				visible[j] *= scale
			}
			if cap != 0 {
				softCap(visible, cap)
			}
			if req.Local {
				from := max(past, lo)
				t := grow(&w.tmp, past+i+1-from)
				copy(t, visible[from-lo:])
				tensor.Softmax(t)
				for j, p := range t {
					acc[from+j] += p
				}
				continue
			}
			tensor.Softmax(visible)
			for j, p := range visible {
				acc[lo+j] += p
			}
		}
	}
}

// softCap sets x = cap·tanh(x/cap) (Gemma 2's attention logit soft-capping).
func softCap(x []float32, cap float32) {
	for i, v := range x {
		x[i] = float32(float64(cap) * math.Tanh(float64(v)/float64(cap)))
	}
}

// The decode kernel (n = 1 query per head): memory bound, so each KV head's keys and
// values are streamed once for all the query heads of its group. The keys go in tiles
// of about 32 KiB: the scores of every group head against a tile (tensor.DotRows) while
// it is in L1, then after the softmax's max and exp the values in the same tiles
// (tensor.AxpyRows); bf16 heads are widened, quantized ones dequantized, a tile at a
// time into a buffer that stays in L1 (rowStore). Nothing is normalised until the end,
// so the work splits across KV heads and key blocks: the concatenation of all KV
// heads' keys is cut into units of about decodeUnit keys x head dims (balanced
// whatever the heads' lengths), each unit's part of a KV head yielding its group's
// partial max, sum and un-normalised output, merged afterwards the way flash-decoding
// does. On one thread a KV head is one piece.

const decodeTile = 8192 // floats of keys (or values) per tile: 32 KiB

// decodeUnit is the fewest keys x head dims of a unit of the decode job (a variable so
// that tests can split small contexts); a job has at most decodeUnitsPerPart units
// per part.
var decodeUnit = 8192

const decodeUnitsPerPart = 4

// decodeScratch is the decode kernel's scratch, reused across steps, and its job.
type decodeScratch struct {
	c      *hostStorage
	q      []float32 // [Heads, d]: the queries, pre-scaled by 1/√d
	o      []float32 // [piece, group, d]: un-normalised partial outputs
	m, l   []float32 // [piece, group]: partial max and sum of exp
	lo, hi []int     // [piece]: the piece's keys within its KV head (lo = hi: none)
	off    []int     // [KVHeads+1]: offsets of the KV heads' visible keys in their concatenation
	first  []int     // [KVHeads]: each KV head's first visible key (0 but on a local layer)
	keys   int       // all KV heads' keys
	units  int       // units; piece g*units+i is unit i's part of KV head g
	parts  []decodePart
}

// decodePart is one part's scratch.
type decodePart struct {
	buf []float32 // a tile converted to float32 (rowStore heads)
	quantScratch
}

// decodeTileRows is the keys per tile at head dim d: a multiple of 4 (the DotRows block).
func decodeTileRows(d int) int { return max(4, decodeTile/d&^3) }

func (dc *decodeScratch) Phases() int       { return 1 }
func (dc *decodeScratch) Units(int) int     { return dc.units }
func (dc *decodeScratch) Do(w, _, unit int) { dc.c.decodeRange(w, unit) }

// attendDecode writes the attention of the forward's single query of every query head
// into out, and the asked probabilities into c.acc.
func (c *hostStorage) attendDecode(q, out []float32) {
	s := c.shape
	d, group := s.HeadDim, s.Heads/s.KVHeads
	dc := &c.dec
	scale := s.scale()
	qs := growN(&dc.q, s.Heads*d)
	for i, v := range q[:s.Heads*d] {
		qs[i] = v * scale
	}
	off := growN(&dc.off, s.KVHeads+1)
	first := growN(&dc.first, s.KVHeads)
	keys := 0
	for g := range s.KVHeads {
		off[g] = keys
		first[g] = 0
		if c.lo != nil {
			first[g] = c.lo[g][0]
		}
		n := c.past[g] + 1
		keys += n - first[g]
		for qh := g * group; qh < (g+1)*group; qh++ {
			grow(&c.scr[qh], n)
		}
	}
	off[s.KVHeads] = keys
	t := tensor.Threads()
	units := 1
	if t > 1 {
		// enough units for the parts to even out (a part takes a late one's units), not
		// so many that each piece's fixed costs and the merge add up
		units = min(keys, max(1, keys*d/decodeUnit), decodeUnitsPerPart*t)
	}
	dc.c, dc.keys, dc.units = c, keys, units
	pieces := s.KVHeads * units
	growN(&dc.lo, pieces)
	growN(&dc.hi, pieces)
	grow(&dc.m, pieces*group)
	grow(&dc.l, pieces*group)
	grow(&dc.o, pieces*group*d)
	growN(&dc.parts, t)
	for i := range dc.parts {
		grow(&dc.parts[i].buf, decodeTileRows(d)*d)
	}
	tensor.RunJob(dc, min(t, units))
	for qh := range s.Heads {
		c.decodeMerge(qh, out[qh*d:(qh+1)*d])
	}
}

// decodeRange is unit i, run by part w: keys [i·keys/units, (i+1)·keys/units) of the
// concatenation.
func (c *hostStorage) decodeRange(w, i int) {
	dc := &c.dec
	a0, a1 := i*dc.keys/dc.units, (i+1)*dc.keys/dc.units
	for g := range c.shape.KVHeads {
		p := g*dc.units + i
		lo, hi := max(a0, dc.off[g]), min(a1, dc.off[g+1])
		if lo >= hi {
			dc.lo[p], dc.hi[p] = 0, 0
			continue
		}
		dc.lo[p], dc.hi[p] = lo-dc.off[g]+dc.first[g], hi-dc.off[g]+dc.first[g]
		c.decodePiece(g, p, &dc.parts[w])
	}
}

// decodePiece computes piece p, keys [lo, hi) of KV head g, for every head of its group:
// the scores into c.scr, their max, exp(score − max) in place, its sum, and Σ exp·value.
// pt is the running part's scratch. Quantized storage that allows it is read in its
// packed form (quantStore.scoreRows, sumRows); other rowStore heads are converted a
// tile at a time.
func (c *hostStorage) decodePiece(g, p int, pt *decodePart) {
	s, dc := c.shape, &c.dec
	d, group := s.HeadDim, s.Heads/s.KVHeads
	rs, buf := c.rows[g], pt.buf
	qst, fused := rs.(*quantStore)
	fused = fused && qst.fused() // the packed codes need no tiles of dequantized rows
	j0, j1 := dc.lo[p], dc.hi[p]
	tile := decodeTileRows(d)
	if fused {
		qst.scoreRows(c.scr[g*group:(g+1)*group], dc.q[g*group*d:(g+1)*group*d], j0, j1, &pt.quantScratch)
	}
	for a := j0; a < j1 && !fused; a += tile {
		b := min(a+tile, j1)
		var K []float32
		if rs != nil {
			K = buf[:(b-a)*d]
			rs.keyRows(K, a, b)
		} else {
			K = c.kview[g][a*d : b*d]
		}
		for qh := g * group; qh < (g+1)*group; qh++ {
			tensor.DotRows(c.scr[qh][a:b], K, dc.q[qh*d:(qh+1)*d])
		}
	}
	for h := range group {
		row := c.scr[g*group+h][j0:j1]
		if s.SoftCap != 0 {
			softCap(row, s.SoftCap)
		}
		r := p*group + h
		dc.m[r] = tensor.Max(row)
		dc.l[r] = tensor.ExpSum(row, dc.m[r])
		clear(dc.o[r*d : (r+1)*d])
	}
	if fused {
		qst.sumRows(dc.o[p*group*d:(p+1)*group*d], c.scr[g*group:(g+1)*group], j0, j1, &pt.quantScratch)
	}
	for a := j0; a < j1 && !fused; a += tile {
		b := min(a+tile, j1)
		var V []float32
		if rs != nil {
			V = buf[:(b-a)*d]
			rs.valueRows(V, a, b)
		} else {
			V = c.vview[g][a*d : b*d]
		}
		for h := range group {
			r := p*group + h
			tensor.AxpyRows(dc.o[r*d:(r+1)*d], c.scr[g*group+h][a:b], V)
		}
	}
}

// decodeMerge combines query head qh's pieces into its output o and, if its KV head's
// policy asks, its probabilities into c.acc[qh] (exp(score − M)/L; Local: the softmax
// over the chunk's keys, here the query's own key alone, so 1).
func (c *hostStorage) decodeMerge(qh int, o []float32) {
	s, dc := c.shape, &c.dec
	d, group := s.HeadDim, s.Heads/s.KVHeads
	g, h := qh/group, qh%group
	M := float32(math.Inf(-1))
	for i := range dc.units {
		if p := g*dc.units + i; dc.lo[p] < dc.hi[p] {
			M = max(M, dc.m[p*group+h])
		}
	}
	var L float32
	clear(o)
	for i := range dc.units {
		p := g*dc.units + i
		if dc.lo[p] >= dc.hi[p] {
			continue
		}
		r := p*group + h
		f := float32(math.Exp(float64(dc.m[r] - M)))
		L += f * dc.l[r]
		tensor.Axpy(f, dc.o[r*d:(r+1)*d], o)
	}
	inv := 1 / L
	for x := range o {
		o[x] *= inv
	}
	req := c.req[g]
	if req.none() {
		return
	}
	past := c.past[g]
	acc := grow(&c.acc[qh], past+1)
	clear(acc)
	if req.Local {
		acc[past] = 1
		return
	}
	sc := c.scr[qh]
	for i := range dc.units {
		p := g*dc.units + i
		if dc.lo[p] >= dc.hi[p] {
			continue
		}
		f := float32(math.Exp(float64(dc.m[p*group+h]-M))) * inv
		for j := dc.lo[p]; j < dc.hi[p]; j++ {
			acc[j] = sc[j] * f
		}
	}
}
