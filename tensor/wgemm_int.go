package tensor

import (
	"math"
	"sync"
)

// Pre-fill on 8-bit integer products, as llama.cpp computes its quantized matrix-matrix
// products: each activation row is quantized once per product to 8 bits in the form the
// weight type's integer dot wants (wint.go), and a tile of weight rows x activation
// rows sums exact integer products per group of values, scaled into float32 by the
// weight row's and the activation row's scales of the group. The result is llama.cpp's
// scheme: value Σ_g d_w,g·d_a,g·Σ_{i∈g} q_w,i·q_a,i with the activations' codes and
// scales as the decode path's dotAct uses them, summed over g in float32 (not bit for
// bit its order). The float path (blocks.go) widens the weights instead and keeps x
// unquantized; this one is used where its kernels exist and it is faster
// (gemmIntFormat.minRows).

// A kernel call is gemmIntRows activation rows by gemmIntPanel weight rows.
const (
	gemmIntRows  = 6
	gemmIntPanel = 32
)

// gemmIntFormat is a block format's integer pre-fill (wgemm_int_amd64.go installs them
// where the CPU has the instructions).
type gemmIntFormat struct {
	// minRows is the fewest activation rows where it beats the float path.
	minRows int
	// group is the values a kernel's scales cover; meta the metadata an activation row
	// has per group (2: its starting integer sum and its scale; 3: and its min term).
	group, meta int
	// prepare writes activation row x's codes into qs and its metadata: field f of
	// group g at meta[(g·meta+f)·gemmIntRows] (meta starts at the row's place in its
	// tile), using scratch's D (k/32 floats) and Sums (k/16).
	prepare func(qs []int8, meta []uint32, x []float32, scratch actRow)
	// repack writes the panel of rows (n ≤ gemmIntPanel rows of rb bytes each; missing
	// rows repeat the last) as the kernel reads it: codes, and scales per group and
	// row, then for meta 3 the mins likewise.
	repack func(codes []byte, scales []float32, rows []byte, rb, n, k int)
	// kernel computes a tile: dst[c*ldc+r] for c < gemmIntRows, r < gemmIntPanel from
	// the tile's activation codes a (row c at a[c*lda:]), its metadata and a panel.
	kernel func(a []int8, lda int, meta []uint32, codes []byte, scales []float32, k int, dst []float32, ldc int)
}

// gemmInts are the formats with an integer pre-fill on this CPU.
var gemmInts = map[*BlockFormat]*gemmIntFormat{}

// gemmIntFor returns f's integer pre-fill if it exists and pays for m activation rows.
func gemmIntFor(f *BlockFormat, m int) *gemmIntFormat {
	if g := gemmInts[f]; g != nil && m >= g.minRows {
		return g
	}
	return nil
}

// gemmIntJob is one product: phase 0 quantizes the activation rows a tile a unit,
// phase 1 runs a weight panel a unit against every tile.
type gemmIntJob struct {
	g     *gemmIntFormat
	x     []float32
	m, k  int
	w     *Mat
	dst   []float32
	tiles int
	qs    []int8   // [tiles·gemmIntRows][k] activation codes, missing rows 0
	meta  []uint32 // [tiles][groups][g.meta][gemmIntRows]: starting sums, scales, min terms
	// per part: a row's activation scales and sums, a repacked panel and an edge tile
	d      [][]float32
	sums   [][]int16
	codes  [][]byte
	scales [][]float32
	edge   [][]float32
}

// gemmIntJobs keep the buffers between products.
var gemmIntJobs = sync.Pool{New: func() any { return new(gemmIntJob) }}

func (j *gemmIntJob) Phases() int { return 2 }

func (j *gemmIntJob) Units(ph int) int {
	if ph == 0 {
		return j.tiles
	}
	return (j.w.Rows + gemmIntPanel - 1) / gemmIntPanel
}

func (j *gemmIntJob) Do(w, ph, u int) {
	if ph == 0 {
		j.prepareTile(w, u)
	} else {
		j.panel(w, u)
	}
}

// metaStride is the metadata of one tile.
func (j *gemmIntJob) metaStride() int { return j.k / j.g.group * j.g.meta * gemmIntRows }

// prepareTile quantizes the activation rows of tile t.
func (j *gemmIntJob) prepareTile(w, t int) {
	k := j.k
	meta := j.meta[t*j.metaStride() : (t+1)*j.metaStride()]
	for c := range gemmIntRows {
		i := t*gemmIntRows + c
		qs := j.qs[i*k : (i+1)*k]
		if i >= j.m {
			clear(qs)
			for f := c; f < len(meta); f += gemmIntRows {
				meta[f] = 0
			}
			continue
		}
		j.g.prepare(qs, meta[c:], j.x[i*k:(i+1)*k], actRow{D: j.d[w], Sums: j.sums[w]})
	}
}

