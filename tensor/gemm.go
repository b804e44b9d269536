package tensor

import "sync"

// operand is a read-only matrix view whose element (i, p) is at index i*rs + p*cs
// of f32, f16 (IEEE half, an F16 weight matrix's blocks) or bf16, whichever is set.
// The three products differ only in these strides.
type operand struct {
	f32    []float32
	f16    []uint16
	bf16   []uint16
	rs, cs int
}

// at is element index i of o, widened.
func (o operand) at(i int) float32 {
	switch {
	case o.f32 != nil:
		return o.f32[i]
	case o.f16 != nil:
		return F16ToFloat(o.f16[i])
	}
	return BF16ToFloat(o.bf16[i])
}

// gemmOut is one product of a GEMM job: n columns from the rows of b, written to
// dst with row stride ldc.
type gemmOut struct {
	b   operand
	n   int
	dst []float32
	ldc int
}

// maxOuts is the most products one job computes from the same a (Q, K and V).
const maxOuts = 4

// Blocking (Goto/BLIS): the operands are packed in blocks of kcBlock along k, a
// into panels of mr rows and b into tiles of nr columns. A compute unit is one tile
// against a group of panels: the tile (kcBlock x nr, 32 KiB at nr=32) stays in L1
// while the group's panels stream from L2, and consecutive units of a part share the
// group. Rows and columns beyond rowChunk x colChunk are done one chunk after
// another, which bounds the packing buffers.
const (
	kcBlock  = 256
	mcPanels = 16 // panels per group on one part (192 rows at mr=12: 192 KiB of a)
	mcSplit  = 4  // panels per group when several parts share the work
	rowChunk = 4096
	colChunk = 4096
)

// gemmJob computes dst_o[i*ldc+j] = Σ_p a(i,p)·b_o(j,p) for i < m, j < n_o, p < k for
// every product o. A block is a row chunk x column chunk x kc slice; its packing (a's
// panels and every product's tiles, one unit each) and its compute units run on all
// parts. The packed block is double buffered, so phase i packs block i while it
// computes block i−1: one wait per block.
type gemmJob struct {
	im   *impl
	m, k int
	a    operand
	outs [maxOuts]gemmOut
	nout int

	nt, ntc  int // tiles of all products; tiles per column chunk
	rcs, kbs int // row chunks; kc blocks per chunk
	gp       int // panels per compute group
	blocks   int

	pa, pb [2][]float32 // packed a panels and b tiles of a block
	tiles  []float32    // per part: a ragged edge tile
}

var gemmJobs = sync.Pool{New: func() any { return new(gemmJob) }}

