package tensor

import "fmt"

// Kernels over quantized rows, for decode attention straight on a quantized KV
// cache: the codes are widened to float32 in registers, never stored. 8-bit rows hold
// one unsigned code per byte; 4-bit rows two per byte, code c of a row in byte c/2,
// the low nibble for even c. AxpyDequantU4 keeps its sums in nibble order
// (NibbleOrder): within each block of 32, the 16 even entries, then the 16 odd ones,
// which is how a vector of bytes splits into low and high nibbles.

// DotRowsU8 sets dst[h*rows+j] = Σ_c y[h*k+c]·(codes[j*stride+c]·sc[c] + mn[c]) for
// h < m, j < rows = len(dst)/m, c < k = len(y)/m: m queries against the same 8-bit
// rows dequantized with a scale and a minimum per channel (a quantized cache's key
// group), each row widened once for all of them (as DotRowsU4).
func DotRowsU8(dst, y []float32, m int, codes []uint8, stride int, sc, mn []float32) {
	checkKeyRows("DotRowsU8", dst, y, m, codes, stride, 1, sc, mn)
	if len(y) == 0 {
		clear(dst)
	} else if len(dst) > 0 {
		active.dotRowsU8(dst, y, m, codes, stride, sc, mn)
	}
}

// DotRowsU4 is DotRowsU8 for the 4-bit codes of row j from codes[j*stride:], k a
// multiple of 32 (y, sc and mn in natural order). The queries share each row's
// widening, which is most of the cost for one (a grouped-query attention's query
// heads share their KV head's keys).
func DotRowsU4(dst, y []float32, m int, codes []uint8, stride int, sc, mn []float32) {
	checkKeyRows("DotRowsU4", dst, y, m, codes, stride, 2, sc, mn)
	if len(y) == 0 {
		clear(dst)
	} else if len(dst) > 0 {
		active.dotRowsU4(dst, y, m, codes, stride, sc, mn)
	}
}

// checkKeyRows panics unless the arguments of DotRowsU8/U4 fit: m queries of k
// channels, as many rows of codes as dst has scores per query, a scale and a minimum
// per channel.
func checkKeyRows(name string, dst, y []float32, m int, codes []uint8, stride, per int, sc, mn []float32) {
	checkQueries(name, len(dst), len(y), m)
	k := len(y) / m
	checkCodes(name, len(dst)/m, k, codes, stride, per)
	if min(len(sc), len(mn)) < k {
		panic(fmt.Sprintf("tensor.%s: %d channels: have %d scales, %d minima", name, k, len(sc), len(mn)))
	}
}

// AxpyDequantU8 sets y[h*k+c] += Σ_j p[h*rows+j]·(codes[j*stride+c]·sc[j*ng+c/g] +
// mn[j*ng+c/g]) for h < m, c < k = len(y)/m, j < rows = len(p)/m, with ng = ⌈k/g⌉: m
// p-weighted sums of the same rows quantized with a scale and a minimum per row and
// group of g columns (a quantized cache's values for the query heads of one KV head),
// each row dequantized in registers once for all m.
func AxpyDequantU8(y, p []float32, m int, codes []uint8, stride int, sc, mn []float32, g int) {
	checkQueries("AxpyDequantU8", len(y), len(p), m)
	checkCodes("AxpyDequantU8", len(p)/m, len(y)/m, codes, stride, 1)
	checkGroups("AxpyDequantU8", len(y)/m, sc, mn, g, len(p)/m, 1)
	if len(p) > 0 && len(y) > 0 {
		active.axpyDequantU8(y, p, m, codes, stride, sc, mn, g)
	}
}

// AxpyDequantU4 is AxpyDequantU8 for 4-bit codes, with each y in nibble order; k and g
// must be multiples of 32 (c/g is the group of natural column c).
func AxpyDequantU4(y, p []float32, m int, codes []uint8, stride int, sc, mn []float32, g int) {
	checkQueries("AxpyDequantU4", len(y), len(p), m)
	checkCodes("AxpyDequantU4", len(p)/m, len(y)/m, codes, stride, 2)
	checkGroups("AxpyDequantU4", len(y)/m, sc, mn, g, len(p)/m, 32)
	if len(p) > 0 && len(y) > 0 {
		active.axpyDequantU4(y, p, m, codes, stride, sc, mn, g)
	}
}

func checkGroups(name string, k int, sc, mn []float32, g, rows, mult int) {
	if g < 1 || g%mult != 0 || min(len(sc), len(mn)) < rows*((k+g-1)/g) {
		panic(fmt.Sprintf("tensor.%s: %d rows of %d columns in groups of %d: have %d scales, %d minima", name, rows, k, g, len(sc), len(mn)))
	}
}

// NibbleOrder writes x into dst in nibble order; len(x) must be a multiple of 32.
func NibbleOrder(dst, x []float32) {
	dst = dst[:len(x)]
	for b := 0; b+32 <= len(x); b += 32 {
		for i := range 16 {
			dst[b+i], dst[b+16+i] = x[b+2*i], x[b+2*i+1]
		}
	}
}

