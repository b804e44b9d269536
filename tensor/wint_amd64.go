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
func dotQ4_0Q8VNNI(row *byte, qs *int8, d *float32, nb int) float32

// hasInt8AVX2: the integer kernels need AVX2 and F16C (the weights' half-precision
// scales).
var hasInt8AVX2 = cpu.X86.HasAVX2 && cpu.X86.HasF16C

// hasInt8VNNI: the AVX-512 kernels use VPDPBUSD (VNNI), byte masks (BW) and the
// 256-bit forms of EVEX instructions (VL).
var hasInt8VNNI = hasInt8AVX2 && cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL && cpu.X86.HasAVX512VNNI

func init() {
	if hasInt8AVX2 {
		BlockQ4_K.dotAct = dotQ4_KQ8Fast
		BlockQ6_K.dotAct = dotQ6_KQ8Fast
		BlockQ5_K.dotAct = dotQ5_KQ8Fast
		BlockQ8_0.dotAct = dotQ8_0Q8Fast
		BlockQ4_0.dotAct = dotQ4_0Q8Fast
		BlockQ5_0.dotAct = dotQ5_0Q8Fast
		BlockQ4_1.dotAct = dotQ4_1Q8Fast
		BlockQ5_1.dotAct = dotQ5_1Q8Fast
	}
	if hasInt8VNNI {
		quantizeActQ8_K = quantizeActQ8_KFast
		quantizeActQ8_0 = quantizeActQ8_0Fast
		BlockQ8_0.dotAct = dotQ8_0Q8Fast512
		BlockQ4_K.dotAct = dotQ4_KQ8Fast512
		BlockQ6_K.dotAct = dotQ6_KQ8Fast512
		BlockQ5_K.dotAct = dotQ5_KQ8Fast512
		BlockQ4_0.dotAct = dotQ4_0Q8Fast512
		BlockQ5_0.dotAct = dotQ5_0Q8Fast512
		BlockQ4_1.dotAct = dotQ4_1Q8Fast512
		BlockQ5_1.dotAct = dotQ5_1Q8Fast512
	}
}

// dotQ4_KQ8Fast is dotQ4_KQ8 in one AVX2 kernel call.
func dotQ4_KQ8Fast(row []byte, a actRow) float32 {
	nb := checkBlocks("dotQ4_KQ8", len(a.Qs), kBlock, 144, len(row))
	if nb == 0 {
		return 0
	}
	_, _ = a.D[nb-1], a.Sums[16*nb-1]
	return dotQ4_KQ8AVX2(&row[0], &a.Qs[0], &a.D[0], &a.Sums[0], nb)
}

// dotQ6_KQ8Fast is dotQ6_KQ8 in one AVX2 kernel call.
func dotQ6_KQ8Fast(row []byte, a actRow) float32 {
	nb := checkBlocks("dotQ6_KQ8", len(a.Qs), kBlock, 210, len(row))
	if nb == 0 {
		return 0
	}
	_, _ = a.D[nb-1], a.Sums[16*nb-1]
	return dotQ6_KQ8AVX2(&row[0], &a.Qs[0], &a.D[0], &a.Sums[0], nb)
}

// dotQ5_KQ8Fast is dotQ5_KQ8 in one AVX2 kernel call.
func dotQ5_KQ8Fast(row []byte, a actRow) float32 {
	nb := checkBlocks("dotQ5_KQ8", len(a.Qs), kBlock, 176, len(row))
	if nb == 0 {
		return 0
	}
	_, _ = a.D[nb-1], a.Sums[16*nb-1]
	return dotQ5_KQ8AVX2(&row[0], &a.Qs[0], &a.D[0], &a.Sums[0], nb)
}

// dotQ8_0Q8Fast is dotQ8_0Q8 in one AVX2 kernel call.
func dotQ8_0Q8Fast(row []byte, a actRow) float32 {
	nb := checkBlocks("dotQ8_0Q8", len(a.Qs), 32, 34, len(row))
	if nb == 0 {
		return 0
	}
	_ = a.D[nb-1]
	return dotQ8_0Q8AVX2(&row[0], &a.Qs[0], &a.D[0], nb)
}

// dotQ4_0Q8Fast is dotQ4_0Q8 in one AVX2 kernel call.
func dotQ4_0Q8Fast(row []byte, a actRow) float32 {
	nb := checkBlocks("dotQ4_0Q8", len(a.Qs), 32, 18, len(row))
	if nb == 0 {
		return 0
	}
	_ = a.D[nb-1]
	return dotQ4_0Q8AVX2(&row[0], &a.Qs[0], &a.D[0], nb)
}

// dotQ8_0Q8Fast512 is dotQ8_0Q8 in one AVX-512 VNNI kernel call.
func dotQ8_0Q8Fast512(row []byte, a actRow) float32 {
	nb := checkBlocks("dotQ8_0Q8", len(a.Qs), 32, 34, len(row))
	if nb == 0 {
		return 0
	}
	_ = a.D[nb-1]
	return dotQ8_0Q8VNNI(&row[0], &a.Qs[0], &a.D[0], nb)
}

