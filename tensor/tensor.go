// Package tensor provides the dense float32 kernels every other package runs on:
// matrix products against weight matrices (float32 or bf16), dot and axpy for
// attention, RMSNorm, softmax, SiLU, and a worker pool sized to the cores.
package tensor

import (
	"fmt"
	"math"
	"sync"
)

// MatMulT computes dst[m, w.Rows] = x[m, w.Cols] · wᵀ: a Linear layer without bias,
// for m tokens at once (m = 1 is a matrix-vector product). It panics if a slice is
// shorter than the shapes say, as copy-like kernels do on a caller's bug.
func MatMulT(dst, x []float32, m int, w *Mat) { MatMulTs(x, m, Proj{Dst: dst, W: w}) }

// Proj is one product of MatMulTs: Dst[m, W.Rows] = x[m, W.Cols] · Wᵀ.
type Proj struct {
	Dst []float32
	W   *Mat
}

// MatMulTs computes several products of the same x at once (a layer's Q, K and V
// projections, or its gate and up projections): one job whose parts split the rows of
// all the weight matrices together, so that a layer's projections cost one hand-off
// to the workers instead of one each. Every W must have x's width.
func MatMulTs(x []float32, m int, ps ...Proj) {
	for len(ps) > maxOuts {
		MatMulTs(x, m, ps[:maxOuts]...)
		ps = ps[maxOuts:]
	}
	if len(ps) == 0 {
		return
	}
	k := ps[0].W.Cols
	weights := 0
	for _, p := range ps {
		w := p.W
		n := w.Rows
		if w.Cols != k || len(x) < m*k || len(p.Dst) < m*n {
			panic(fmt.Sprintf("tensor.MatMulT: m=%d, w %dx%d needs x's width %d, len(x) ≥ %d, len(dst) ≥ %d; have %d, %d",
				m, n, w.Cols, k, m*w.Cols, m*n, len(x), len(p.Dst)))
		}
		if w.Block != nil {
			if k%w.Block.Values != 0 || len(w.Blocks) < n*w.Block.RowBytes(k) {
				panic(fmt.Sprintf("tensor.MatMulT: %s w %dx%d needs whole blocks and %d bytes; have %d",
					w.Block.Name, n, k, n*w.Block.RowBytes(k), len(w.Blocks)))
			}
		} else if n*k > 0 && ((w.F32 == nil) == (w.BF16 == nil) || len(w.F32)+len(w.BF16) < n*k) {
			panic(fmt.Sprintf("tensor.MatMulT: w %dx%d needs exactly one of F32, BF16 with ≥ %d values; have %d, %d",
				n, k, n*k, len(w.F32), len(w.BF16)))
		}
		weights += n * k
	}
	if m == 0 {
		return
	}
	if m > smallM && k > 0 {
		var outs [maxOuts]gemmOut
		no := 0
		for _, p := range ps {
			w := p.W
			if w.Block != nil {
				matMulBlocks(x, m, p)
				continue
			}
			outs[no] = gemmOut{b: operand{f32: w.F32, bf16: w.BF16, rs: k, cs: 1}, n: w.Rows, dst: p.Dst, ldc: w.Rows}
			no++
		}
		if no > 0 {
			gemm(active, threads, m, k, operand{f32: x, rs: k, cs: 1}, outs[:no]...)
		}
		return
	}
	// Decode: memory-bound, so stream each weight row once through the multi-row
	// matrix-vector kernel, in units of mvUnit rows.
	if t := pool.lock(m * weights / mvPart); t > 1 {
		j := &pool.mv
		j.set(x, m, ps)
		pool.run(j, t)
		j.x, j.outs = nil, [maxOuts]Proj{}
		pool.finish()
		return
	}
	j := inlineJobs.Get().(*matvecJob)
	j.set(x, m, ps)
	for u := range j.Units(0) {
		j.Do(0, 0, u)
	}
	j.x, j.outs = nil, [maxOuts]Proj{}
	inlineJobs.Put(j)
}

