//go:build amd64 && !purego

package tensor

import "golang.org/x/sys/cpu"

//go:noescape
func dotQ6_KAVX2(row *byte, x *float32, nb int) float32

//go:noescape
func dotQ6_KAVX512(row *byte, x *float32, nb int) float32

//go:noescape
func dequantQ6_KAVX512(dst *float32, src *byte, nb int)

func init() {
	switch {
	case cpu.X86.HasAVX512F && cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C:
		BlockQ6_K.Dot = dotQ6_KFast512
		BlockQ6_K.Dequant = dequantQ6_KFast512
	case cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C:
		BlockQ6_K.Dot = dotQ6_KFast
	}
}

// dotQ6_KFast is DotQ6_K in one AVX2 kernel call.
func dotQ6_KFast(row []byte, x []float32) float32 {
	nb := checkBlocks("DotQ6_K", len(x), kBlock, 210, len(row))
	if nb == 0 {
		return 0
	}
	return dotQ6_KAVX2(&row[0], &x[0], nb)
}

// dotQ6_KFast512 is DotQ6_K in one AVX-512 kernel call (16 values a step).
func dotQ6_KFast512(row []byte, x []float32) float32 {
	nb := checkBlocks("DotQ6_K", len(x), kBlock, 210, len(row))
	if nb == 0 {
		return 0
	}
	return dotQ6_KAVX512(&row[0], &x[0], nb)
}

// dequantQ6_KFast512 is DequantQ6_K in one AVX-512 kernel call.
func dequantQ6_KFast512(dst []float32, src []byte) {
	nb := checkBlocks("DequantQ6_K", len(dst), kBlock, 210, len(src))
	if nb == 0 {
		return
	}
	dequantQ6_KAVX512(&dst[0], &src[0], nb)
}
