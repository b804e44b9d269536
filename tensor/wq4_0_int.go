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
		q, w := a.Qs[b*32:b*32+32], blk[2:18]
		lanes := acc[(b&1)*8 : (b&1)*8+8]
		for l := range lanes {
			var s int32
			for i := 4 * l; i < 4*l+4; i++ {
				s += (int32(w[i&15]>>(4*(i>>4))&0xf) - 8) * int32(q[i])
			}
			lanes[l] += float32(dd * float32(s))
		}
	}
	return sumLanes16(&acc)
}