// inlineJobs keep the buffers of matrix-vector products run on the calling goroutine
// (one thread, or the pool busy with another caller), so that decode does not
// allocate them at every product.
var inlineJobs = sync.Pool{New: func() any { return new(matvecJob) }}

// Products of up to smallM rows of x go through the matrix-vector kernel: a unit is
// mvUnit weight rows against every row of x, so that the rows stay in L1 or L2 for the
// next row of x, instead of packing the whole weight matrix for the GEMM, which costs
// more than the products themselves for a few rows (BenchmarkMatMulTRows: the GEMM
// overtakes between 16 and 32 rows). A part gets at least mvPart multiply-adds. smallM
// is a variable so that the benchmark can compare the two routes.
var smallM = 16

const (
	mvUnit = 8
	mvPart = 1 << 14
	// mvRowsUnit is the unit of a format with a several-row dot (dotRows), which
	// reads a unit as four streams of a quarter each: eight rows a stream, so that
	// a stream runs on through several pages (BenchmarkMatVecLlama1BF16).
	mvRowsUnit = 32
	// mvMinStream is the fewest bytes a stream of such a unit must run through for
	// the several-row dot to pay. On a 2-core AMD EPYC VM, with an earlier F16 kernel,
	// F16 rows of 576 values (9 KB streams) read 30% slower than one row after another
	// and 2048 (32 KB) 15% faster; on a Sapphire Rapids Xeon, like the reference
	// machine, SmolLM2's F16 decode is 18-21% faster with its 9 KB streams (one and two
	// threads, docs/PERFORMANCE.md).
	mvMinStream = 8 << 10
)

// rowsDot is w's several-row dot where the matrix-vector route takes it, else nil.
func rowsDot(w *Mat) func(dst []float32, rows []byte, rb int, x []float32) {
	if w.Block == nil || w.Block.RowBytes(w.Cols)*mvRowsUnit/4 < mvMinStream {
		return nil
	}
	return w.Block.dotRows
}

// quartered reports whether w's rows go through dotActQuarters: unit u of w is then
// rows [u·mvUnit, (u+1)·mvUnit) of each quarter of w, so that a part, which takes
// consecutive units, reads four streams each through a whole quarter (one row after
// another is one stream a core, short of lines in flight). A unit's own quarters, as
// F16 takes them, made streams too short for Q8_0's rows: 0.58x on 2048 values.
func quartered(w *Mat) bool {
	return w.Block != nil && w.Block.dotActQuarters != nil && w.Cols >= mvQuarterCols && w.Rows%4 == 0
}

// mvQuarterCols is the fewest values a row must have for dotActQuarters to pay. Q8_0
// from memory, one thread (BenchmarkMatVecQ8_0Quarters): on a 2-core AMD EPYC VM, rows of
// 2048 values 1.14x, 4096 1.20x, 8192 1.28x, 14336 1.6-2.1x; on a Sapphire Rapids Xeon,
// whose one stream a core reads 6.6-8.8 GB/s, SmolLM2's rows of 576 values 1.9-2.0x and
// 2048 1.6x. A variable so that the benchmark can take the route at any length.
var mvQuarterCols = 512

// unitRows is the rows of w in a unit of matvecJob.
func unitRows(w *Mat) int {
	if rowsDot(w) != nil || quartered(w) {
		return mvRowsUnit
	}
	return mvUnit
}

// matvecJob is MatMulTs at m ≤ smallM: one phase whose units are the products' runs
// of mvUnit rows, in order.
type matvecJob struct {
	im    *impl
	x     []float32
	m     int
	outs  [maxOuts]Proj
	nout  int
	units [maxOuts + 1]int // prefix sums of the products' units
	xd    []float32        // x prepared for the bf16 kernel, [m, k]
	// x in the forms the block formats' dotAct want (wint.go), by kind
	act [actKinds]actRows
}

