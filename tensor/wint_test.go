package tensor

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// namedDotAct is an integer dot kernel of a format, tested beside the portable one.
type namedDotAct struct {
	name string
	dot  func([]byte, actRow) float32
}

// extraDotActs are the vector integer dots this CPU can run, by format name, and
// extraActQuantizers the vector activation quantizers, by kind (wint_amd64_test.go).
var (
	extraDotActs       = map[string][]namedDotAct{}
	extraActQuantizers = map[actKind][]func(actRow, []float32){}
)

// intFormats are the formats with an integer dot, with the portable one.
var intFormats = []struct {
	f        *BlockFormat
	portable func([]byte, actRow) float32
	halves   []int // offsets of the half-precision fields in a block
	minAt    int   // offset of the half-precision min m of value = d·q + m, or −1
}{
	{&BlockQ8_0, dotQ8_0Q8, []int{0}, -1},
	{&BlockQ4_0, dotQ4_0Q8, []int{0}, -1},
	{&BlockQ5_0, dotQ5_0Q8, []int{0}, -1},
	{&BlockQ4_1, dotQ4_1Q8, []int{0, 2}, 2},
	{&BlockQ5_1, dotQ5_1Q8, []int{0, 2}, 2},
	{&BlockQ4_K, dotQ4_KQ8, []int{0, 2}, -1},
	{&BlockQ5_K, dotQ5_KQ8, []int{0, 2}, -1},
	{&BlockQ6_K, dotQ6_KQ8, []int{208}, -1},
}

// dequant64 returns a row's values in float64 and the magnitudes the dots add,
// |w|, or for a format with a min m (at minAt) |d·q| + |m|: d·q is exact in float32
// (11 bits of d times 5 of q), so w = d·q + m is exact here, not rounded as Dequant's.
func dequant64(f *BlockFormat, minAt int, row []byte) (w, mag []float64) {
	n := len(row) / f.Bytes * f.Values
	w32 := make([]float32, n)
	w, mag = make([]float64, n), make([]float64, n)
	if minAt < 0 {
		f.Dequant(w32, row)
		for i, v := range w32 {
			w[i], mag[i] = float64(v), math.Abs(float64(v))
		}
		return w, mag
	}
	noMin := append([]byte(nil), row...)
	for b := 0; b < len(row); b += f.Bytes {
		binary.LittleEndian.PutUint16(noMin[b+minAt:], 0)
	}
	f.Dequant(w32, noMin)
	for i, v := range w32 {
		m := float64(f16At(row[i/f.Values*f.Bytes+minAt:]))
		w[i], mag[i] = float64(v)+m, math.Abs(float64(v))+math.Abs(m)
	}
	return w, mag
}

// quantizedRow quantizes x as kind with the portable quantizer (set's buffers, then
// the portable one over what the installed one wrote).
func quantizedRow(kind actKind, x []float32) actRow {
	var a actRows
	a.set(kind, x, 1, len(x))
	r := a.row(0)
	switch kind {
	case actQ8_K:
		quantizeActQ8_KGo(r, x)
	case actQ8_1:
		quantizeActQ8_0Go(r, x)
		sumBlocks32(r)
	default:
		quantizeActQ8_0Go(r, x)
	}
	return r
}

// actValues are the values a quantized row stands for, D·code, in float64.
func actValues(a actRow) []float64 {
	per := len(a.Qs) / len(a.D)
	v := make([]float64, len(a.Qs))
	for i, q := range a.Qs {
		v[i] = float64(a.D[i/per]) * float64(q)
	}
	return v
}

// actErrBound is, per value of x, the bound on |x − D·code| that 8-bit rounding
// allows: half a step of the block's ideal scale max|x|/127, plus the float32 rounding
// of the scale's reciprocal and of x times it (a few units of 2⁻²⁴ of 127 steps),
// and for actQ8_0 and actQ8_1 the half-precision rounding of the stored scale (2⁻¹¹ relative, or
// 2⁻²⁵ absolute where it is subnormal) times the largest code, 127.
func actErrBound(kind actKind, x []float32) []float64 {
	per := 32
	if kind == actQ8_K {
		per = kBlock
	}
	e := make([]float64, len(x))
	for b := 0; b < len(x); b += per {
		var amax float64
		for _, v := range x[b : b+per] {
			amax = max(amax, math.Abs(float64(v)))
		}
		step := amax / 127
		bound := step * (0.5 + 4*127*0x1p-24)
		if kind != actQ8_K {
			bound += 127 * (step*0x1p-11 + 0x1p-25)
		}
		for i := b; i < b+per; i++ {
			e[i] = bound
		}
	}
	return e
}

