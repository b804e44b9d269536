//go:build amd64 && !purego

package tensor

import "golang.org/x/sys/cpu"

//go:noescape
func dotQ5_KAVX2(row *byte, x *float32, nb int) float32

//go:noescape
func dotQ5_KAVX512(row *byte, x *float32, nb int) float32

func init() {
	switch {
	case cpu.X86.HasAVX512F && cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C:
		BlockQ5_K.Dot = dotQ5_KFast512
	case cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C:
		BlockQ5_K.Dot = dotQ5_KFast
	}
}

// dotQ5_KFast is DotQ5_K in one AVX2 kernel call.
func dotQ5_KFast(row []byte, x []float32) float32 {
	nb := checkBlocks("DotQ5_K", len(x), kBlock, 176, len(row))
	if nb == 0 {
		return 0
	}
	return dotQ5_KAVX2(&row[0], &x[0], nb)
}

// dotQ5_KFast512 is DotQ5_K in one AVX-512 kernel call (16 values a step).
func dotQ5_KFast512(row []byte, x []float32) float32 {
	nb := checkBlocks("DotQ5_K", len(x), kBlock, 176, len(row))
	if nb == 0 {
		return 0
	}
	return dotQ5_KAVX512(&row[0], &x[0], nb)
}