func (j *matvecJob) set(x []float32, m int, ps []Proj) {
	j.im, j.x, j.m, j.nout = active, x, m, copy(j.outs[:], ps)
	bf16 := false
	var converted [actKinds]bool
	k := ps[0].W.Cols
	for i, p := range ps {
		u := unitRows(p.W)
		j.units[i+1] = j.units[i] + (p.W.Rows+u-1)/u
		bf16 = bf16 || p.W.BF16 != nil
		// Once per call, not per weight row: the parts share the converted rows.
		if b := p.W.Block; b != nil && b.dotAct != nil && !converted[b.act] {
			converted[b.act] = true
			j.act[b.act].set(b.act, x, m, k)
		}
	}
	if bf16 {
		j.xd = grow(j.xd, m*k)
		for i := range m {
			j.im.prepBF16(j.xd[i*k:(i+1)*k], x[i*k:(i+1)*k])
		}
	}
}

func (j *matvecJob) Phases() int   { return 1 }
func (j *matvecJob) Units(int) int { return j.units[j.nout] }

func (j *matvecJob) Do(_, _, u int) {
	o := 0
	for u >= j.units[o+1] {
		o++
	}
	p := &j.outs[o]
	wm := p.W
	rows, k := wm.Rows, wm.Cols
	a := (u - j.units[o]) * unitRows(wm)
	b := min(a+unitRows(wm), rows)
	if quartered(wm) {
		// The unit's mvUnit rows of the first quarter start at first.
		rb, q := wm.Block.RowBytes(k), rows/4
		first := (u - j.units[o]) * mvUnit
		acts := &j.act[wm.Block.act]
		for i := 0; i < j.m; i++ {
			wm.Block.dotActQuarters(p.Dst[i*rows+first:(i+1)*rows], wm.Blocks[first*rb:rows*rb], rb, q, min(mvUnit, q-first), acts.row(i))
		}
		return
	}
	if wm.Block != nil {
		rb := wm.Block.RowBytes(k)
		if dot := wm.Block.dotAct; dot != nil {
			q := &j.act[wm.Block.act]
			if dots := wm.Block.dotActRows; dots != nil {
				for i := 0; i < j.m; i++ {
					dots(p.Dst[i*rows+a:i*rows+b], wm.Blocks[a*rb:b*rb], rb, q.row(i))
				}
				return
			}
			for i := 0; i < j.m; i++ {
				xq, dst := q.row(i), p.Dst[i*rows+a:i*rows+b]
				for r := a; r < b; r++ {
					dst[r-a] = dot(wm.Blocks[r*rb:(r+1)*rb], xq)
				}
			}
			return
		}
		for i := 0; i < j.m; i++ {
			x, dst := j.x[i*k:(i+1)*k], p.Dst[i*rows+a:i*rows+b]
			if dots := rowsDot(wm); dots != nil {
				dots(dst, wm.Blocks[a*rb:b*rb], rb, x)
				continue
			}
			for r := a; r < b; r++ {
				dst[r-a] = wm.Block.Dot(wm.Blocks[r*rb:(r+1)*rb], x)
			}
		}
		return
	}
	for i := 0; i < j.m; i++ {
		x, dst := j.x[i*k:(i+1)*k], p.Dst[i*rows+a:i*rows+b]
		if wm.F32 != nil {
			j.im.matvec(dst, wm.F32[a*k:b*k], k, x)
		} else {
			j.im.matvecBF16(dst, wm.BF16[a*k:b*k], k, x, j.xd[i*k:(i+1)*k])
		}
	}
}

// MatMul computes dst[m, n] = a[m, k] · b[k, n], all row-major (in training: the
// gradient of a Linear layer's input, dY · W).
func MatMul(dst, a, b []float32, m, n, k int) {
	checkMatMul("MatMul", dst, a, b, m, n, k)
	gemm(active, threads, m, k, operand{f32: a, rs: k, cs: 1},
		gemmOut{b: operand{f32: b, rs: 1, cs: n}, n: n, dst: dst, ldc: n})
}

