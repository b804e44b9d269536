package tensor

import (
	"encoding/binary"
	"math"
)

// BlockF16 is IEEE half precision, one value per two-byte block.
var BlockF16 = BlockFormat{Name: "F16", Values: 1, Bytes: 2, Dequant: DequantF16, Dot: DotF16, Quantize: QuantizeF16}

// F16ToFloat widens an IEEE half-precision value exactly (subnormals, infinities and
// NaNs included).
func F16ToFloat(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	man := uint32(h & 0x3ff)
	switch exp {
	case 0:
		// ±0 or a subnormal, man·2^-24: exact in float32.
		f := float32(man) * (1.0 / (1 << 24))
		return math.Float32frombits(math.Float32bits(f) | sign)
	case 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | man<<13)
}

// FloatToF16 rounds to the nearest half-precision value, ties to even, as the F16C
// instruction (and so ggml on x86) does: overflow gives ±Inf, NaN stays NaN.
func FloatToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	man := b & 0x7fffff
	if exp == 0xff {
		if man != 0 {
			return sign | 0x7e00 | uint16(man>>13)
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		if e < -10 {
			return sign // below half the smallest subnormal
		}
		man |= 0x800000
		shift := uint32(14 - e)
		v := man >> shift
		rest, half := man&(1<<shift-1), uint32(1)<<(shift-1)
		if rest > half || rest == half && v&1 == 1 {
			v++
		}
		return sign | uint16(v)
	}
	v := uint32(e)<<10 | man>>13
	if rest := man & 0x1fff; rest > 0x1000 || rest == 0x1000 && v&1 == 1 {
		v++ // a carry into the exponent is the right result, up to Inf
	}
	return sign | uint16(v)
}

// DequantF16 widens len(dst) little-endian half-precision values.
func DequantF16(dst []float32, src []byte) {
	checkBlocks("DequantF16", len(dst), 1, 2, len(src))
	for i := range dst {
		dst[i] = F16ToFloat(binary.LittleEndian.Uint16(src[2*i:]))
	}
}

// DotF16 returns Σ row[i]·x[i] over len(x) half-precision values.
func DotF16(row []byte, x []float32) float32 {
	checkBlocks("DotF16", len(x), 1, 2, len(row))
	var s float32
	for i, v := range x {
		s += F16ToFloat(binary.LittleEndian.Uint16(row[2*i:])) * v
	}
	return s
}

// QuantizeF16 rounds len(src) values to half precision.
func QuantizeF16(dst []byte, src []float32) {
	checkBlocks("QuantizeF16", len(src), 1, 2, len(dst))
	for i, v := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], FloatToF16(v))
	}
}
