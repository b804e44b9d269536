package tensor

import (
	"encoding/binary"
	"math"
)

// BlockQ8_0 is ggml's Q8_0: blocks of 32 values, a half-precision scale d then 32
// int8 q; value = d·q.
var BlockQ8_0 = BlockFormat{Name: "Q8_0", Values: 32, Bytes: 34, Dequant: DequantQ8_0, Dot: DotQ8_0, Quantize: QuantizeQ8_0,
	act: actQ8_0, dotAct: dotQ8_0Q8}

// DequantQ8_0 widens one row of n values (n % 32 == 0) from its blocks.
func DequantQ8_0(dst []float32, src []byte) {
	nb := checkBlocks("DequantQ8_0", len(dst), 32, 34, len(src))
	for b := range nb {
		blk := src[b*34 : b*34+34]
		d := F16ToFloat(binary.LittleEndian.Uint16(blk))
		out := dst[b*32 : b*32+32]
		for i, q := range blk[2:] {
			out[i] = d * float32(int8(q))
		}
	}
}

// DotQ8_0 returns Σ row[i]·x[i] over len(x) values, computed on the blocks.
func DotQ8_0(row []byte, x []float32) float32 {
	nb := checkBlocks("DotQ8_0", len(x), 32, 34, len(row))
	var s float32
	for b := range nb {
		blk := row[b*34 : b*34+34]
		xs := x[b*32 : b*32+32]
		var bs float32
		for i, q := range blk[2:] {
			bs += float32(int8(q)) * xs[i]
		}
		s += F16ToFloat(binary.LittleEndian.Uint16(blk)) * bs
	}
	return s
}

// QuantizeQ8_0 quantizes one row as llama.cpp does (quantize_row_q8_0_ref): d =
// max|x|/127, q = round(x/d) with ties away from zero.
func QuantizeQ8_0(dst []byte, src []float32) {
	nb := checkBlocks("QuantizeQ8_0", len(src), 32, 34, len(dst))
	for b := range nb {
		xs := src[b*32 : b*32+32]
		var amax float32
		for _, v := range xs {
			amax = max(amax, float32(math.Abs(float64(v))))
		}
		d := amax / 127
		var id float32
		if d != 0 {
			id = 1 / d
		}
		blk := dst[b*34 : b*34+34]
		binary.LittleEndian.PutUint16(blk, FloatToF16(d))
		for i, v := range xs {
			blk[2+i] = byte(int8(math.Round(float64(v * id))))
		}
	}
}
