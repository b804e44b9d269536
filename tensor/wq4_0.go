package tensor

import (
	"encoding/binary"
	"math"
)

// BlockQ4_0 is ggml's Q4_0: blocks of 32 values, a half-precision scale d then 16
// bytes whose low nibbles are values 0…15 and high nibbles values 16…31; value =
// d·(q − 8).
var BlockQ4_0 = BlockFormat{Name: "Q4_0", Values: 32, Bytes: 18, Dequant: DequantQ4_0, Dot: DotQ4_0, Quantize: QuantizeQ4_0,
	act: actQ8_0, dotAct: dotQ4_0Q8}

// DequantQ4_0 widens one row of n values (n % 32 == 0) from its blocks.
func DequantQ4_0(dst []float32, src []byte) {
	nb := checkBlocks("DequantQ4_0", len(dst), 32, 18, len(src))
	for b := range nb {
		blk := src[b*18 : b*18+18]
		d := F16ToFloat(binary.LittleEndian.Uint16(blk))
		out := dst[b*32 : b*32+32]
		for j, q := range blk[2:] {
			out[j] = d * float32(int(q&0xf)-8)
			out[j+16] = d * float32(int(q>>4)-8)
		}
	}
}

// DotQ4_0 returns Σ row[i]·x[i] over len(x) values, computed on the blocks.
func DotQ4_0(row []byte, x []float32) float32 {
	nb := checkBlocks("DotQ4_0", len(x), 32, 18, len(row))
	var s float32
	for b := range nb {
		blk := row[b*18 : b*18+18]
		xs := x[b*32 : b*32+32]
		var bs float32
		for j, q := range blk[2:] {
			bs += float32(int(q&0xf)-8)*xs[j] + float32(int(q>>4)-8)*xs[j+16]
		}
		s += F16ToFloat(binary.LittleEndian.Uint16(blk)) * bs
	}
	return s
}

// QuantizeQ4_0 quantizes one row as llama.cpp does (quantize_row_q4_0_ref): d is the
// value of largest magnitude divided by −8, so that it maps to q = 0 exactly.
func QuantizeQ4_0(dst []byte, src []float32) {
	nb := checkBlocks("QuantizeQ4_0", len(src), 32, 18, len(dst))
	for b := range nb {
		xs := src[b*32 : b*32+32]
		var amax, mx float32
		for _, v := range xs {
			if a := float32(math.Abs(float64(v))); a > amax {
				amax, mx = a, v
			}
		}
		d := mx / -8
		var id float32
		if d != 0 {
			id = 1 / d
		}
		blk := dst[b*18 : b*18+18]
		binary.LittleEndian.PutUint16(blk, FloatToF16(d))
		for j := range 16 {
			// C's (int8_t) conversion truncates toward zero; the values are ≥ 0.5.
			lo := min(15, int8(xs[j]*id+8.5))
			hi := min(15, int8(xs[j+16]*id+8.5))
			blk[2+j] = byte(lo) | byte(hi)<<4
		}
	}
}
