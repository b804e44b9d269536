package tensor

// dotQ5_KQ8 is Q5_K's integer dot against a row quantized by quantizeActQ8_K: as
// dotQ4_KQ8, with 5-bit levels.
func dotQ5_KQ8(row []byte, a actRow) float32 {
	nb := checkBlocks("dotQ5_KQ8", len(a.Qs), kBlock, 176, len(row))
	var s float32
	for b := range nb {
		blk := row[b*176 : b*176+176]
		q8, sums := a.Qs[b*kBlock:(b+1)*kBlock], a.Sums[16*b:16*b+16]
		var isum, msum int32
		qh := (*[32]byte)(blk[16:])
		for c := range 4 {
			lo, hi := fiveBitDots((*[32]byte)(blk[48+32*c:]), qh, uint(2*c), (*[32]int8)(q8[64*c:]), (*[32]int8)(q8[64*c+32:]))
			s1, m1 := scaleMinK4(2*c, blk[4:16])
			s2, m2 := scaleMinK4(2*c+1, blk[4:16])
			isum += int32(s1)*lo + int32(s2)*hi
			msum += int32(m1)*(int32(sums[4*c])+int32(sums[4*c+1])) + int32(m2)*(int32(sums[4*c+2])+int32(sums[4*c+3]))
		}
		s += kScaled(a.D[b], f16At(blk), f16At(blk[2:]), isum, msum)
	}
	return s
}

// fiveBitDots returns Σ level·lo8 and Σ level·hi8 over 32 bytes of nibbles whose
// fifth bits are bits shift and shift+1 of qh (a function of its own, as nibbleDots).
//
//go:noinline
func fiveBitDots(qs, qh *[32]byte, shift uint, lo8, hi8 *[32]int8) (lo, hi int32) {
	for l, v := range qs {
		h := qh[l] >> shift
		lo += int32(v&0xf|(h&1)<<4) * int32(lo8[l])
		hi += int32(v>>4|(h>>1&1)<<4) * int32(hi8[l])
	}
	return lo, hi
}
