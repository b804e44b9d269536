package tensor

import (
	"encoding/binary"
	"math"
)

// BlockQ5_0 is ggml's Q5_0: blocks of 32 values, a half-precision d, 4 bytes qh
// (little-endian; bit j is value j's fifth bit), then 16 bytes whose low nibbles
// are values 0…15 and high nibbles 16…31; value = d·(q − 16).
var BlockQ5_0 = BlockFormat{Name: "Q5_0", Values: 32, Bytes: 22, Dequant: DequantQ5_0, Dot: DotQ5_0, Quantize: QuantizeQ5_0,
	act: actQ8_0, dotAct: dotQ5_0Q8}

// q5Pair returns the 5-bit levels of values j and j+16 of a Q5_0 or Q5_1 block
// whose qh and qs are given.
func q5Pair(qh uint32, qs []byte, j int) (lo, hi uint8) {
	return qs[j]&0xf | uint8(qh>>j&1)<<4, qs[j]>>4 | uint8(qh>>(j+16)&1)<<4
}

// DequantQ5_0 widens one row of n values (n % 32 == 0) from its blocks.
func DequantQ5_0(dst []float32, src []byte) {
	nb := checkBlocks("DequantQ5_0", len(dst), 32, 22, len(src))
	for b := range nb {
		blk := src[b*22 : b*22+22]
		d, qh := F16ToFloat(binary.LittleEndian.Uint16(blk)), binary.LittleEndian.Uint32(blk[2:])
		out := dst[b*32 : b*32+32]
		for j := range 16 {
			lo, hi := q5Pair(qh, blk[6:], j)
			out[j] = d * float32(int(lo)-16)
			out[j+16] = d * float32(int(hi)-16)
		}
	}
}

// DotQ5_0 returns Σ row[i]·x[i] over len(x) values, computed on the blocks.
func DotQ5_0(row []byte, x []float32) float32 {
	nb := checkBlocks("DotQ5_0", len(x), 32, 22, len(row))
	var s float32
	for b := range nb {
		blk := row[b*22 : b*22+22]
		qh := binary.LittleEndian.Uint32(blk[2:])
		xs := x[b*32 : b*32+32]
		var bs float32
		for j := range 16 {
			lo, hi := q5Pair(qh, blk[6:], j)
			bs += float32(int(lo)-16)*xs[j] + float32(int(hi)-16)*xs[j+16]
		}
		s += F16ToFloat(binary.LittleEndian.Uint16(blk)) * bs
	}
	return s
}

// QuantizeQ5_0 quantizes one row as llama.cpp does (quantize_row_q5_0_ref): d is
// the value of largest magnitude divided by −16.
func QuantizeQ5_0(dst []byte, src []float32) {
	nb := checkBlocks("QuantizeQ5_0", len(src), 32, 22, len(dst))
	for b := range nb {
		xs := src[b*32 : b*32+32]
		var amax, mx float32
		for _, v := range xs {
			if a := float32(math.Abs(float64(v))); a > amax {
				amax, mx = a, v
			}
		}
		d := mx / -16
		var id float32
		if d != 0 {
			id = 1 / d
		}
		blk := dst[b*22 : b*22+22]
		binary.LittleEndian.PutUint16(blk, FloatToF16(d))
		var qh uint32
		for j := range 16 {
			q0 := uint8(min(31, int8(xs[j]*id+16.5)))
			q1 := uint8(min(31, int8(xs[j+16]*id+16.5)))
			blk[6+j] = q0&0xf | (q1&0xf)<<4
			qh |= uint32(q0>>4)<<j | uint32(q1>>4)<<(j+16)
		}
		binary.LittleEndian.PutUint32(blk[2:], qh)
	}
}
