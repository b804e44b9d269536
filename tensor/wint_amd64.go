//go:build amd64 && !purego

package tensor

import "golang.org/x/sys/cpu"

//go:noescape
func dotQ4_KQ8AVX2(row *byte, qs *int8, d *float32, sums *int16, nb int) float32

//go:noescape
func dotQ6_KQ8AVX2(row *byte, qs *int8, d *float32, sums *int16, nb int) float32

//go:noescape
func dotQ5_KQ8AVX2(row *byte, qs *int8, d *float32, sums *int16, nb int) float32

//go:noescape
func dotQ8_0Q8AVX2(row *byte, qs *int8, d *float32, nb int) float32

//go:noescape
func dotQ4_0Q8AVX2(row *byte, qs *int8, d *float32, nb int) float32

//go:noescape
func dotQ5_0Q8AVX2(row *byte, qs *int8, d *float32, nb int) float32

//go:noescape
func dotQ5_0Q8VNNI(row *byte, qs *int8, d *float32, nb int) float32

//go:noescape
func dotQ4_1Q8AVX2(row *byte, qs *int8, d *float32, sums *int16, nb int) float32

//go:noescape
func dotQ4_1Q8VNNI(row *byte, qs *int8, d *float32, sums *int16, nb int) float32

//go:noescape
func dotQ5_1Q8AVX2(row *byte, qs *int8, d *float32, sums *int16, nb int) float32

//go:noescape
func dotQ5_1Q8VNNI(row *byte, qs *int8, d *float32, sums *int16, nb int) float32

//go:noescape
func quantizeActQ8_KAVX512(x *float32, qs *int8, d *float32, sums *int16, nb int)

//go:noescape
func quantizeActQ8_0AVX512(x *float32, qs *int8, d *float32, nb int)

//go:noescape
func dotQ4_KQ8VNNI(row *byte, qs *int8, d *float32, sums *int16, nb int) float32

//go:noescape
func dotQ6_KQ8VNNI(row *byte, qs *int8, d *float32, sums *int16, nb int) float32

//go:noescape
func dotQ5_KQ8VNNI(row *byte, qs *int8, d *float32, sums *int16, nb int) float32

//go:noescape
func dotQ8_0Q8VNNI(row *byte, qs *int8, d *float32, nb int) float32

//go:noescape
func dotQ8_0Q8Rows4VNNI(dst *float32, rows *byte, stride int, qs *int8, d *float32, nb int)

//go:noescape
func dotQ4_0Q8VNNI(row *byte, qs *int8, d *float32, nb int) float32

// hasInt8AVX2: the integer kernels need AVX2 and F16C (the weights' half-precision
// scales).
var hasInt8AVX2 = cpu.X86.HasAVX2 && cpu.X86.HasF16C

// hasInt8VNNI: the AVX-512 kernels use VPDPBUSD (VNNI), byte masks (BW) and the
// 256-bit forms of EVEX instructions (VL).
var hasInt8VNNI = hasInt8AVX2 && cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL && cpu.X86.HasAVX512VNNI

// intKernel is one assembly integer dot of a format's blocks against its activation row:
// the portable dot's name (for checkBlocks' panics), the values and bytes of a block, the
// activation code sums the kernel reads a block (16: Q8_K's sums of 16 codes; 1: a 32-value
// block's; 0: none) and the kernel, with (k5) or without (k4) the sums; rows4, where set,
// is k4 over the four rows at row+j·stride at once, with k4's bits for each.
type intKernel struct {
	name      string
	per, size int
	sums      int
	k4        func(row *byte, qs *int8, d *float32, nb int) float32
	k5        func(row *byte, qs *int8, d *float32, sums *int16, nb int) float32
	rows4     func(dst *float32, row *byte, stride int, qs *int8, d *float32, nb int)
}