// MatMulTN computes dst[m, n] = aᵀ · b with a [k, m] and b [k, n] row-major (in
// training: the gradient of a Linear layer's weight, dYᵀ · X).
func MatMulTN(dst, a, b []float32, m, n, k int) {
	checkMatMul("MatMulTN", dst, a, b, m, n, k)
	gemm(active, threads, m, k, operand{f32: a, rs: 1, cs: m},
		gemmOut{b: operand{f32: b, rs: 1, cs: n}, n: n, dst: dst, ldc: n})
}

func checkMatMul(name string, dst, a, b []float32, m, n, k int) {
	if m < 0 || n < 0 || k < 0 || len(a) < m*k || len(b) < k*n || len(dst) < m*n {
		panic(fmt.Sprintf("tensor.%s: m=%d n=%d k=%d needs len(a) ≥ %d, len(b) ≥ %d, len(dst) ≥ %d; have %d, %d, %d",
			name, m, n, k, m*k, k*n, m*n, len(a), len(b), len(dst)))
	}
}

// Dot returns Σ a[i]·b[i] over len(a) elements.
func Dot(a, b []float32) float32 { return active.dot(a, b) }

// Axpy computes y += alpha·x over len(x) elements.
func Axpy(alpha float32, x, y []float32) {
	if len(x) < 2*elemPart {
		active.axpy(alpha, x, y)
		return
	}
	elementwise(elementJob{op: opAxpy, x: x, y: y[:len(x)], alpha: alpha}, len(x))
}

// Sum returns Σ x[i], summed in blocks of elemPart elements added in order, so that
// the result does not depend on the thread count. A large x is read by all threads
// (kvfoot bench measures the read bandwidth with it).
func Sum(x []float32) float32 {
	if len(x) < 2*elemPart {
		return active.sum(x)
	}
	sums := make([]float32, (len(x)+elemPart-1)/elemPart)
	elementwise(elementJob{op: opSum, x: x, y: sums}, len(x))
	var s float32
	for _, v := range sums {
		s += v
	}
	return s
}

// RMSNorm writes x / sqrt(mean(x²) + eps) · weight into dst (dst may alias x).
func RMSNorm(dst, x, weight []float32, eps float32) { rmsNorm(dst, x, weight, eps) }

// RMSNormRows is RMSNorm of each of the n rows of len(weight) values of x into dst.
func RMSNormRows(dst, x, weight []float32, eps float32, n int) {
	h := len(weight)
	x, dst = x[:n*h], dst[:n*h]
	if n*h < 2*elemPart {
		for i := 0; i < n; i++ {
			rmsNorm(dst[i*h:(i+1)*h], x[i*h:(i+1)*h], weight, eps)
		}
		return
	}
	elementwise(elementJob{op: opRMSNorm, x: x, y: dst, w: weight, eps: eps, rows: n}, n*h)
}

// elemPart is the fewest elements worth a part of an element-wise job.
const elemPart = 1 << 13

type elemOp uint8

const (
	opAxpy elemOp = iota
	opSiLUMul
	opRMSNorm
	opSum        // y[u] = Σ of unit u's elements of x
	opRoPETables // rows of cos (x) and sin (y) for the inverse frequencies w
	opRotateHalf // rows of x rotated by cos (w) and sin (y), sign alpha
)

// elementJob is an element-wise kernel over x and y (and the RMSNorm weights w), in
// units of elemPart elements (of whole rows for RMSNorm and the rotary ops).
type elementJob struct {
	op         elemOp
	x, y, w    []float32
	alpha, eps float32
	rows, pos  int
}

