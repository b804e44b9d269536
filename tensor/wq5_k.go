package tensor

import "encoding/binary"

// BlockQ5_K is ggml's Q5_K: super-blocks of 256 values in 176 bytes: d, dmin, the
// 12 bytes of 6-bit scales and mins (wkscales.go), 32 bytes qh of fifth bits, 128
// bytes qs of low nibbles. Each 64 values c use qs[32c:32c+32] (low nibbles the
// first 32, high nibbles the second) and bits 2c and 2c+1 of qh.
var BlockQ5_K = BlockFormat{Name: "Q5_K", Values: kBlock, Bytes: 176, Dequant: DequantQ5_K, Dot: DotQ5_K, Quantize: QuantizeQ5_K,
	act: actQ8_K, dotAct: dotQ5_KQ8}

// q5Levels returns the two 5-bit levels of byte l of 64-value chunk c.
func q5Levels(blk []byte, c, l int) (lo, hi uint8) {
	v, h := blk[48+32*c+l], blk[16+l]>>(2*c)
	return v&0xf | (h&1)<<4, v>>4 | (h>>1&1)<<4
}

// DequantQ5_K widens one row of n values (n % 256 == 0) from its blocks.
func DequantQ5_K(dst []float32, src []byte) {
	nb := checkBlocks("DequantQ5_K", len(dst), kBlock, 176, len(src))
	for b := range nb {
		blk := src[b*176 : b*176+176]
		d, dmin := F16ToFloat(binary.LittleEndian.Uint16(blk)), F16ToFloat(binary.LittleEndian.Uint16(blk[2:]))
		out := dst[b*kBlock:]
		for c := range 4 {
			s1, m1 := scaleMinK4(2*c, blk[4:16])
			s2, m2 := scaleMinK4(2*c+1, blk[4:16])
			d1, o1 := d*float32(s1), dmin*float32(m1)
			d2, o2 := d*float32(s2), dmin*float32(m2)
			for l := range 32 {
				lo, hi := q5Levels(blk, c, l)
				out[64*c+l] = d1*float32(lo) - o1
				out[64*c+32+l] = d2*float32(hi) - o2
			}
		}
	}
}

// DotQ5_K returns Σ row[i]·x[i] over len(x) values, computed on the blocks.
func DotQ5_K(row []byte, x []float32) float32 {
	nb := checkBlocks("DotQ5_K", len(x), kBlock, 176, len(row))
	var s float32
	for b := range nb {
		blk := row[b*176 : b*176+176]
		d, dmin := F16ToFloat(binary.LittleEndian.Uint16(blk)), F16ToFloat(binary.LittleEndian.Uint16(blk[2:]))
		xs := x[b*kBlock:]
		var qs, ms float32
		for c := range 4 {
			x1, x2 := xs[64*c:64*c+32], xs[64*c+32:64*c+64]
			var q1, q2, sx1, sx2 float32
			for l := range 32 {
				lo, hi := q5Levels(blk, c, l)
				q1 += float32(lo) * x1[l]
				q2 += float32(hi) * x2[l]
				sx1 += x1[l]
				sx2 += x2[l]
			}
			s1, m1 := scaleMinK4(2*c, blk[4:16])
			s2, m2 := scaleMinK4(2*c+1, blk[4:16])
			qs += float32(s1)*q1 + float32(s2)*q2
			ms += float32(m1)*sx1 + float32(m2)*sx2
		}
		s += d*qs - dmin*ms
	}
	return s
}

// QuantizeQ5_K quantizes one row into valid Q5_K blocks (quantizeKMin).
func QuantizeQ5_K(dst []byte, src []float32) {
	nb := checkBlocks("QuantizeQ5_K", len(src), kBlock, 176, len(dst))
	var L [kBlock]uint8
	for b := range nb {
		blk := dst[b*176 : b*176+176]
		quantizeKMin(blk[:16], &L, src[b*kBlock:(b+1)*kBlock], 31)
		qh := blk[16:48]
		clear(qh)
		for c := range 4 {
			for l := range 32 {
				lo, hi := L[64*c+l], L[64*c+32+l]
				blk[48+32*c+l] = lo&0xf | (hi&0xf)<<4
				qh[l] |= (lo>>4)<<(2*c) | (hi>>4)<<(2*c+1)
			}
		}
	}
}