// panel repacks weight panel p and multiplies it by every tile.
func (j *gemmIntJob) panel(w, p int) {
	k, rows := j.k, j.w.Rows
	rb := j.w.Block.RowBytes(k)
	r0 := p * gemmIntPanel
	n := min(gemmIntPanel, rows-r0)
	codes, scales := j.codes[w], j.scales[w]
	j.g.repack(codes, scales, j.w.Blocks[r0*rb:(r0+n)*rb], rb, n, k)
	ms := j.metaStride()
	for t := range j.tiles {
		i0 := t * gemmIntRows
		a, meta := j.qs[i0*k:], j.meta[t*ms:(t+1)*ms]
		if mm := min(gemmIntRows, j.m-i0); mm < gemmIntRows || n < gemmIntPanel {
			edge := j.edge[w]
			j.g.kernel(a, k, meta, codes, scales, k, edge, gemmIntPanel)
			for c := range mm {
				copy(j.dst[(i0+c)*rows+r0:(i0+c)*rows+r0+n], edge[c*gemmIntPanel:])
			}
			continue
		}
		j.g.kernel(a, k, meta, codes, scales, k, j.dst[i0*rows+r0:], rows)
	}
}

// matMulBlocksInt computes p.Dst = x[m, k] · p.Wᵀ on integer products if p.W's format has
// them and they pay for m rows, and reports whether it did.
func matMulBlocksInt(x []float32, m int, p Proj) bool {
	g := gemmIntFor(p.W.Block, m)
	// The repacking gathers a panel's rows by int32 offsets.
	if g == nil || int64(gemmIntPanel)*int64(p.W.Block.RowBytes(p.W.Cols)) > math.MaxInt32 {
		return false
	}
	gemmIntRun(g, x, m, p)
	return true
}

// gemmIntRun computes p.Dst = x[m, k] · p.Wᵀ with g.
func gemmIntRun(g *gemmIntFormat, x []float32, m int, p Proj) {
	w := p.W
	if m == 0 || w.Rows == 0 {
		return
	}
	k := w.Cols
	t := threads
	// Below ~1 MFLOP a part costs more than it saves, as in gemm.
	if 2*m*w.Rows*k < 1<<20 {
		t = 1
	}
	j := gemmIntJobs.Get().(*gemmIntJob)
	defer gemmIntJobs.Put(j)
	t = pool.lock(t)
	j.set(g, x, m, w, p.Dst, t)
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
	j.x, j.w, j.dst = nil, nil, nil
}

func (j *gemmIntJob) set(g *gemmIntFormat, x []float32, m int, w *Mat, dst []float32, parts int) {
	k := w.Cols
	j.g, j.x, j.m, j.k, j.w, j.dst = g, x, m, k, w, dst
	j.tiles = (m + gemmIntRows - 1) / gemmIntRows
	j.qs = growInt8(j.qs, j.tiles*gemmIntRows*k)
	j.meta = growUint32(j.meta, j.tiles*j.metaStride())
	for len(j.d) < parts {
		j.d = append(j.d, nil)
		j.sums = append(j.sums, nil)
		j.codes = append(j.codes, nil)
		j.scales = append(j.scales, nil)
		j.edge = append(j.edge, make([]float32, gemmIntRows*gemmIntPanel))
	}
	for w := range parts {
		j.d[w] = grow(j.d[w], k/32)
		j.sums[w] = growInt16(j.sums[w], k/16)
		j.scales[w] = grow(j.scales[w], (g.meta-1)*gemmIntPanel*k/g.group)
		if cap(j.codes[w]) < gemmIntPanel*k {
			j.codes[w] = make([]byte, gemmIntPanel*k)
		}
		j.codes[w] = j.codes[w][:gemmIntPanel*k]
	}
}

func growUint32(s []uint32, n int) []uint32 {
	if cap(s) < n {
		return make([]uint32, n)
	}
	return s[:n]
}

// IntegerPrefill reports whether products of f's matrices with m rows of activations (a
// pre-fill's) run on this CPU on 8-bit integer products, with the activations quantized
// as llama.cpp quantizes them, rather than on widened weights and float activations.
func (f *BlockFormat) IntegerPrefill(m int) bool { return m > smallM && gemmIntFor(f, m) != nil }