// NibbleUnorder undoes NibbleOrder.
func NibbleUnorder(dst, x []float32) {
	dst = dst[:len(x)]
	for b := 0; b+32 <= len(x); b += 32 {
		for i := range 16 {
			dst[b+2*i], dst[b+2*i+1] = x[b+i], x[b+16+i]
		}
	}
}

// checkQueries panics unless m ≥ 1 queries split values and outs evenly.
func checkQueries(name string, outs, values, m int) {
	if m < 1 || values%m != 0 || outs%m != 0 {
		panic(fmt.Sprintf("tensor.%s: %d queries in %d values, %d outputs", name, m, values, outs))
	}
}

// checkCodes panics unless rows rows of k codes (per codes to a byte) fit codes at
// stride, and a 4-bit k is a multiple of 32.
func checkCodes(name string, rows, k int, codes []uint8, stride, per int) {
	bytes := (k + per - 1) / per
	need := 0
	if rows > 0 && k > 0 {
		need = (rows-1)*stride + bytes
	}
	if per == 2 && k%32 != 0 || stride < bytes || len(codes) < need {
		panic(fmt.Sprintf("tensor.%s: %d rows of %d codes at stride %d: have %d bytes", name, rows, k, stride, len(codes)))
	}
}

// scaledQuery returns y·sc (channel by channel) and y·mn, in buf when it is long enough.
func scaledQuery(buf, y, sc, mn []float32) ([]float32, float32) {
	ys := buf[:0]
	if cap(buf) < len(y) {
		ys = make([]float32, 0, len(y))
	}
	var bias float32
	for c, v := range y {
		ys = append(ys, v*sc[c])
		bias += v * mn[c]
	}
	return ys, bias
}

func dotRowsU8Go(dst, y []float32, m int, codes []uint8, stride int, sc, mn []float32) {
	k, rows := len(y)/m, len(dst)/m
	var buf [256]float32
	for h := range m {
		ys, bias := scaledQuery(buf[:], y[h*k:(h+1)*k], sc, mn)
		for j := range rows {
			row := codes[j*stride : j*stride+k]
			var s0, s1, s2, s3 float32
			c := 0
			for ; c+4 <= k; c += 4 {
				s0 += ys[c] * float32(row[c])
				s1 += ys[c+1] * float32(row[c+1])
				s2 += ys[c+2] * float32(row[c+2])
				s3 += ys[c+3] * float32(row[c+3])
			}
			for ; c < k; c++ {
				s0 += ys[c] * float32(row[c])
			}
			dst[h*rows+j] = (s0 + s1) + (s2 + s3) + bias
		}
	}
}

func dotRowsU4Go(dst, y []float32, m int, codes []uint8, stride int, sc, mn []float32) {
	k, rows := len(y)/m, len(dst)/m
	var buf [256]float32
	for h := range m {
		ys, bias := scaledQuery(buf[:], y[h*k:(h+1)*k], sc, mn)
		for j := range rows {
			row := codes[j*stride : j*stride+k/2]
			var s0, s1 float32
			for i, v := range row {
				s0 += ys[2*i] * float32(v&15)
				s1 += ys[2*i+1] * float32(v>>4)
			}
			dst[h*rows+j] = s0 + s1 + bias
		}
	}
}

func axpyDequantU8Go(y, p []float32, m int, codes []uint8, stride int, sc, mn []float32, g int) {
	k, rows := len(y)/m, len(p)/m
	ng := (k + g - 1) / g
	for h := range m {
		yh := y[h*k : (h+1)*k]
		for j, pj := range p[h*rows : (h+1)*rows] {
			row, s, mj := codes[j*stride:j*stride+k], sc[j*ng:(j+1)*ng], mn[j*ng:(j+1)*ng]
			for c, v := range row {
				yh[c] += pj * (float32(v)*s[c/g] + mj[c/g])
			}
		}
	}
}

func axpyDequantU4Go(y, p []float32, m int, codes []uint8, stride int, sc, mn []float32, g int) {
	k, rows := len(y)/m, len(p)/m
	ng := (k + g - 1) / g
	for h := range m {
		yh := y[h*k : (h+1)*k]
		for j, pj := range p[h*rows : (h+1)*rows] {
			row, s, mj := codes[j*stride:j*stride+k/2], sc[j*ng:(j+1)*ng], mn[j*ng:(j+1)*ng]
			for b := 0; b < k; b += 32 {
				yb, rb, sb, mb := yh[b:b+32], row[b/2:b/2+16], s[b/g], mj[b/g]
				for i, v := range rb {
					yb[i] += pj * (float32(v&15)*sb + mb)
					yb[16+i] += pj * (float32(v>>4)*sb + mb)
				}
			}
		}
	}
}
