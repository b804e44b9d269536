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
			for k := range 4 {
				for half := range 2 {
					var p int32
					for l := 16 * half; l < 16*half+16; l++ {
						p += int32(q6Level(blk, h, k, l)) * int32(q8[128*h+32*k+l])
					}
					isum += int32(int8(blk[192+8*h+2*k+half])) * p
				}
			}
		}
		dd := a.D[b] * f16At(blk[208:])
		s += float32(dd * float32(isum))
	}
	return s
}
