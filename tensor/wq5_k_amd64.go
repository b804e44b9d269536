//go:build amd64 && !purego

package tensor

import "golang.org/x/sys/cpu"

//go:noescape
func dotQ5_KAVX2(row *byte, x *float32, nb int) float32

func init() {
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C {
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