// TestActQuantize checks the activation quantizers: each value within actErrBound
// of D·code; for actQ8_K the value of largest magnitude maps to −127; Sums are the
// sums of 16 codes (actQ8_K) or 32 (actQ8_1); an all-zero block is scale 0 and codes 0; every vector
// quantizer writes the same codes and scales as the portable one.
func TestActQuantize(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, kind := range []actKind{actQ8_0, actQ8_K, actQ8_1} {
		per := 32
		if kind == actQ8_K {
			per = kBlock
		}
		for _, nb := range []int{1, 2, 3, 7} {
			n := nb * per
			x := gaussRow(r, n, 1)
			for b := range nb {
				scale := float32(math.Pow(10, float64(r.IntN(7)-3)))
				for i := b * per; i < (b+1)*per; i++ {
					x[i] *= scale
				}
			}
			clear(x[(nb-1)*per:]) // the last block all zero
			a := quantizedRow(kind, x)
			v, e := actValues(a), actErrBound(kind, x)
			for i := range x {
				if d := math.Abs(float64(x[i]) - v[i]); !(d <= e[i]) {
					t.Fatalf("kind %d, %d blocks: value %d: %g stands for %g, off by %g > bound %g", kind, nb, i, x[i], v[i], d, e[i])
				}
			}
			if a.D[nb-1] != 0 {
				t.Errorf("kind %d: all-zero block has scale %g", kind, a.D[nb-1])
			}
			if kind == actQ8_K {
				for b := range nb - 1 {
					var amax float32
					at := 0
					for i := b * per; i < (b+1)*per; i++ {
						if abs32(x[i]) > amax {
							amax, at = abs32(x[i]), i
						}
					}
					if a.Qs[at] != -127 {
						t.Errorf("block %d: largest magnitude %g has code %d, want -127", b, x[at], a.Qs[at])
					}
				}
			}
			if sumOf := map[actKind]int{actQ8_K: 16, actQ8_1: 32}[kind]; sumOf > 0 {
				if len(a.Sums) != n/sumOf {
					t.Fatalf("kind %d: %d sums for %d codes, want %d", kind, len(a.Sums), n, n/sumOf)
				}
				for j := range n / sumOf {
					var s int
					for _, q := range a.Qs[sumOf*j : sumOf*j+sumOf] {
						s += int(q)
					}
					if int(a.Sums[j]) != s {
						t.Fatalf("kind %d: sum %d is %d, codes sum to %d", kind, j, a.Sums[j], s)
					}
				}
			}
			var installed actRows // set's quantizer and sums, as the products use them
			installed.set(kind, x, 1, n)
			if in := installed.row(0); !slices.Equal(in.Qs, a.Qs) || !slices.Equal(in.D, a.D) || !slices.Equal(in.Sums, a.Sums) {
				t.Fatalf("kind %d, %d blocks: set's row differs from the portable quantizer's", kind, nb)
			}
			for vi, quant := range extraActQuantizers[kind] {
				var b actRows
				b.set(kind, x, 1, n)
				got := b.row(0)
				clear(got.Qs)
				clear(got.D)
				clear(got.Sums)
				quant(got, x)
				for i := range a.Qs {
					if got.Qs[i] != a.Qs[i] {
						t.Fatalf("kind %d vector quantizer %d: code %d (x %g) is %d, portable %d", kind, vi, i, x[i], got.Qs[i], a.Qs[i])
					}
				}
				for i := range a.D {
					if got.D[i] != a.D[i] {
						t.Fatalf("kind %d vector quantizer %d: scale %d is %g, portable %g", kind, vi, i, got.D[i], a.D[i])
					}
				}
				for i := range a.Sums {
					if got.Sums[i] != a.Sums[i] {
						t.Fatalf("kind %d vector quantizer %d: sum %d is %d, portable %d", kind, vi, i, got.Sums[i], a.Sums[i])
					}
				}
			}
		}
	}
}

// TestIntDot checks each format's integer dot on rows of 1, 2, 3, 5 and 16 blocks,
// of weights its Quantize wrote and of random bytes (every code and scale pattern),
// with activations of a different magnitude per block:
//   - every vector kernel returns the portable one's bits (they sum the same exact
//     integers and round the same float32 operations in the same order);
//   - the portable one equals the float64 sum of the dequantized weights times the
//     values the quantized activations stand for, up to float32 rounding of the
//     scaling and summation: (blocks+8)·2⁻²³ of the sum of magnitudes (of d·q and m
//     apart for the formats with a min, which the dots add apart);
//   - against the original activations it errs by at most Σ|wᵢ|·actErrBound(xᵢ) more.
func TestIntDot(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, c := range intFormats {
		f := c.f
		for _, nb := range []int{1, 2, 3, 5, 16} {
			for trial := range 12 {
				n := nb * f.Values
				row := make([]byte, nb*f.Bytes)
				if trial%2 == 0 {
					for b := range nb {
						f.Quantize(row[b*f.Bytes:(b+1)*f.Bytes], gaussRow(r, f.Values, math.Pow(2, float64(r.IntN(9)-4))))
					}
				} else {
					for i := range row {
						row[i] = byte(r.Uint32())
					}
					for b := range nb {
						for _, o := range c.halves {
							binary.LittleEndian.PutUint16(row[b*f.Bytes+o:], FloatToF16(float32(r.NormFloat64()/64)))
						}
					}
				}
				w, wmag := dequant64(f, c.minAt, row)
				x := gaussRow(r, n, 1)
				for b := 0; b < n; b += 32 {
					s := float32(math.Pow(2, float64(r.IntN(9)-4)))
					for i := b; i < b+32; i++ {
						x[i] *= s
					}
				}
				a := quantizedRow(f.act, x)
				xq, e := actValues(a), actErrBound(f.act, x)
				var wantQ, want, magQ, mag, quantErr float64
				for i, wi := range w {
					wantQ += wi * xq[i]
					want += wi * float64(x[i])
					magQ += wmag[i] * math.Abs(xq[i])
					mag += wmag[i] * math.Abs(float64(x[i]))
					quantErr += math.Abs(wi) * e[i]
				}
				roundQ := float64(nb+8) * 0x1p-23 * magQ
				got := c.portable(row, a)
				if d := math.Abs(float64(got) - wantQ); !(d <= roundQ) {
					t.Fatalf("%s portable, %d blocks, trial %d: %g, float64 sum over quantized x %g: off by %g > %g", f.Name, nb, trial, got, wantQ, d, roundQ)
				}
				if d := math.Abs(float64(got) - want); !(d <= quantErr+roundQ+float64(nb+8)*0x1p-23*mag) {
					t.Fatalf("%s portable, %d blocks, trial %d: %g, float64 sum %g: off by %g > 8-bit bound %g", f.Name, nb, trial, got, want, d, quantErr)
				}
				for _, k := range extraDotActs[f.Name] {
					if v := k.dot(row, a); math.Float32bits(v) != math.Float32bits(got) {
						t.Fatalf("%s %s, %d blocks, trial %d: %g, portable %g", f.Name, k.name, nb, trial, v, got)
					}
				}
			}
		}
	}
}

