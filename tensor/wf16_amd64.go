//go:build amd64 && !purego

package tensor

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/cpu"
)

//go:noescape
func dotF16AVX2(row *byte, x *float32, n int) float32

//go:noescape
func dotF16AVX512(row *byte, x *float32, n int) float32

//go:noescape
func dotF16Rows4AVX512(dst *float32, rows *byte, stride int, x *float32, n int)

//go:noescape
func dequantF16AVX2(dst *float32, src *byte, n int)

//go:noescape
func dequantF16AVX512(dst *float32, src *byte, n int)

func init() {
	switch {
	case cpu.X86.HasAVX512F && cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C:
		BlockF16.Dot, BlockF16.Dequant = dotF16Fast512, dequantF16Fast512
		BlockF16.dotRows = dotF16Rows512
	case cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C:
		BlockF16.Dot, BlockF16.Dequant = dotF16Fast, dequantF16Fast
	}
}

// dotF16Fast is DotF16 with the values widened by F16C eight at a time (VCVTPH2PS
// is exact) and multiplied-added into four accumulators; the last n % 8 in Go.
func dotF16Fast(row []byte, x []float32) float32 { return dotF16Vec(row, x, 8, dotF16AVX2) }

// dotF16Fast512 is the same with AVX-512, sixteen values at a time; n % 16 in Go.
func dotF16Fast512(row []byte, x []float32) float32 {
	return dotF16Vec(row, x, 16, dotF16AVX512)
}

// dotF16Rows512 is dotF16Fast512 over len(dst) rows of rb bytes. The rows are read
// as four streams at once, each through a contiguous quarter of the rows (row i of
// each quarter in one kernel call, so that a stream goes on where its last row ended,
// across pages, as the hardware prefetchers follow it), and each x vector is loaded
// once for the four. One stream a core, as one row after another is, leaves the core
// short of lines in flight on a server part; llama.cpp's tinyBLAS takes several rows
// a tile too. Each row's sum is made in dotF16Fast512's order: the same bits.
func dotF16Rows512(dst []float32, rows []byte, rb int, x []float32) {
	n := checkBlocks("DotF16", len(x), 1, 2, rb)
	if len(rows) < len(dst)*rb {
		panic(fmt.Sprintf("tensor.DotF16: %d rows of %d bytes, have %d bytes", len(dst), rb, len(rows)))
	}
	body := n / 16 * 16
	q := len(dst) / 4
	if body == 0 {
		q = 0
	}
	var four [4]float32
	for i := range q {
		dotF16Rows4AVX512(&four[0], &rows[i*rb], q*rb, &x[0], body)
		for j, s := range four {
			row := rows[(j*q+i)*rb:]
			for c := body; c < n; c++ {
				s += F16ToFloat(binary.LittleEndian.Uint16(row[2*c:])) * x[c]
			}
			dst[j*q+i] = s
		}
	}
	for r := 4 * q; r < len(dst); r++ {
		dst[r] = dotF16Fast512(rows[r*rb:(r+1)*rb], x)
	}
}

func dotF16Vec(row []byte, x []float32, width int, kernel func(*byte, *float32, int) float32) float32 {
	n := checkBlocks("DotF16", len(x), 1, 2, len(row))
	body := n / width * width
	var s float32
	if body > 0 {
		s = kernel(&row[0], &x[0], body)
	}
	for i := body; i < n; i++ {
		s += F16ToFloat(binary.LittleEndian.Uint16(row[2*i:])) * x[i]
	}
	return s
}

// dequantF16Fast is DequantF16 eight values a step with F16C (exact, as the portable
// widening); the last n % 8 in Go.
func dequantF16Fast(dst []float32, src []byte) { dequantF16Vec(dst, src, 8, dequantF16AVX2) }

// dequantF16Fast512 is the same sixteen values a step with AVX-512.
func dequantF16Fast512(dst []float32, src []byte) {
	dequantF16Vec(dst, src, 16, dequantF16AVX512)
}

func dequantF16Vec(dst []float32, src []byte, width int, kernel func(*float32, *byte, int)) {
	n := checkBlocks("DequantF16", len(dst), 1, 2, len(src))
	body := n / width * width
	if body > 0 {
		kernel(&dst[0], &src[0], body)
	}
	for i := body; i < n; i++ {
		dst[i] = F16ToFloat(binary.LittleEndian.Uint16(src[2*i:]))
	}
}