var (
	q4KAVX2  = &intKernel{"dotQ4_KQ8", kBlock, 144, 16, nil, dotQ4_KQ8AVX2, nil}
	q5KAVX2  = &intKernel{"dotQ5_KQ8", kBlock, 176, 16, nil, dotQ5_KQ8AVX2, nil}
	q6KAVX2  = &intKernel{"dotQ6_KQ8", kBlock, 210, 16, nil, dotQ6_KQ8AVX2, nil}
	q8_0AVX2 = &intKernel{"dotQ8_0Q8", 32, 34, 0, dotQ8_0Q8AVX2, nil, nil}
	q4_0AVX2 = &intKernel{"dotQ4_0Q8", 32, 18, 0, dotQ4_0Q8AVX2, nil, nil}
	q5_0AVX2 = &intKernel{"dotQ5_0Q8", 32, 22, 0, dotQ5_0Q8AVX2, nil, nil}
	q4_1AVX2 = &intKernel{"dotQ4_1Q8", 32, 20, 1, nil, dotQ4_1Q8AVX2, nil}
	q5_1AVX2 = &intKernel{"dotQ5_1Q8", 32, 24, 1, nil, dotQ5_1Q8AVX2, nil}

	q4KVNNI  = &intKernel{"dotQ4_KQ8", kBlock, 144, 16, nil, dotQ4_KQ8VNNI, nil}
	q5KVNNI  = &intKernel{"dotQ5_KQ8", kBlock, 176, 16, nil, dotQ5_KQ8VNNI, nil}
	q6KVNNI  = &intKernel{"dotQ6_KQ8", kBlock, 210, 16, nil, dotQ6_KQ8VNNI, nil}
	q8_0VNNI = &intKernel{"dotQ8_0Q8", 32, 34, 0, dotQ8_0Q8VNNI, nil, dotQ8_0Q8Rows4VNNI}
	q4_0VNNI = &intKernel{"dotQ4_0Q8", 32, 18, 0, dotQ4_0Q8VNNI, nil, nil}
	q5_0VNNI = &intKernel{"dotQ5_0Q8", 32, 22, 0, dotQ5_0Q8VNNI, nil, nil}
	q4_1VNNI = &intKernel{"dotQ4_1Q8", 32, 20, 1, nil, dotQ4_1Q8VNNI, nil}
	q5_1VNNI = &intKernel{"dotQ5_1Q8", 32, 24, 1, nil, dotQ5_1Q8VNNI, nil}
)

func init() {
	install := func(f *BlockFormat, k *intKernel) {
		f.dotAct, f.dotActRows, f.dotActQuarters = k.dot, k.dotRows, k.quarters
	}
	if hasInt8AVX2 {
		install(&BlockQ4_K, q4KAVX2)
		install(&BlockQ5_K, q5KAVX2)
		install(&BlockQ6_K, q6KAVX2)
		install(&BlockQ8_0, q8_0AVX2)
		install(&BlockQ4_0, q4_0AVX2)
		install(&BlockQ5_0, q5_0AVX2)
		install(&BlockQ4_1, q4_1AVX2)
		install(&BlockQ5_1, q5_1AVX2)
	}
	if hasInt8VNNI {
		quantizeActQ8_K = quantizeActQ8_KFast
		quantizeActQ8_0 = quantizeActQ8_0Fast
		install(&BlockQ4_K, q4KVNNI)
		install(&BlockQ5_K, q5KVNNI)
		install(&BlockQ6_K, q6KVNNI)
		install(&BlockQ8_0, q8_0VNNI)
		install(&BlockQ4_0, q4_0VNNI)
		install(&BlockQ5_0, q5_0VNNI)
		install(&BlockQ4_1, q4_1VNNI)
		install(&BlockQ5_1, q5_1VNNI)
	}
}

// blocks checks a row of rb bytes against a and returns its number of blocks.
func (k *intKernel) blocks(rb int, a actRow) int {
	nb := checkBlocks(k.name, len(a.Qs), k.per, k.size, rb)
	if nb > 0 {
		_ = a.D[nb-1]
		if k.sums > 0 {
			_ = a.Sums[k.sums*nb-1]
		}
	}
	return nb
}

