//go:build amd64 && !purego

package tensor

import "golang.org/x/sys/cpu"

//go:noescape
func dotQ4_0AVX2(row *byte, x *float32, nb int) float32

func init() {
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C {
		BlockQ4_0.Dot = dotQ4_0Fast
	}
}

// dotQ4_0Fast is DotQ4_0 in one AVX2 kernel call.
func dotQ4_0Fast(row []byte, x []float32) float32 {
	nb := checkBlocks("DotQ4_0", len(x), 32, 18, len(row))
	if nb == 0 {
		return 0
	}
	return dotQ4_0AVX2(&row[0], &x[0], nb)
}
