package tensor

import (
	"encoding/binary"
	"math"
)

// BlockQ4_1 is ggml's Q4_1: blocks of 32 values, half-precision d and m, then 16
// bytes whose low nibbles are values 0…15 and high nibbles 16…31; value = d·q + m.
var BlockQ4_1 = BlockFormat{Name: "Q4_1", Values: 32, Bytes: 20, Dequant: DequantQ4_1, Dot: DotQ4_1, Quantize: QuantizeQ4_1,
	act: actQ8_1, dotAct: dotQ4_1Q8}

// DequantQ4_1 widens one row of n values (n % 32 == 0) from its blocks.
func DequantQ4_1(dst []float32, src []byte) {
	nb := checkBlocks("DequantQ4_1", len(dst), 32, 20, len(src))
	for b := range nb {
		blk := src[b*20 : b*20+20]
		d, m := F16ToFloat(binary.LittleEndian.Uint16(blk)), F16ToFloat(binary.LittleEndian.Uint16(blk[2:]))
		out := dst[b*32 : b*32+32]
		for j, q := range blk[4:] {
			out[j] = d*float32(q&0xf) + m
			out[j+16] = d*float32(q>>4) + m
		}
	}
}

// DotQ4_1 returns Σ row[i]·x[i] over len(x) values, computed on the blocks:
// d·Σq·x + m·Σx per block.
func DotQ4_1(row []byte, x []float32) float32 {
	nb := checkBlocks("DotQ4_1", len(x), 32, 20, len(row))
	var s float32
	for b := range nb {
		blk := row[b*20 : b*20+20]
		xs := x[b*32 : b*32+32]
		var qx, sx float32
		for j, q := range blk[4:] {
			qx += float32(q&0xf)*xs[j] + float32(q>>4)*xs[j+16]
			sx += xs[j] + xs[j+16]
		}
		s += F16ToFloat(binary.LittleEndian.Uint16(blk))*qx + F16ToFloat(binary.LittleEndian.Uint16(blk[2:]))*sx
	}
	return s
}

// QuantizeQ4_1 quantizes one row as llama.cpp does (quantize_row_q4_1_ref): m is
// the block's minimum, d its range over 15.
func QuantizeQ4_1(dst []byte, src []float32) {
	nb := checkBlocks("QuantizeQ4_1", len(src), 32, 20, len(dst))
	for b := range nb {
		xs := src[b*32 : b*32+32]
		lo, hi := float32(math.MaxFloat32), float32(-math.MaxFloat32)
		for _, v := range xs {
			lo, hi = min(lo, v), max(hi, v)
		}
		d := (hi - lo) / 15
		var id float32
		if d != 0 {
			id = 1 / d
		}
		blk := dst[b*20 : b*20+20]
		binary.LittleEndian.PutUint16(blk, FloatToF16(d))
		binary.LittleEndian.PutUint16(blk[2:], FloatToF16(lo))
		for j := range 16 {
			q0 := min(15, int8((xs[j]-lo)*id+0.5))
			q1 := min(15, int8((xs[j+16]-lo)*id+0.5))
			blk[4+j] = byte(q0) | byte(q1)<<4
		}
	}
}
