package tensor

// dotQ6_KQ8 is Q6_K's integer dot against a row quantized by quantizeActQ8_K (as
// llama.cpp's ggml_vec_dot_q6_K_q8_K): per super-block the exact integer sum over
// its 16 sub-blocks of scale·Σ(q−32)·a, then s += (dₐ·d)·isum, each product rounded
// to float32, the order of the vector kernels.
func dotQ6_KQ8(row []byte, a actRow) float32 {
	nb := checkBlocks("dotQ6_KQ8", len(a.Qs), kBlock, 210, len(row))
	var s float32
	for b := range nb {
		blk := row[b*210 : b*210+210]
		q8 := a.Qs[b*kBlock : (b+1)*kBlock]
		var isum int32
		for h := range 2 {
			ql, qh, sc := (*[64]byte)(blk[64*h:]), (*[32]byte)(blk[128+32*h:]), (*[8]byte)(blk[192+8*h:])
			a := (*[128]int8)(q8[128*h:])
			for half := range 2 {
				// the four 16-value sub-blocks (k = 0…3) at l in [16·half, 16·half+16)
				var p0, p1, p2, p3 int32
				for l := 16 * half; l < 16*half+16; l++ {
					lo, hi, bits := ql[l], ql[l+32], qh[l]
					p0 += (int32(lo&0xf|bits&3<<4) - 32) * int32(a[l])
					p1 += (int32(hi&0xf|bits>>2&3<<4) - 32) * int32(a[l+32])
					p2 += (int32(lo>>4|bits>>4&3<<4) - 32) * int32(a[l+64])
					p3 += (int32(hi>>4|bits>>6<<4) - 32) * int32(a[l+96])
				}
				isum += int32(int8(sc[half]))*p0 + int32(int8(sc[2+half]))*p1 + int32(int8(sc[4+half]))*p2 + int32(int8(sc[6+half]))*p3
			}
		}
		dd := a.D[b] * f16At(blk[208:])
		s += float32(dd * float32(isum))
	}
	return s
}
