package tensor

import (
	"encoding/binary"
	"math"
)

// BlockQ6_K is ggml's Q6_K: super-blocks of 256 values in 210 bytes: 128 bytes ql
// of low nibbles, 64 bytes qh of high bit pairs, 16 int8 scales of 16-value
// sub-blocks, then the half-precision d; value = d·scale·(q − 32). Each half of 128
// values h uses ql[64h:64h+64], qh[32h:32h+32] and scales[8h:8h+8]: value 32k+l of
// the half (k < 4, l < 32) has its low nibble in ql[l+32(k&1)] (low nibble for k <
// 2, high for k ≥ 2) and its high bits in bits 2k, 2k+1 of qh[l].
var BlockQ6_K = BlockFormat{Name: "Q6_K", Values: kBlock, Bytes: 210, Dequant: DequantQ6_K, Dot: DotQ6_K, Quantize: QuantizeQ6_K,
	act: actQ8_K, dotAct: dotQ6_KQ8}

// q6Level returns the signed level (−32…31) of value 32k+l of half h.
func q6Level(blk []byte, h, k, l int) int {
	lo := blk[64*h+l+32*(k&1)] >> (4 * (k >> 1)) & 0xf
	hi := blk[128+32*h+l] >> (2 * k) & 3
	return int(lo|hi<<4) - 32
}

// DequantQ6_K widens one row of n values (n % 256 == 0) from its blocks.
func DequantQ6_K(dst []float32, src []byte) {
	nb := checkBlocks("DequantQ6_K", len(dst), kBlock, 210, len(src))
	for b := range nb {
		blk := src[b*210 : b*210+210]
		d := F16ToFloat(binary.LittleEndian.Uint16(blk[208:]))
		out := dst[b*kBlock:]
		for h := range 2 {
			for k := range 4 {
				for l := range 32 {
					sc := float32(int8(blk[192+8*h+2*k+l/16]))
					out[128*h+32*k+l] = d * sc * float32(q6Level(blk, h, k, l))
				}
			}
		}
	}
}

// DotQ6_K returns Σ row[i]·x[i] over len(x) values, computed on the blocks: per
// 16-value sub-block scale·Σq·x, times d.
func DotQ6_K(row []byte, x []float32) float32 {
	nb := checkBlocks("DotQ6_K", len(x), kBlock, 210, len(row))
	var s float32
	for b := range nb {
		blk := row[b*210 : b*210+210]
		xs := x[b*kBlock:]
		var bs float32
		for h := range 2 {
			for k := range 4 {
				for half := range 2 {
					var q float32
					for l := 16 * half; l < 16*half+16; l++ {
						q += float32(q6Level(blk, h, k, l)) * xs[128*h+32*k+l]
					}
					bs += float32(int8(blk[192+8*h+2*k+half])) * q
				}
			}
		}
		s += F16ToFloat(binary.LittleEndian.Uint16(blk[208:])) * bs
	}
	return s
}

// QuantizeQ6_K quantizes one row into valid Q6_K blocks. A sub-block's scale maps its
// value of largest magnitude to −32 (the start of llama.cpp's make_qx_quants search,
// without the search); the rest follows quantize_row_q6_K_ref.
func QuantizeQ6_K(dst []byte, src []float32) {
	nb := checkBlocks("QuantizeQ6_K", len(src), kBlock, 210, len(dst))
	for b := range nb {
		blk := dst[b*210 : b*210+210]
		clear(blk)
		xs := src[b*kBlock : (b+1)*kBlock]
		var scales [16]float32
		var maxScale, maxAbs float32
		for ib := range 16 {
			var amax, mx float32
			for _, v := range xs[16*ib : 16*ib+16] {
				if a := float32(math.Abs(float64(v))); a > amax {
					amax, mx = a, v
				}
			}
			scales[ib] = mx / -32
			if a := float32(math.Abs(float64(scales[ib]))); a > maxAbs {
				maxAbs, maxScale = a, scales[ib]
			}
		}
		if maxAbs < 1e-15 {
			continue // all zero: d = 0
		}
		iscale := -128 / maxScale
		binary.LittleEndian.PutUint16(blk[208:], FloatToF16(1/iscale))
		d := F16ToFloat(binary.LittleEndian.Uint16(blk[208:]))
		var L [kBlock]uint8
		for ib := range 16 {
			sc := int8(min(127, nearestInt(iscale*scales[ib])))
			blk[192+ib] = byte(sc)
			dl := d * float32(sc)
			for i := 16 * ib; i < 16*ib+16; i++ {
				L[i] = 32
				if dl != 0 {
					L[i] = uint8(max(-32, min(31, nearestInt(xs[i]/dl))) + 32)
				}
			}
		}
		for h := range 2 {
			for l := range 32 {
				q := func(k int) uint8 { return L[128*h+32*k+l] }
				blk[64*h+l] = q(0)&0xf | (q(2)&0xf)<<4
				blk[64*h+l+32] = q(1)&0xf | (q(3)&0xf)<<4
				blk[128+32*h+l] = q(0)>>4 | (q(1)>>4)<<2 | (q(2)>>4)<<4 | (q(3)>>4)<<6
			}
		}
	}
}
