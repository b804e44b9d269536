package tensor

// dotQ8_0Q8 is Q8_0's integer dot against a row quantized by quantizeActQ8_0: per
// block and lane of 4 values an exact integer sum, scaled by d·dₐ into 16 lane
// accumulators (even blocks 0…7, odd blocks 8…15), summed by sumLanes16: the order
// of the vector kernels, which return the same bits.
func dotQ8_0Q8(row []byte, a actRow) float32 {
	nb := checkBlocks("dotQ8_0Q8", len(a.Qs), 32, 34, len(row))
	var acc [16]float32
	for b := range nb {
		blk := row[b*34 : b*34+34]
		dd := f16At(blk) * a.D[b]
		q, w := (*[32]int8)(a.Qs[b*32:]), (*[32]byte)(blk[2:])
		lanes := (*[8]float32)(acc[(b&1)*8:])
		for l := range lanes {
			s := int32(int8(w[4*l]))*int32(q[4*l]) + int32(int8(w[4*l+1]))*int32(q[4*l+1]) +
				int32(int8(w[4*l+2]))*int32(q[4*l+2]) + int32(int8(w[4*l+3]))*int32(q[4*l+3])
			lanes[l] += float32(dd * float32(s))
		}
	}
	return sumLanes16(&acc)
}
