package tensor

import "encoding/binary"

// dotQ5_1Q8 is Q5_1's integer dot against a row quantized as actQ8_1: per block
// d·dₐ·Σq·code in dotQ8_0Q8's lanes (q the unsigned 5-bit level), and the min's
// part m·dₐ·Σcode, exact but for the float32 products, in an even and an odd
// blocks' sum added last: the order of the vector kernels.
func dotQ5_1Q8(row []byte, a actRow) float32 {
	nb := checkBlocks("dotQ5_1Q8", len(a.Qs), 32, 24, len(row))
	var acc [16]float32
	var mins [2]float32
	for b := range nb {
		blk := row[b*24 : b*24+24]
		dd := f16At(blk) * a.D[b]
		qh := binary.LittleEndian.Uint32(blk[4:])
		q := (*[32]int8)(a.Qs[b*32:])
		lanes := (*[8]float32)(acc[(b&1)*8:])
		for l := range lanes {
			var s int32
			for i := 4 * l; i < 4*l+4; i++ {
				s += q5Level(qh, blk[8:], i) * int32(q[i])
			}
			lanes[l] += float32(dd * float32(s))
		}
		mins[b&1] += float32(float32(f16At(blk[2:])*a.D[b]) * float32(a.Sums[b]))
	}
	return sumLanes16(&acc) + (mins[0] + mins[1])
}
