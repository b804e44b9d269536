package tensor

import (
	"fmt"
	"sync"
	"unsafe"
)

// NewBlockMat is a rows x cols matrix of type t over data, checked: cols a multiple
// of the block's values and data exactly the rows' bytes.
func NewBlockMat(rows, cols int, t *BlockFormat, data []byte) (Mat, error) {
	switch {
	case rows < 0 || cols < 0:
		return Mat{}, fmt.Errorf("tensor: %s matrix %dx%d: negative size", t.Name, rows, cols)
	case cols%t.Values != 0:
		return Mat{}, fmt.Errorf("tensor: %s matrix %dx%d: a row of %d values is not a whole number of %d-value blocks", t.Name, rows, cols, cols, t.Values)
	case int64(len(data)) != int64(rows)*int64(t.RowBytes(cols)):
		return Mat{}, fmt.Errorf("tensor: %s matrix %dx%d: %d bytes, want %d", t.Name, rows, cols, len(data), int64(rows)*int64(t.RowBytes(cols)))
	}
	return Mat{Rows: rows, Cols: cols, Blocks: data, Block: t}, nil
}

// blockPanelBytes bounds the panel of weight rows widened at once for the GEMM, and
// blockPanel bounds its rows: panels of a few hundred rows give the GEMM enough
// columns to split between threads (64-row panels ran pre-fill of a Q4_K_M model at
// 2 threads 1.5x slower than 512-row ones), and 8 MiB keeps wide matrices' panels
// from growing past the caches.
const (
	blockPanel      = 512
	blockPanelBytes = 8 << 20
)

// panels holds widened weight panels between calls: a fresh 8 MiB panel a call costs its
// zeroing and page faults in every pre-fill's matrix product.
var panels sync.Pool

// f16PanelRows is the weight rows of one GEMM call on F16 weights: Llama-3.2-1B's
// pre-fill on two threads of a Sapphire Rapids VM ran 109-111 tokens/s at 1024, 101-104
// at 512 (docs/PERFORMANCE.md).
const f16PanelRows = 1024

// matMulBlocks computes dst[m, w.Rows] = x[m, w.Cols] · wᵀ for a block matrix and more
// than a few rows: panels of weight rows are widened (by all threads) and
// multiplied by the float32 GEMM, each row widened once per call.
func matMulBlocks(x []float32, m int, p Proj) {
	if matMulBlocksInt(x, m, p) {
		return
	}
	w := p.W
	k, rb := w.Cols, w.Block.RowBytes(w.Cols)
	if w.Block == &BlockF16 && active.packT != nil {
		// The GEMM's pack widens F16 as it transposes: no float32 copy to widen into and
		// pack again (20% of an F16 pre-fill). A call per f16PanelRows rows keeps a
		// block's packed weights in L2; one call for all rows (4096-column blocks) made
		// the GEMM's kernel 13% slower.
		f16 := unsafe.Slice((*uint16)(unsafe.Pointer(unsafe.SliceData(w.Blocks))), w.Rows*k)
		for r0 := 0; r0 < w.Rows; r0 += f16PanelRows {
			n := min(f16PanelRows, w.Rows-r0)
			gemm(active, threads, m, k, operand{f32: x, rs: k, cs: 1},
				gemmOut{b: operand{f16: f16[r0*k : (r0+n)*k], rs: k, cs: 1}, n: n, dst: p.Dst[r0:], ldc: w.Rows})
		}
		return
	}
	rows := max(16, min(blockPanel, blockPanelBytes/(4*max(k, 1)))/16*16)
	need := min(rows, w.Rows) * k
	pp, _ := panels.Get().(*[]float32)
	if pp == nil || cap(*pp) < need {
		pp = new([]float32)
		*pp = make([]float32, need)
	}
	defer panels.Put(pp)
	panel := (*pp)[:need]
	for r0 := 0; r0 < w.Rows; r0 += rows {
		n := min(rows, w.Rows-r0)
		parallelFor(threads, n, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				w.Block.Dequant(panel[r*k:(r+1)*k], w.Blocks[(r0+r)*rb:(r0+r+1)*rb])
			}
		})
		gemm(active, threads, m, k, operand{f32: x, rs: k, cs: 1},
			gemmOut{b: operand{f32: panel, rs: k, cs: 1}, n: n, dst: p.Dst[r0:], ldc: w.Rows})
	}
}
