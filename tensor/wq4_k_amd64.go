//go:build amd64 && !purego

package tensor

import "golang.org/x/sys/cpu"

//go:noescape
func dotQ4_KAVX2(row *byte, x *float32, nb int) float32

//go:noescape
func dotQ4_KAVX512(row *byte, x *float32, nb int) float32

func init() {
	switch {
	case cpu.X86.HasAVX512F && cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C:
		BlockQ4_K.Dot = dotQ4_KFast512
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
