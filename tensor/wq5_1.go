package tensor

import (
	"encoding/binary"
	"math"
)

// BlockQ5_1 is ggml's Q5_1: blocks of 32 values, half-precision d and m, 4 bytes
// qh of fifth bits and 16 bytes of nibbles laid out as in Q5_0; value = d·q + m.
var BlockQ5_1 = BlockFormat{Name: "Q5_1", Values: 32, Bytes: 24, Dequant: DequantQ5_1, Dot: DotQ5_1, Quantize: QuantizeQ5_1,
	act: actQ8_1, dotAct: dotQ5_1Q8}

// DequantQ5_1 widens one row of n values (n % 32 == 0) from its blocks.
func DequantQ5_1(dst []float32, src []byte) {
	nb := checkBlocks("DequantQ5_1", len(dst), 32, 24, len(src))
	for b := range nb {
		blk := src[b*24 : b*24+24]
		d, m := F16ToFloat(binary.LittleEndian.Uint16(blk)), F16ToFloat(binary.LittleEndian.Uint16(blk[2:]))
		qh := binary.LittleEndian.Uint32(blk[4:])
		out := dst[b*32 : b*32+32]
		for j := range 16 {
			lo, hi := q5Pair(qh, blk[8:], j)
			out[j] = d*float32(lo) + m
			out[j+16] = d*float32(hi) + m
		}
	}
}

// DotQ5_1 returns Σ row[i]·x[i] over len(x) values, computed on the blocks:
// d·Σq·x + m·Σx per block.
func DotQ5_1(row []byte, x []float32) float32 {
	nb := checkBlocks("DotQ5_1", len(x), 32, 24, len(row))
	var s float32
	for b := range nb {
		blk := row[b*24 : b*24+24]
		qh := binary.LittleEndian.Uint32(blk[4:])
		xs := x[b*32 : b*32+32]
		var qx, sx float32
		for j := range 16 {
			lo, hi := q5Pair(qh, blk[8:], j)
			qx += float32(lo)*xs[j] + float32(hi)*xs[j+16]
			sx += xs[j] + xs[j+16]
		}
		s += F16ToFloat(binary.LittleEndian.Uint16(blk))*qx + F16ToFloat(binary.LittleEndian.Uint16(blk[2:]))*sx
	}
	return s
}

// QuantizeQ5_1 quantizes one row as llama.cpp does (quantize_row_q5_1_ref): m is
// the block's minimum, d its range over 31.
func QuantizeQ5_1(dst []byte, src []float32) {
	nb := checkBlocks("QuantizeQ5_1", len(src), 32, 24, len(dst))
	for b := range nb {
		xs := src[b*32 : b*32+32]
		lo, hi := float32(math.MaxFloat32), float32(-math.MaxFloat32)
		for _, v := range xs {
			lo, hi = min(lo, v), max(hi, v)
		}
		d := (hi - lo) / 31
		var id float32
		if d != 0 {
			id = 1 / d
		}
		blk := dst[b*24 : b*24+24]
		binary.LittleEndian.PutUint16(blk, FloatToF16(d))
		binary.LittleEndian.PutUint16(blk[2:], FloatToF16(lo))
		var qh uint32
		for j := range 16 {
			q0 := uint8((xs[j]-lo)*id + 0.5)
			q1 := uint8((xs[j+16]-lo)*id + 0.5)
			blk[8+j] = q0&0xf | (q1&0xf)<<4
			qh |= uint32(q0>>4)<<j | uint32(q1>>4)<<(j+16)
		}
		binary.LittleEndian.PutUint32(blk[4:], qh)
	}
}
