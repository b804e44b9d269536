package tensor

// dotQ4_0Q8 is Q4_0's integer dot against a row quantized by quantizeActQ8_0, in
// dotQ8_0Q8's order: value i of a block is its level q−8 (low nibbles values 0…15,
// high nibbles 16…31) times code i.
func dotQ4_0Q8(row []byte, a actRow) float32 {
	nb := checkBlocks("dotQ4_0Q8", len(a.Qs), 32, 18, len(row))
	var acc [16]float32
	for b := range nb {
		blk := row[b*18 : b*18+18]
		dd := f16At(blk) * a.D[b]
		q, w := (*[32]int8)(a.Qs[b*32:]), (*[16]byte)(blk[2:])
		lanes := (*[8]float32)(acc[(b&1)*8:])
		for l := range 4 { // lanes l (low nibbles, values 4l…4l+3) and l+4 (high nibbles)
			var lo, hi int32
			for i := 4 * l; i < 4*l+4; i++ {
				lo += (int32(w[i]&0xf) - 8) * int32(q[i])
				hi += (int32(w[i]>>4) - 8) * int32(q[i+16])
			}
			lanes[l] += float32(dd * float32(lo))
			lanes[l+4] += float32(dd * float32(hi))
		}
	}
	return sumLanes16(&acc)
}