// dotQ4_0Q8Fast512 is dotQ4_0Q8 in one AVX-512 VNNI kernel call.
func dotQ4_0Q8Fast512(row []byte, a actRow) float32 {
	nb := checkBlocks("dotQ4_0Q8", len(a.Qs), 32, 18, len(row))
	if nb == 0 {
		return 0
	}
	_ = a.D[nb-1]
	return dotQ4_0Q8VNNI(&row[0], &a.Qs[0], &a.D[0], nb)
}

// dotQ5_0Q8Fast is dotQ5_0Q8 in one AVX2 kernel call.
func dotQ5_0Q8Fast(row []byte, a actRow) float32 {
	nb := checkBlocks("dotQ5_0Q8", len(a.Qs), 32, 22, len(row))
	if nb == 0 {
		return 0
	}
	_ = a.D[nb-1]
	return dotQ5_0Q8AVX2(&row[0], &a.Qs[0], &a.D[0], nb)
}

// dotQ5_0Q8Fast512 is dotQ5_0Q8 in one AVX-512 VNNI kernel call.
func dotQ5_0Q8Fast512(row []byte, a actRow) float32 {
	nb := checkBlocks("dotQ5_0Q8", len(a.Qs), 32, 22, len(row))
	if nb == 0 {
		return 0
	}
	_ = a.D[nb-1]
	return dotQ5_0Q8VNNI(&row[0], &a.Qs[0], &a.D[0], nb)
}

// dotQ4_1Q8Fast is dotQ4_1Q8 in one AVX2 kernel call.
func dotQ4_1Q8Fast(row []byte, a actRow) float32 {
	nb := checkBlocks("dotQ4_1Q8", len(a.Qs), 32, 20, len(row))
	if nb == 0 {
		return 0
	}
	_, _ = a.D[nb-1], a.Sums[nb-1]
	return dotQ4_1Q8AVX2(&row[0], &a.Qs[0], &a.D[0], &a.Sums[0], nb)
}

// dotQ4_1Q8Fast512 is dotQ4_1Q8 in one AVX-512 VNNI kernel call.
func dotQ4_1Q8Fast512(row []byte, a actRow) float32 {
	nb := checkBlocks("dotQ4_1Q8", len(a.Qs), 32, 20, len(row))
	if nb == 0 {
		return 0
	}
	_, _ = a.D[nb-1], a.Sums[nb-1]
	return dotQ4_1Q8VNNI(&row[0], &a.Qs[0], &a.D[0], &a.Sums[0], nb)
}

// dotQ5_1Q8Fast is dotQ5_1Q8 in one AVX2 kernel call.
func dotQ5_1Q8Fast(row []byte, a actRow) float32 {
	nb := checkBlocks("dotQ5_1Q8", len(a.Qs), 32, 24, len(row))
	if nb == 0 {
		return 0
	}
	_, _ = a.D[nb-1], a.Sums[nb-1]
	return dotQ5_1Q8AVX2(&row[0], &a.Qs[0], &a.D[0], &a.Sums[0], nb)
}

// dotQ5_1Q8Fast512 is dotQ5_1Q8 in one AVX-512 VNNI kernel call.
func dotQ5_1Q8Fast512(row []byte, a actRow) float32 {
	nb := checkBlocks("dotQ5_1Q8", len(a.Qs), 32, 24, len(row))
	if nb == 0 {
		return 0
	}
	_, _ = a.D[nb-1], a.Sums[nb-1]
	return dotQ5_1Q8VNNI(&row[0], &a.Qs[0], &a.D[0], &a.Sums[0], nb)
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

// dotQ4_KQ8Fast512 is dotQ4_KQ8 in one AVX-512 VNNI kernel call.
func dotQ4_KQ8Fast512(row []byte, a actRow) float32 {
	nb := checkBlocks("dotQ4_KQ8", len(a.Qs), kBlock, 144, len(row))
	if nb == 0 {
		return 0
	}
	_, _ = a.D[nb-1], a.Sums[16*nb-1]
	return dotQ4_KQ8VNNI(&row[0], &a.Qs[0], &a.D[0], &a.Sums[0], nb)
}

// dotQ6_KQ8Fast512 is dotQ6_KQ8 in one AVX-512 VNNI kernel call.
func dotQ6_KQ8Fast512(row []byte, a actRow) float32 {
	nb := checkBlocks("dotQ6_KQ8", len(a.Qs), kBlock, 210, len(row))
	if nb == 0 {
		return 0
	}
	_, _ = a.D[nb-1], a.Sums[16*nb-1]
	return dotQ6_KQ8VNNI(&row[0], &a.Qs[0], &a.D[0], &a.Sums[0], nb)
}

// dotQ5_KQ8Fast512 is dotQ5_KQ8 in one AVX-512 VNNI kernel call.
func dotQ5_KQ8Fast512(row []byte, a actRow) float32 {
	nb := checkBlocks("dotQ5_KQ8", len(a.Qs), kBlock, 176, len(row))
	if nb == 0 {
		return 0
	}
	_, _ = a.D[nb-1], a.Sums[16*nb-1]
	return dotQ5_KQ8VNNI(&row[0], &a.Qs[0], &a.D[0], &a.Sums[0], nb)
}