// TestIntDotExtremes: codes at the ends of their ranges (activations ±127, weight
// levels and scales at their largest) keep the integer sums exact: every kernel
// equals the float64 product sum, which such rows make large.
func TestIntDotExtremes(t *testing.T) {
	for _, c := range intFormats {
		f := c.f
		const nb = 3
		n := nb * f.Values
		for _, sign := range []float32{1, -1} {
			row := make([]byte, nb*f.Bytes)
			for i := range row {
				row[i] = 0xff
			}
			switch f {
			case &BlockQ8_0:
				for i := range row {
					row[i] = 0x81 // −127
				}
			case &BlockQ5_0: // level −16
				for b := range nb {
					clear(row[b*f.Bytes+2 : (b+1)*f.Bytes])
				}
			case &BlockQ6_K: // level −32, scale −128
				for b := range nb {
					clear(row[b*f.Bytes : b*f.Bytes+192])
					for i := 192; i < 208; i++ {
						row[b*f.Bytes+i] = 0x80
					}
				}
			}
			for b := range nb {
				for _, o := range c.halves {
					binary.LittleEndian.PutUint16(row[b*f.Bytes+o:], FloatToF16(1.0/64))
				}
			}
			if f == &BlockQ4_K || f == &BlockQ5_K {
				for b := range nb { // dmin 0, so that the sums are as large as they get
					binary.LittleEndian.PutUint16(row[b*f.Bytes+2:], 0)
				}
			}
			x := make([]float32, n)
			for i := range x {
				x[i] = sign
			}
			w, wmag := dequant64(f, c.minAt, row)
			a := quantizedRow(f.act, x)
			xq := actValues(a)
			var want, mag float64
			for i := range w {
				want += w[i] * xq[i]
				mag += wmag[i] * math.Abs(xq[i])
			}
			for _, k := range append([]namedDotAct{{"portable", c.portable}}, extraDotActs[f.Name]...) {
				if got := k.dot(row, a); !(math.Abs(float64(got)-want) <= float64(nb+8)*0x1p-23*mag) {
					t.Errorf("%s %s, sign %g: %g, float64 sum %g", f.Name, k.name, sign, got, want)
				}
			}
		}
	}
}

// BenchmarkActQuantize: one activation row of 2048 values quantized per kind.
func BenchmarkActQuantize(b *testing.B) {
	x := gaussRow(rand.New(rand.NewPCG(1, 2)), 2048, 1)
	for _, kind := range []actKind{actQ8_0, actQ8_K, actQ8_1} {
		var a actRows
		b.Run([]string{"Q8_0", "Q8_K"}[kind], func(b *testing.B) {
			for b.Loop() {
				a.set(kind, x, 1, len(x))
			}
		})
	}
}

// TestNearestInt32 checks the magic-number rounding against math.RoundToEven over
// the range the quantizers use, ties included.
func TestNearestInt32(t *testing.T) {
	for _, f := range []float32{0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, -126.5, 127, -127, 0.49999997, -0.49999997, 127.00001} {
		if got, want := nearestInt32(f), int32(math.RoundToEven(float64(f))); got != want {
			t.Errorf("nearestInt32(%g) = %d, want %d", f, got, want)
		}
	}
	r := rand.New(rand.NewPCG(13, 14))
	for range 100000 {
		f := float32(r.Float64()*300 - 150)
		if got, want := nearestInt32(f), int32(math.RoundToEven(float64(f))); got != want {
			t.Fatalf("nearestInt32(%g) = %d, want %d", f, got, want)
		}
	}
}
