package tensor

import "encoding/binary"

// BlockQ4_K is ggml's Q4_K: super-blocks of 256 values in 144 bytes: d and dmin
// (half precision), 12 bytes of 6-bit sub-block scales and mins (wkscales.go), then
// 128 bytes of 4-bit levels. Each 64 values are 32 bytes: the low nibbles are the
// first sub-block of 32, the high nibbles the second.
var BlockQ4_K = BlockFormat{Name: "Q4_K", Values: kBlock, Bytes: 144, Dequant: DequantQ4_K, Dot: DotQ4_K, Quantize: QuantizeQ4_K,
	act: actQ8_K, dotAct: dotQ4_KQ8}

// DequantQ4_K widens one row of n values (n % 256 == 0) from its blocks.
func DequantQ4_K(dst []float32, src []byte) {
	nb := checkBlocks("DequantQ4_K", len(dst), kBlock, 144, len(src))
	for b := range nb {
		blk := src[b*144 : b*144+144]
		d, dmin := F16ToFloat(binary.LittleEndian.Uint16(blk)), F16ToFloat(binary.LittleEndian.Uint16(blk[2:]))
		out := dst[b*kBlock:]
		for c := range 4 {
			q := blk[16+32*c : 48+32*c]
			s1, m1 := scaleMinK4(2*c, blk[4:16])
			s2, m2 := scaleMinK4(2*c+1, blk[4:16])
			d1, o1 := d*float32(s1), dmin*float32(m1)
			d2, o2 := d*float32(s2), dmin*float32(m2)
			y := out[64*c : 64*c+64]
			for l, v := range q {
				y[l] = d1*float32(v&0xf) - o1
				y[l+32] = d2*float32(v>>4) - o2
			}
		}
	}
}

// DotQ4_K returns Σ row[i]·x[i] over len(x) values, computed on the blocks: per
// sub-block d·sc·Σq·x − dmin·m·Σx.
func DotQ4_K(row []byte, x []float32) float32 {
	nb := checkBlocks("DotQ4_K", len(x), kBlock, 144, len(row))
	var s float32
	for b := range nb {
		blk := row[b*144 : b*144+144]
		d, dmin := F16ToFloat(binary.LittleEndian.Uint16(blk)), F16ToFloat(binary.LittleEndian.Uint16(blk[2:]))
		xs := x[b*kBlock:]
		var qs, ms float32
		for c := range 4 {
			q := blk[16+32*c : 48+32*c]
			x1, x2 := xs[64*c:64*c+32], xs[64*c+32:64*c+64]
			var q1, q2, sx1, sx2 float32
			for l, v := range q {
				q1 += float32(v&0xf) * x1[l]
				q2 += float32(v>>4) * x2[l]
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

// QuantizeQ4_K quantizes one row into valid Q4_K blocks (quantizeKMin).
func QuantizeQ4_K(dst []byte, src []float32) {
	nb := checkBlocks("QuantizeQ4_K", len(src), kBlock, 144, len(dst))
	var L [kBlock]uint8
	for b := range nb {
		blk := dst[b*144 : b*144+144]
		quantizeKMin(blk[:16], &L, src[b*kBlock:(b+1)*kBlock], 15)
		for c := range 4 {
			for l := range 32 {
				blk[16+32*c+l] = L[64*c+l] | L[64*c+32+l]<<4
			}
		}
	}
}
