//go:build amd64 && !purego

package tensor

import "golang.org/x/sys/cpu"

//go:noescape
func dotQ8_0AVX2(row *byte, x *float32, nb int) float32

//go:noescape
func dotQ8_0AVX512(row *byte, x *float32, nb int) float32

func init() {
	switch {
	case cpu.X86.HasAVX512F && cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C:
		BlockQ8_0.Dot = dotQ8_0Fast512
	case cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C:
		BlockQ8_0.Dot = dotQ8_0Fast
	}
}

// dotQ8_0Fast is DotQ8_0 in one AVX2 kernel call.
func dotQ8_0Fast(row []byte, x []float32) float32 {
	nb := checkBlocks("DotQ8_0", len(x), 32, 34, len(row))
	if nb == 0 {
		return 0
	}
	return dotQ8_0AVX2(&row[0], &x[0], nb)
}

// dotQ8_0Fast512 is DotQ8_0 in one AVX-512 kernel call.
func dotQ8_0Fast512(row []byte, x []float32) float32 {
	nb := checkBlocks("DotQ8_0", len(x), 32, 34, len(row))
	if nb == 0 {
		return 0
	}
	return dotQ8_0AVX512(&row[0], &x[0], nb)
}
