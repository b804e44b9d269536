package tensor

// dotQ4_KQ8 is Q4_K's integer dot against a row quantized by quantizeActQ8_K (as
// llama.cpp's ggml_vec_dot_q4_K_q8_K): per super-block the exact integer sums
// Σ_j sc_j·Σ q·a and Σ_j m_j·Σ a (the latter from the row's sums of 16), then
// s += d·dₐ·isum − dmin·dₐ·msum in float32, each product rounded (no fused
// multiply-add), in the order the vector kernels follow, so that they return the
// same bits.
func dotQ4_KQ8(row []byte, a actRow) float32 {
	nb := checkBlocks("dotQ4_KQ8", len(a.Qs), kBlock, 144, len(row))
	var s float32
	for b := range nb {
		blk := row[b*144 : b*144+144]
		q8, sums := a.Qs[b*kBlock:(b+1)*kBlock], a.Sums[16*b:16*b+16]
		var isum, msum int32
		for c := range 4 {
			lo, hi := nibbleDots((*[32]byte)(blk[16+32*c:]), (*[32]int8)(q8[64*c:]), (*[32]int8)(q8[64*c+32:]))
			s1, m1 := scaleMinK4(2*c, blk[4:16])
			s2, m2 := scaleMinK4(2*c+1, blk[4:16])
			isum += int32(s1)*lo + int32(s2)*hi
			msum += int32(m1)*(int32(sums[4*c])+int32(sums[4*c+1])) + int32(m2)*(int32(sums[4*c+2])+int32(sums[4*c+3]))
		}
		s += kScaled(a.D[b], f16At(blk), f16At(blk[2:]), isum, msum)
	}
	return s
}

// nibbleDots returns Σ low nibble·lo8 and Σ high nibble·hi8 over 32 bytes. (A
// function of its own: inlined into the block loop, its sums were kept on the stack.)
//
//go:noinline
func nibbleDots(qs *[32]byte, lo8, hi8 *[32]int8) (lo, hi int32) {
	for l, v := range qs {
		lo += int32(v&0xf) * int32(lo8[l])
		hi += int32(v>>4) * int32(hi8[l])
	}
	return lo, hi
}

// kScaled is a K super-block's float term: (dₐ·d)·isum − (dₐ·dmin)·msum, every
// operation rounded to float32.
func kScaled(da, d, dmin float32, isum, msum int32) float32 {
	dd, dm := da*d, da*dmin
	return float32(dd*float32(isum)) - float32(dm*float32(msum))
}