// dot is the kernel as a BlockFormat's dotAct: one row.
func (k *intKernel) dot(row []byte, a actRow) float32 {
	nb := k.blocks(len(row), a)
	if nb == 0 {
		return 0
	}
	if k.k5 != nil {
		return k.k5(&row[0], &a.Qs[0], &a.D[0], &a.Sums[0], nb)
	}
	return k.k4(&row[0], &a.Qs[0], &a.D[0], nb)
}

// dotRows is the kernel as a BlockFormat's dotActRows: dst[r] is row r of rows (rb bytes
// each), checked once for them all: a decode step's rows can be short (576 values for
// SmolLM2), and a check and a call through dotAct per row then cost a third of the
// kernel's time.
func (k *intKernel) dotRows(dst []float32, rows []byte, rb int, a actRow) {
	if len(dst) == 0 {
		return
	}
	nb := k.blocks(rb, a)
	if nb == 0 {
		clear(dst)
		return
	}
	_ = rows[len(dst)*rb-1]
	qs, d := &a.Qs[0], &a.D[0]
	if k.k5 != nil {
		sums := &a.Sums[0]
		for r := range dst {
			dst[r] = k.k5(&rows[r*rb], qs, d, sums, nb)
		}
		return
	}
	for r := range dst {
		dst[r] = k.k4(&rows[r*rb], qs, d, nb)
	}
}

// quarters is the kernel as a BlockFormat's dotActQuarters: rows i, q+i, 2q+i and
// 3q+i of rows (rb bytes each) for i < n, into the same places of dst, each row's
// bits k4's. Each call takes the next n rows of four streams, one through each quarter
// of a matrix: with rows4, the four rows in one loop that loads each activation vector
// once for them; without, the one-row kernel on each in turn, still four streams a core.
func (k *intKernel) quarters(dst []float32, rows []byte, rb, q, n int, a actRow) {
	if n <= 0 {
		return
	}
	nb := k.blocks(rb, a)
	_, _ = dst[3*q+n-1], rows[(3*q+n)*rb-1]
	if nb == 0 {
		for i := range n {
			dst[i], dst[q+i], dst[2*q+i], dst[3*q+i] = 0, 0, 0, 0
		}
		return
	}
	if k.rows4 == nil {
		qs, d := &a.Qs[0], &a.D[0]
		if k.k5 != nil {
			sums := &a.Sums[0]
			for i := range n {
				for j := range 4 {
					dst[j*q+i] = k.k5(&rows[(j*q+i)*rb], qs, d, sums, nb)
				}
			}
			return
		}
		for i := range n {
			for j := range 4 {
				dst[j*q+i] = k.k4(&rows[(j*q+i)*rb], qs, d, nb)
			}
		}
		return
	}
	var four [4]float32
	for i := range n {
		k.rows4(&four[0], &rows[i*rb], q*rb, &a.Qs[0], &a.D[0], nb)
		dst[i], dst[q+i], dst[2*q+i], dst[3*q+i] = four[0], four[1], four[2], four[3]
	}
}

// quantizeActQ8_KFast is quantizeActQ8_KGo in one AVX-512 kernel call.
func quantizeActQ8_KFast(r actRow, x []float32) {
	nb := len(x) / kBlock
	if nb == 0 {
		return
	}
	_, _, _ = r.Qs[nb*kBlock-1], r.D[nb-1], r.Sums[16*nb-1]
	quantizeActQ8_KAVX512(&x[0], &r.Qs[0], &r.D[0], &r.Sums[0], nb)
}

// quantizeActQ8_0Fast is quantizeActQ8_0Go in one AVX-512 kernel call.
func quantizeActQ8_0Fast(r actRow, x []float32) {
	nb := len(x) / 32
	if nb == 0 {
		return
	}
	_, _ = r.Qs[nb*32-1], r.D[nb-1]
	quantizeActQ8_0AVX512(&x[0], &r.Qs[0], &r.D[0], nb)
}