func grow(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

// gemm computes one or more products of a (m x k) on up to t parts: the pool's
// workers when t > 1 and the pool is free, else the calling goroutine alone.
func gemm(im *impl, t, m, k int, a operand, outs ...gemmOut) {
	if m == 0 {
		return
	}
	if k == 0 {
		for _, o := range outs {
			for i := 0; i < m; i++ {
				clear(o.dst[i*o.ldc : i*o.ldc+o.n])
			}
		}
		return
	}
	flops := 0
	for _, o := range outs {
		flops += 2 * m * o.n * k
	}
	// Below ~1 MFLOP a part costs more than it saves.
	if flops < 1<<20 {
		t = 1
	}
	j := gemmJobs.Get().(*gemmJob)
	defer gemmJobs.Put(j)
	t = pool.lock(t)
	j.set(im, t, m, k, a, outs)
	if t == 1 {
		for ph := range j.Phases() {
			for u := range j.Units(ph) {
				j.Do(0, ph, u)
			}
		}
	} else {
		pool.run(j, t)
		pool.finish()
	}
	j.a, j.outs = operand{}, [maxOuts]gemmOut{}
}

func (j *gemmJob) set(im *impl, t, m, k int, a operand, outs []gemmOut) {
	mr, nr := im.mr, im.nr
	j.im, j.m, j.k, j.a, j.nout = im, m, k, a, copy(j.outs[:], outs)
	j.nt = 0
	for _, o := range outs {
		j.nt += (o.n + nr - 1) / nr
	}
	j.ntc = min(j.nt, colChunk/nr)
	j.rcs = (m + rowChunk - 1) / rowChunk
	j.kbs = (k + kcBlock - 1) / kcBlock
	j.blocks = j.rcs * ((j.nt + j.ntc - 1) / j.ntc) * j.kbs
	j.gp = mcPanels
	if t > 1 {
		j.gp = mcSplit
	}
	for b := range j.pa {
		j.pa[b] = grow(j.pa[b], (min(m, rowChunk)+mr-1)/mr*mr*kcBlock)
		j.pb[b] = grow(j.pb[b], j.ntc*nr*kcBlock)
	}
	j.tiles = grow(j.tiles, t*mr*nr)
}

// block returns block b's first row and row count, first tile and tile count, and
// first k and kc.
func (j *gemmJob) block(b int) (i0, rows, t0, nc, pc, kc int) {
	kb, b := b%j.kbs, b/j.kbs
	cc, rc := b%((j.nt+j.ntc-1)/j.ntc), b/((j.nt+j.ntc-1)/j.ntc)
	i0, t0, pc = rc*rowChunk, cc*j.ntc, kb*kcBlock
	return i0, min(rowChunk, j.m-i0), t0, min(j.ntc, j.nt-t0), pc, min(kcBlock, j.k-pc)
}

// computeUnits and packUnits are the unit counts of block b (0 outside the blocks).
func (j *gemmJob) computeUnits(b int) int {
	if b < 0 || b >= j.blocks {
		return 0
	}
	_, rows, _, nc, _, _ := j.block(b)
	mp := (rows + j.im.mr - 1) / j.im.mr
	return (mp + j.gp - 1) / j.gp * nc
}

func (j *gemmJob) packUnits(b int) int {
	if b >= j.blocks {
		return 0
	}
	_, rows, _, nc, _, _ := j.block(b)
	return (rows+j.im.mr-1)/j.im.mr + nc
}

func (j *gemmJob) Phases() int      { return j.blocks + 1 }
func (j *gemmJob) Units(ph int) int { return j.computeUnits(ph-1) + j.packUnits(ph) }

func (j *gemmJob) Do(w, ph, u int) {
	if cu := j.computeUnits(ph - 1); u < cu {
		j.compute(w, ph-1, u)
	} else {
		j.pack(ph, u-cu)
	}
}

// tileOf returns the product and first column of tile t of the concatenated tiles.
func (j *gemmJob) tileOf(t int) (o *gemmOut, j0 int) {
	nr := j.im.nr
	for i := range j.outs[:j.nout] {
		o = &j.outs[i]
		nt := (o.n + nr - 1) / nr
		if t < nt {
			return o, t * nr
		}
		t -= nt
	}
	panic("tensor: gemm tile out of range")
}

// pack packs unit u of block b: a's panel u, or tile u − panels.
func (j *gemmJob) pack(b, u int) {
	mr, nr := j.im.mr, j.im.nr
	i0, rows, t0, _, pc, kc := j.block(b)
	mp := (rows + mr - 1) / mr
	if u < mp {
		r := u * mr
		pack(j.im, j.pa[b%2][r*kc:(r+mr)*kc], j.a, i0+r, min(mr, rows-r), pc, kc, mr)
		return
	}
	o, c := j.tileOf(t0 + u - mp)
	off := (u - mp) * nr * kc
	pack(j.im, j.pb[b%2][off:off+nr*kc], o.b, c, min(nr, o.n-c), pc, kc, nr)
}

// compute runs unit u of block b: one tile against one group of panels.
func (j *gemmJob) compute(w, b, u int) {
	im := j.im
	mr, nr := im.mr, im.nr
	i0, rows, t0, nc, pc, kc := j.block(b)
	mp := (rows + mr - 1) / mr
	g, tt := u/nc, u%nc
	o, c := j.tileOf(t0 + tt)
	nn := min(nr, o.n-c)
	bp := &j.pb[b%2][tt*nr*kc]
	tile := j.tiles[w*mr*nr : (w+1)*mr*nr]
	for p := g * j.gp; p < min((g+1)*j.gp, mp); p++ {
		r := p * mr
		mm := min(mr, rows-r)
		ap := &j.pa[b%2][r*kc]
		d := (i0+r)*o.ldc + c
		if mm == mr && nn == nr {
			im.kernel(kc, ap, bp, &o.dst[d], o.ldc, pc > 0)
			continue
		}
		// Ragged edge: compute the full tile aside, keep the valid part.
		im.kernel(kc, ap, bp, &tile[0], nr, false)
		for i := 0; i < mm; i++ {
			row := o.dst[d+i*o.ldc : d+i*o.ldc+nn]
			src := tile[i*nr : i*nr+nn]
			if pc > 0 {
				for x, v := range src {
					row[x] += v
				}
			} else {
				copy(row, src)
			}
		}
	}
}

// pack copies rows [r0, r0+rn) x columns [p0, p0+kc) of o into buf as micro-panels
// of blk rows, each stored column by column (p-major), zero-padding the last panel.
// bf16 is widened here, so the micro-kernel only ever sees float32.
func pack(im *impl, buf []float32, o operand, r0, rn, p0, kc, blk int) {
	for r := 0; r < rn; r += blk {
		panel := buf[r*kc : (r+blk)*kc]
		n := min(blk, rn-r)
		if n < blk {
			clear(panel)
		}
		// Columns [0, p1) are transposed by packT, the rest by the loops below.
		p1 := 0
		shape := blk == 32 || blk == 12 && o.f32 != nil // packT's panels
		if kv := kc &^ 15; o.cs == 1 && n == blk && kv > 0 && shape && im.packT != nil {
			// Full panels of rows with contiguous k (MatMulT's weights and activations),
			// transposed 16x16 at a time in registers.
			if blk == 12 {
				im.packT(panel, o, (r0+r)*o.rs+p0, kv, 12)
			} else {
				im.packT(panel, o, (r0+r)*o.rs+p0, kv, 16)
				im.packT(panel[16:], o, (r0+r+16)*o.rs+p0, kv, 16)
			}
			if p1 = kv; p1 == kc {
				continue
			}
		}
		if o.f32 != nil && o.rs == 1 {
			// Columns are contiguous (MatMul's B, MatMulTN's A): copy them whole.
			for p := p1; p < kc; p++ {
				base := r0 + r + (p0+p)*o.cs
				copy(panel[p*blk:p*blk+n], o.f32[base:base+n])
			}
			continue
		}
		for i := 0; i < n; i++ {
			base := (r0+r+i)*o.rs + p0*o.cs
			switch {
			case o.f32 != nil && o.cs == 1:
				for p, v := range o.f32[base+p1 : base+kc] {
					panel[(p1+p)*blk+i] = v
				}
			case o.bf16 != nil && o.cs == 1:
				for p, v := range o.bf16[base+p1 : base+kc] {
					panel[(p1+p)*blk+i] = BF16ToFloat(v)
				}
			case o.f32 != nil:
				for p := p1; p < kc; p++ {
					panel[p*blk+i] = o.f32[base+p*o.cs]
				}
			default: // the half-precision operands, F16 strided or not
				for p := p1; p < kc; p++ {
					panel[p*blk+i] = o.at(base + p*o.cs)
				}
			}
		}
	}
}
