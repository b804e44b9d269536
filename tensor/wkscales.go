package tensor

import (
	"encoding/binary"
	"math"
)

// The K formats hold 256 values in a super-block. Q4_K and Q5_K split it into 8
// sub-blocks of 32 values, each with a 6-bit scale and a 6-bit min, packed in 12
// bytes after the super-block's half-precision d and dmin: value = d·sc·q − dmin·m.
const kBlock = 256

// scaleMinK4 unpacks sub-block j's 6-bit scale and min (ggml's get_scale_min_k4):
// sub-blocks 0…3 have theirs in the low 6 bits of bytes j and j+4; 4…7 have their
// low 4 bits in byte j+4 and their high 2 bits in the top bits of bytes j−4 and j.
func scaleMinK4(j int, q []byte) (sc, m uint8) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return q[j+4]&0xf | (q[j-4]>>6)<<4, q[j+4]>>4 | (q[j]>>6)<<4
}

// quantizeKMin quantizes one super-block x[256] to levels 0…nmax per sub-block of
// 32, writing d, dmin and the packed scales to hdr[0:16] and the levels to L. Each
// sub-block's scale and min come from its range (with the min at most 0, as in
// llama.cpp), not from llama.cpp's search; the rest follows quantize_row_q4_K_ref.
func quantizeKMin(hdr []byte, L *[kBlock]uint8, x []float32, nmax int) {
	var scales, mins [8]float32
	var maxScale, maxMin float32
	for j := range 8 {
		xs := x[32*j : 32*j+32]
		lo, hi := xs[0], xs[0]
		for _, v := range xs {
			lo, hi = min(lo, v), max(hi, v)
		}
		lo = min(lo, 0)
		scales[j], mins[j] = (hi-lo)/float32(nmax), -lo
		maxScale, maxMin = max(maxScale, scales[j]), max(maxMin, mins[j])
	}
	var invScale, invMin float32
	if maxScale > 0 {
		invScale = 63 / maxScale
	}
	if maxMin > 0 {
		invMin = 63 / maxMin
	}
	sc := hdr[4:16]
	clear(sc)
	for j := range 8 {
		ls := uint8(min(63, nearestInt(invScale*scales[j])))
		lm := uint8(min(63, nearestInt(invMin*mins[j])))
		if j < 4 {
			sc[j], sc[j+4] = ls, lm
		} else {
			sc[j+4] = ls&0xf | (lm&0xf)<<4
			sc[j-4] |= (ls >> 4) << 6
			sc[j] |= (lm >> 4) << 6
		}
	}
	binary.LittleEndian.PutUint16(hdr, FloatToF16(maxScale/63))
	binary.LittleEndian.PutUint16(hdr[2:], FloatToF16(maxMin/63))
	d, dmin := F16ToFloat(binary.LittleEndian.Uint16(hdr)), F16ToFloat(binary.LittleEndian.Uint16(hdr[2:]))
	for j := range 8 {
		s, m := scaleMinK4(j, sc)
		dl, ml := d*float32(s), dmin*float32(m)
		for i := 32 * j; i < 32*j+32; i++ {
			L[i] = 0
			if dl != 0 {
				L[i] = uint8(max(0, min(nmax, nearestInt((x[i]+ml)/dl))))
			}
		}
	}
}

// nearestInt rounds to the nearest integer, ties to even, as ggml's nearest_int.
func nearestInt(f float32) int { return int(math.RoundToEven(float64(f))) }
