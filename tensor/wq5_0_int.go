package tensor

import "encoding/binary"

// dotQ5_0Q8 is Q5_0's integer dot against a row quantized by quantizeActQ8_0, in
// dotQ8_0Q8's order: lane l of a block sums values 4l…4l+3, each its signed level
// q−16 (q the nibble with qh's bit as the fifth) times its code.
func dotQ5_0Q8(row []byte, a actRow) float32 {
	nb := checkBlocks("dotQ5_0Q8", len(a.Qs), 32, 22, len(row))
	var acc [16]float32
	for b := range nb {
		blk := row[b*22 : b*22+22]
		dd := f16At(blk) * a.D[b]
		qh := binary.LittleEndian.Uint32(blk[2:])
		q := (*[32]int8)(a.Qs[b*32:])
		lanes := (*[8]float32)(acc[(b&1)*8:])
		for l := range lanes {
			var s int32
			for i := 4 * l; i < 4*l+4; i++ {
				s += (q5Level(qh, blk[6:], i) - 16) * int32(q[i])
			}
			lanes[l] += float32(dd * float32(s))
		}
	}
	return sumLanes16(&acc)
}

// q5Level is the 5-bit level (0…31) of value i of a Q5_0 or Q5_1 block whose qh and
// 16 nibble bytes qs are given.
func q5Level(qh uint32, qs []byte, i int) int32 {
	return int32(qs[i&15]>>(4*(i>>4))&0xf) | int32(qh>>i&1)<<4
}
