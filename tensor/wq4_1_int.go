package tensor

// dotQ4_1Q8 is Q4_1's integer dot against a row quantized as actQ8_1, in
// dotQ5_1Q8's order: d·dₐ·Σq·code in lanes of 4 values (q the nibble: low nibbles
// values 0…15, high nibbles 16…31), and m·dₐ·Σcode in an even and an odd blocks'
// sum added last.
func dotQ4_1Q8(row []byte, a actRow) float32 {
	nb := checkBlocks("dotQ4_1Q8", len(a.Qs), 32, 20, len(row))
	var acc [16]float32
	var mins [2]float32
	for b := range nb {
		blk := row[b*20 : b*20+20]
		dd := f16At(blk) * a.D[b]
		q, w := (*[32]int8)(a.Qs[b*32:]), (*[16]byte)(blk[4:])
		lanes := (*[8]float32)(acc[(b&1)*8:])
		for l := range 4 { // lanes l (low nibbles, values 4l…4l+3) and l+4 (high nibbles)
			var lo, hi int32
			for i := 4 * l; i < 4*l+4; i++ {
				lo += int32(w[i]&0xf) * int32(q[i])
				hi += int32(w[i]>>4) * int32(q[i+16])
			}
			lanes[l] += float32(dd * float32(lo))
			lanes[l+4] += float32(dd * float32(hi))
		}
		mins[b&1] += float32(float32(f16At(blk[2:])*a.D[b]) * float32(a.Sums[b]))
	}
	return sumLanes16(&acc) + (mins[0] + mins[1])
}