// elementwise runs j on the pool's workers, or inline.
func elementwise(j elementJob, size int) {
	if t := pool.lock(size / elemPart); t > 1 {
		pool.el = j
		pool.run(&pool.el, t)
		pool.el = elementJob{}
		pool.finish()
		return
	}
	for u := range j.Units(0) {
		j.Do(0, 0, u)
	}
}

// rowsPer is the rows of a unit of the row-wise ops.
func (j *elementJob) rowsPer() int {
	switch j.op {
	case opRMSNorm:
		return max(1, elemPart/len(j.w))
	case opRoPETables:
		return max(1, elemPart/8/len(j.w))
	}
	return max(1, elemPart*j.rows/len(j.x))
}

func (j *elementJob) rowWise() bool {
	return j.op == opRMSNorm || j.op == opRoPETables || j.op == opRotateHalf
}

func (j *elementJob) Phases() int { return 1 }

func (j *elementJob) Units(int) int {
	if j.rowWise() {
		return (j.rows + j.rowsPer() - 1) / j.rowsPer()
	}
	return (len(j.x) + elemPart - 1) / elemPart
}

func (j *elementJob) Do(_, _, u int) {
	if j.rowWise() {
		r := j.rowsPer()
		lo, hi := u*r, min((u+1)*r, j.rows)
		switch j.op {
		case opRMSNorm:
			h := len(j.w)
			for i := lo; i < hi; i++ {
				rmsNorm(j.y[i*h:(i+1)*h], j.x[i*h:(i+1)*h], j.w, j.eps)
			}
		case opRoPETables:
			j.ropeTables(lo, hi)
		case opRotateHalf:
			j.rotateHalf(lo, hi)
		}
		return
	}
	lo, hi := u*elemPart, min((u+1)*elemPart, len(j.x))
	switch j.op {
	case opAxpy:
		active.axpy(j.alpha, j.x[lo:hi], j.y[lo:hi])
	case opSiLUMul:
		active.siluMul(j.x[lo:hi], j.y[lo:hi])
	case opSum:
		j.y[u] = active.sum(j.x[lo:hi])
	}
}

func rmsNorm(dst, x, weight []float32, eps float32) {
	var ss float64
	for _, v := range x {
		ss += float64(v) * float64(v)
	}
	scale := float32(1 / math.Sqrt(ss/float64(len(x))+float64(eps)))
	for i, v := range x {
		dst[i] = v * scale * weight[i]
	}
}

// Softmax replaces x by softmax(x), computed stably.
func Softmax(x []float32) {
	if len(x) == 0 {
		return
	}
	mx := x[0]
	for _, v := range x[1:] {
		if v > mx {
			mx = v
		}
	}
	inv := 1 / active.expSum(x, mx)
	for i := range x {
		x[i] *= inv
	}
}

// SiLUMul computes gate[i] = silu(gate[i]) · up[i], the SwiGLU activation.
//
// silu(g) = g·σ(g) with σ from e = exp(-|g|) ≤ 1: σ(g) = 1/(1+e) for g ≥ 0,
// e/(1+e) below, so nothing overflows whatever g.
func SiLUMul(gate, up []float32) {
	up = up[:len(gate)]
	if len(gate) < 2*elemPart {
		active.siluMul(gate, up)
		return
	}
	elementwise(elementJob{op: opSiLUMul, x: gate, y: up}, len(gate))
}

func abs32(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ (1 << 31)) }

// BF16ToFloat widens one bf16 value.
func BF16ToFloat(b uint16) float32 { return math.Float32frombits(uint32(b) << 16) }

// BF16ToFloats widens src into dst[:len(src)].
func BF16ToFloats(dst []float32, src []uint16) { active.bf16ToF32(dst, src) }

// FloatToBF16 rounds to the nearest bf16, ties to even; NaN stays NaN.
func FloatToBF16(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 {
		return uint16(u>>16) | 0x40
	}
	return uint16((u + 0x7fff + (u>>16)&1) >> 16)
}
