package tensor

import (
	"encoding/binary"
	"math"
)

// Integer dot products for decode, as llama.cpp computes its quantized matrix-vector
// products: the activation row is quantized to 8 bits once per product (llama.cpp's
// vec_dot_type of the weight type), and each weight row's dot is an exact integer sum
// per block, with float32 only for the scales. The float kernels (w*.go) stay for the
// GEMM (pre-fill) and where this does not pay.

// actKind is the 8-bit form a format's dotAct wants of the activations.
type actKind uint8

const (
	actQ8_0 actKind = iota // blocks of 32: one scale each (llama.cpp's block_q8_0)
	actQ8_K                // blocks of 256: one scale and the sums of each 16 codes (block_q8_K)
	actQ8_1                // actQ8_0 and each block's code sum, for the formats with a min (block_q8_1, whose sum is d·Σ in half precision)
	actKinds
)

// actRow is one activation row quantized to 8 bits: value i ≈ D[i/block]·Qs[i], with
// block 32 (actQ8_0, actQ8_1) or 256 (actQ8_K); for actQ8_K, Sums[j] = Σ Qs[16j:16j+16],
// for actQ8_1 Sums[j] = Σ Qs[32j:32j+32].
type actRow struct {
	Qs   []int8
	D    []float32
	Sums []int16
}

// actRows holds m quantized activation rows of k values, reused across calls.
type actRows struct {
	kind actKind
	k    int
	qs   []int8
	d    []float32
	sums []int16
}

// set quantizes the m rows of x (k values each) as kind, reusing the buffers.
func (a *actRows) set(kind actKind, x []float32, m, k int) {
	a.kind, a.k = kind, k
	switch kind {
	case actQ8_K:
		a.d = grow(a.d, m*k/kBlock)
		a.sums = growInt16(a.sums, m*k/16)
	case actQ8_1:
		a.d = grow(a.d, m*k/32)
		a.sums = growInt16(a.sums, m*k/32)
	default:
		a.d = grow(a.d, m*k/32)
	}
	a.qs = growInt8(a.qs, m*k)
	for i := range m {
		switch kind {
		case actQ8_K:
			quantizeActQ8_K(a.row(i), x[i*k:(i+1)*k])
		case actQ8_1:
			quantizeActQ8_0(a.row(i), x[i*k:(i+1)*k])
			sumBlocks32(a.row(i))
		default:
			quantizeActQ8_0(a.row(i), x[i*k:(i+1)*k])
		}
	}
}

// row is row i.
func (a *actRows) row(i int) actRow {
	k := a.k
	switch a.kind {
	case actQ8_K:
		return actRow{Qs: a.qs[i*k : (i+1)*k], D: a.d[i*k/kBlock : (i+1)*k/kBlock], Sums: a.sums[i*k/16 : (i+1)*k/16]}
	case actQ8_1:
		return actRow{Qs: a.qs[i*k : (i+1)*k], D: a.d[i*k/32 : (i+1)*k/32], Sums: a.sums[i*k/32 : (i+1)*k/32]}
	}
	return actRow{Qs: a.qs[i*k : (i+1)*k], D: a.d[i*k/32 : (i+1)*k/32]}
}

func growInt8(s []int8, n int) []int8 {
	if cap(s) < n {
		return make([]int8, n)
	}
	return s[:n]
}

func growInt16(s []int16, n int) []int16 {
	if cap(s) < n {
		return make([]int16, n)
	}
	return s[:n]
}

// The quantizers are variables so that amd64 builds can install vector versions,
// which must write the same codes and scales.
var (
	quantizeActQ8_0 = quantizeActQ8_0Go
	quantizeActQ8_K = quantizeActQ8_KGo
)

// quantizeActQ8_0Go quantizes x in blocks of 32 as llama.cpp's x86 quantize_row_q8_0:
// the scale is max|x|/127 rounded to half precision (block_q8_0 stores it so), the
// codes round(x·127/max|x|) with ties to even (_mm256_round_ps's nearest).
func quantizeActQ8_0Go(r actRow, x []float32) {
	for b := range len(x) / 32 {
		xs := x[b*32 : b*32+32]
		var amax float32
		for _, v := range xs {
			amax = max(amax, abs32(v))
		}
		r.D[b] = F16ToFloat(FloatToF16(amax / 127))
		var id float32
		if amax != 0 {
			id = 127 / amax
		}
		q := r.Qs[b*32 : b*32+32]
		for i, v := range xs {
			q[i] = int8(max(-127, min(127, nearestInt32(v*id))))
		}
	}
}

// quantizeActQ8_KGo quantizes x in blocks of 256 as llama.cpp's quantize_row_q8_K_ref:
// the value of largest magnitude maps to −127, codes are nearest(x·(−127/max)) capped
// at 127, the scale is 1/(−127/max), and Sums holds the sums of each 16 codes.
func quantizeActQ8_KGo(r actRow, x []float32) {
	for b := range len(x) / kBlock {
		xs := x[b*kBlock : (b+1)*kBlock]
		q := r.Qs[b*kBlock : (b+1)*kBlock]
		var amax, mx float32
		for _, v := range xs {
			if a := abs32(v); a > amax {
				amax, mx = a, v
			}
		}
		if amax == 0 {
			r.D[b] = 0
			clear(q)
			clear(r.Sums[16*b : 16*b+16])
			continue
		}
		iscale := -127 / mx
		sums := r.Sums[16*b : 16*b+16]
		for j := range sums {
			var s int32
			for i, v := range xs[16*j : 16*j+16] {
				c := max(-127, min(127, nearestInt32(iscale*v)))
				q[16*j+i] = int8(c)
				s += c
			}
			sums[j] = int16(s)
		}
		r.D[b] = 1 / iscale
	}
}

// sumBlocks32 sets r.Sums to the sums of each 32 codes (at most 32·127 in magnitude):
// actQ8_1's, computed once per row rather than in every weight row's dot.
func sumBlocks32(r actRow) {
	for j := range r.Sums {
		var s int16
		for _, q := range r.Qs[32*j : 32*j+32] {
			s += int16(q)
		}
		r.Sums[j] = s
	}
}

// nearestInt32 rounds f (|f| < 2²²) to the nearest integer, ties to even, as ggml's
// nearest_int: adding 1.5·2²³ leaves the integer in the low mantissa bits.
func nearestInt32(f float32) int32 {
	return int32(math.Float32bits(f+12582912)&0x7fffff) - 0x400000
}

// sumLanes16 adds the 16 lane accumulators of the 32-value formats' integer dots in
// the order of their vector kernels: lanes l and l+8, then as wdot_amd64.h's SUMY0
// does (l and l+4, then pairs), so that every kernel returns the same bits.
func sumLanes16(acc *[16]float32) float32 {
	var t [8]float32
	for l := range 8 {
		t[l] = acc[l] + acc[l+8]
	}
	u0, u1, u2, u3 := t[0]+t[4], t[1]+t[5], t[2]+t[6], t[3]+t[7]
	return float32(u0+u1) + float32(u2+u3)
}

// f16At is the half-precision value at b[0:2].
func f16At(b []byte) float32 { return F16ToFloat(binary.LittleEndian.Uint16(b)) }
