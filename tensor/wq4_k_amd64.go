//go:build amd64 && !purego

package tensor

import "golang.org/x/sys/cpu"

//go:noescape
func dotQ4_KAVX2(row *byte, x *float32, nb int) float32

//go:noescape
func dotQ4_KAVX512(row *byte, x *float32, nb int) float32

//go:noescape
func dequantQ4_KAVX512(dst *float32, src *byte, nb int)

func init() {
	switch {
	case cpu.X86.HasAVX512F && cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C:
		BlockQ4_K.Dot = dotQ4_KFast512
		BlockQ4_K.Dequant = dequantQ4_KFast512
	case cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C:
		BlockQ4_K.Dot = dotQ4_KFast
	}
}

// dotQ4_KFast is DotQ4_K in one AVX2 kernel call.
func dotQ4_KFast(row []byte, x []float32) float32 {
	nb := checkBlocks("DotQ4_K", len(x), kBlock, 144, len(row))
	if nb == 0 {
		return 0
	}
	return dotQ4_KAVX2(&row[0], &x[0], nb)
}

// dotQ4_KFast512 is DotQ4_K in one AVX-512 kernel call (16 values a step).
func dotQ4_KFast512(row []byte, x []float32) float32 {
	nb := checkBlocks("DotQ4_K", len(x), kBlock, 144, len(row))
	if nb == 0 {
		return 0
	}
	return dotQ4_KAVX512(&row[0], &x[0], nb)
}

// dequantQ4_KFast512 is DequantQ4_K in one AVX-512 kernel call.
func dequantQ4_KFast512(dst []float32, src []byte) {
	nb := checkBlocks("DequantQ4_K", len(dst), kBlock, 144, len(src))
	if nb == 0 {
		return
	}
	dequantQ4_KAVX512(&dst[0], &src[0], nb)
}
