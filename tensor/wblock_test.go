package tensor

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
)

var blockFormats = []*BlockFormat{&BlockF16, &BlockQ8_0, &BlockQ4_0, &BlockQ4_1, &BlockQ5_0, &BlockQ5_1, &BlockQ4_K, &BlockQ5_K, &BlockQ6_K}

// f16Value is the value of a half-precision bit pattern by the IEEE formula.
func f16Value(h uint16) float64 {
	s := 1.0
	if h&0x8000 != 0 {
		s = -1
	}
	e, m := int(h>>10&0x1f), float64(h&0x3ff)
	switch e {
	case 0:
		return s * m * math.Pow(2, -24)
	case 31:
		if m != 0 {
			return math.NaN()
		}
		return s * math.Inf(1)
	}
	return s * (1 + m/1024) * math.Pow(2, float64(e-15))
}

func TestF16Exhaustive(t *testing.T) {
	for i := range 1 << 16 {
		h := uint16(i)
		got, want := F16ToFloat(h), f16Value(h)
		if math.IsNaN(want) {
			if !math.IsNaN(float64(got)) || !math.IsNaN(float64(F16ToFloat(FloatToF16(got)))) {
				t.Fatalf("%#04x: NaN not kept", h)
			}
			continue
		}
		if float64(got) != want || math.Signbit(float64(got)) != (h&0x8000 != 0) {
			t.Fatalf("F16ToFloat(%#04x) = %g, want %g", h, got, want)
		}
		if back := FloatToF16(got); back != h {
			t.Fatalf("FloatToF16(%g) = %#04x, want %#04x", got, back, h)
		}
	}
}

func TestF16Rounding(t *testing.T) {
	cases := []struct {
		f    float64
		want uint16
	}{
		{1 + math.Pow(2, -11), 0x3c00},   // tie: down to even
		{1 + 3*math.Pow(2, -11), 0x3c02}, // tie: up to even
		{1 + 1.01*math.Pow(2, -11), 0x3c01},
		{65504, 0x7bff},
		{65519.99, 0x7bff},
		{65520, 0x7c00}, // tie between the largest finite and the next power: even is Inf
		{math.Pow(2, -24), 0x0001},
		{math.Pow(2, -25), 0x0000}, // tie: to even zero
		{1.5 * math.Pow(2, -25), 0x0001},
		{3 * math.Pow(2, -25), 0x0002}, // tie between 1 and 2 subnormal units: even
		{-2, 0xc000},
		{1e10, 0x7c00},
	}
	for _, c := range cases {
		if got := FloatToF16(float32(c.f)); got != c.want {
			t.Errorf("FloatToF16(%g) = %#04x, want %#04x", c.f, got, c.want)
		}
	}
	// Random values round to a nearest neighbour.
	r := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		f := float32(r.NormFloat64() * math.Pow(2, float64(r.IntN(40)-25)))
		h := FloatToF16(f)
		got := math.Abs(float64(f) - f16Value(h))
		for _, n := range []uint16{h - 1, h + 1} {
			if v := f16Value(n); n&0x7c00 != 0x7c00 && !math.IsNaN(v) && math.Signbit(v) == math.Signbit(float64(f)) &&
				math.Abs(float64(f)-v) < got {
				t.Fatalf("FloatToF16(%g) = %#04x, but %#04x is nearer", f, h, n)
			}
		}
	}
}

func put16(b []byte, f float32) { binary.LittleEndian.PutUint16(b, FloatToF16(f)) }

// checkDequant compares a format's Dequant of a hand-made row with the values
// computed by hand from the layout.
func checkDequant(t *testing.T, f *BlockFormat, blk []byte, want func(i int) float64) {
	t.Helper()
	n := len(blk) / f.Bytes * f.Values
	got := make([]float32, n)
	f.Dequant(got, blk)
	for i := range got {
		if float64(got[i]) != want(i) {
			t.Fatalf("%s value %d = %g, want %g", f.Name, i, got[i], want(i))
		}
	}
}

func TestBlockQ8_0Hand(t *testing.T) {
	blk := make([]byte, 34)
	put16(blk, 0.5)
	qs := []int8{-128, -1, 0, 1, 127}
	for i := range 32 {
		blk[2+i] = byte(qs[i%5])
	}
	checkDequant(t, &BlockQ8_0, blk, func(i int) float64 { return 0.5 * float64(qs[i%5]) })
}

func TestBlockQ4_0Hand(t *testing.T) {
	blk := make([]byte, 18)
	put16(blk, 2)
	for j := range 16 {
		blk[2+j] = byte(j) | byte(15-j)<<4 // value j has level j, value j+16 level 15−j
	}
	checkDequant(t, &BlockQ4_0, blk, func(i int) float64 {
		if i < 16 {
			return 2 * float64(i-8)
		}
		return 2 * float64(15-(i-16)-8)
	})
}

func TestBlockQ4_1Hand(t *testing.T) {
	blk := make([]byte, 20)
	put16(blk, 0.5)
	put16(blk[2:], -2)
	for j := range 16 {
		blk[4+j] = byte(j) | byte(15-j)<<4
	}
	checkDequant(t, &BlockQ4_1, blk, func(i int) float64 {
		if i < 16 {
			return 0.5*float64(i) - 2
		}
		return 0.5*float64(15-(i-16)) - 2
	})
}

func TestBlockQ5_0Hand(t *testing.T) {
	blk := make([]byte, 22)
	put16(blk, 1)
	binary.LittleEndian.PutUint32(blk[2:], 0xaaaaaaaa) // fifth bits of the odd values
	for j := range 16 {
		blk[6+j] = byte(j) | byte(15-j)<<4
	}
	checkDequant(t, &BlockQ5_0, blk, func(i int) float64 {
		low := i
		if i >= 16 {
			low = 15 - (i - 16)
		}
		return float64(low + 16*(i&1) - 16)
	})
}

func TestBlockQ5_1Hand(t *testing.T) {
	blk := make([]byte, 24)
	put16(blk, 0.25)
	put16(blk[2:], 1)
	binary.LittleEndian.PutUint32(blk[4:], 0x0000ffff) // fifth bits of values 0…15
	for j := range 16 {
		blk[8+j] = byte(j) | byte(15-j)<<4
	}
	checkDequant(t, &BlockQ5_1, blk, func(i int) float64 {
		if i < 16 {
			return 0.25*float64(i+16) + 1
		}
		return 0.25*float64(15-(i-16)) + 1
	})
}

// packScalesK4 packs 8 six-bit scales and mins as ggml's Q4_K/Q5_K do, written out
// from the layout's description rather than through the package's quantizer.
func packScalesK4(sc, m [8]uint8) []byte {
	p := make([]byte, 12)
	for j := range 4 {
		p[j] = sc[j] | (sc[j+4]>>4)<<6
		p[j+4] = m[j] | (m[j+4]>>4)<<6
		p[j+8] = sc[j+4]&0xf | (m[j+4]&0xf)<<4
	}
	return p
}

var (
	handSc = [8]uint8{1, 2, 3, 63, 45, 17, 32, 7}
	handM  = [8]uint8{0, 5, 63, 9, 33, 48, 1, 16}
)

func TestBlockQ4_KHand(t *testing.T) {
	blk := make([]byte, 144)
	put16(blk, 1)
	put16(blk[2:], 0.5)
	copy(blk[4:], packScalesK4(handSc, handM))
	for i := range 128 {
		blk[16+i] = 0x21 // first sub-block of each 64 at level 1, the second at level 2
	}
	checkDequant(t, &BlockQ4_K, blk, func(i int) float64 {
		j := i / 32
		return float64(handSc[j])*float64(1+j%2) - 0.5*float64(handM[j])
	})
}

func TestBlockQ5_KHand(t *testing.T) {
	blk := make([]byte, 176)
	put16(blk, 1)
	put16(blk[2:], 0.25)
	copy(blk[4:], packScalesK4(handSc, handM))
	for l := range 32 {
		blk[16+l] = 0x99 // fifth bits: chunk 0 low, chunk 1 high, chunk 2 low, chunk 3 high
	}
	for i := range 128 {
		blk[48+i] = 0x53 // low nibble 3, high nibble 5
	}
	levels := [8]float64{19, 5, 3, 21, 19, 5, 3, 21} // per sub-block
	checkDequant(t, &BlockQ5_K, blk, func(i int) float64 {
		j := i / 32
		return float64(handSc[j])*levels[j] - 0.25*float64(handM[j])
	})
}

func TestBlockQ6_KHand(t *testing.T) {
	blk := make([]byte, 210)
	for i := range 128 {
		blk[i] = 0xa5 // low nibble 5, high nibble 10
	}
	for i := range 64 {
		blk[128+i] = 0xe4 // high bit pairs 0, 1, 2, 3 for k = 0…3
	}
	for i := range 16 {
		blk[192+i] = byte(int8(i - 8))
	}
	put16(blk[208:], 0.5)
	// Value 32k+l of a half: k = 0 takes ql[l]'s low nibble and bits 0-1, k = 1
	// ql[l+32]'s low nibble and bits 2-3, k = 2 and 3 the high nibbles.
	levels := [4]float64{5 - 32, 5 + 16 - 32, 10 + 32 - 32, 10 + 48 - 32}
	checkDequant(t, &BlockQ6_K, blk, func(i int) float64 {
		h, k, l := i/128, i%128/32, i%32
		return 0.5 * float64(8*h+2*k+l/16-8) * levels[k]
	})
}

func gaussRow(r *rand.Rand, n int, scale float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64() * scale)
	}
	return x
}

// TestBlockDot checks every format's Dot against the float64 sum of its Dequant's
// values times x, on random (valid) blocks and random x.
func TestBlockDot(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, f := range blockFormats {
		n := 3 * 256
		row := make([]byte, f.RowBytes(n))
		f.Quantize(row, gaussRow(r, n, 1))
		w := make([]float32, n)
		f.Dequant(w, row)
		x := gaussRow(r, n, 1)
		var want, mag float64
		for i := range w {
			want += float64(w[i]) * float64(x[i])
			mag += math.Abs(float64(w[i]) * float64(x[i]))
		}
		if got := f.Dot(row, x); math.Abs(float64(got)-want) > 1e-5*mag {
			t.Errorf("%s: Dot = %g, float64 sum %g", f.Name, got, want)
		}
	}
}

// TestBlockQuantizeError bounds dequant(quantize(x)) − x value by value, from each
// format's step size, on Gaussian rows and on rows whose sub-blocks differ in scale
// by 1000x, and the relative RMS error on Gaussian rows.
func TestBlockQuantizeError(t *testing.T) {
	const f16 = 1.0 / 1024 // half precision's relative spacing, for the stored scales
	rmsMax := map[string]float64{"F16": 3e-4, "Q8_0": 0.007, "Q4_0": 0.1, "Q4_1": 0.09, "Q5_0": 0.05, "Q5_1": 0.045, "Q4_K": 0.09, "Q5_K": 0.045, "Q6_K": 0.022}
	r := rand.New(rand.NewPCG(5, 6))
	for _, f := range blockFormats {
		for _, uneven := range []bool{false, true} {
			n := 4 * 256
			x := gaussRow(r, n, 0.02)
			if uneven {
				for i := range x {
					x[i] *= float32(math.Pow(10, float64(i/16%4)))
					x[i] += 0.01 * float32(i/32%3) // shifted sub-blocks use the K formats' mins
				}
			}
			row := make([]byte, f.RowBytes(n))
			f.Quantize(row, x)
			y := make([]float32, n)
			f.Dequant(y, row)
			var se, sx float64
			for i := range x {
				e := math.Abs(float64(y[i] - x[i]))
				se += e * e
				sx += float64(x[i]) * float64(x[i])
				if b := errBound(f.Name, x, i, f16); !(e <= b) {
					t.Fatalf("%s uneven=%v: value %d: %g quantized to %g, error above the bound %g", f.Name, uneven, i, x[i], y[i], b)
				}
			}
			rms := math.Sqrt(se / sx)
			t.Logf("%s uneven=%v: relative RMS error %.4f", f.Name, uneven, rms)
			if !uneven && rms > rmsMax[f.Name] {
				t.Errorf("%s: relative RMS error %.4f, want ≤ %g", f.Name, rms, rmsMax[f.Name])
			}
		}
	}
}

// errBound is the largest error quantizing x[i] may make, from the format's
// definition: half a step where values are rounded, a whole step where the range's
// far end is clamped, plus what rounding the stored scales to fewer bits moves.
func errBound(name string, x []float32, i int, f16 float64) float64 {
	group := func(size int) (lo, hi, amax float64) {
		g := x[i/size*size : i/size*size+size]
		lo, hi = math.Inf(1), math.Inf(-1)
		for _, v := range g {
			lo, hi = min(lo, float64(v)), max(hi, float64(v))
			amax = max(amax, math.Abs(float64(v)))
		}
		return
	}
	switch name {
	case "F16":
		return max(math.Abs(float64(x[i]))*f16/2, math.Pow(2, -25)) // subnormals: half of 2^-24
	case "Q8_0":
		_, _, amax := group(32)
		return amax/127/2 + amax*f16
	case "Q4_0":
		_, _, amax := group(32)
		return amax/8 + 8*amax/8*f16
	case "Q5_0":
		_, _, amax := group(32)
		return amax/16 + 16*amax/16*f16
	case "Q4_1", "Q5_1":
		nmax := 15.0
		if name == "Q5_1" {
			nmax = 31
		}
		lo, hi, _ := group(32)
		step := (hi - lo) / nmax
		return step/2 + nmax*step*f16 + math.Abs(lo)*f16
	case "Q4_K", "Q5_K":
		nmax := 15.0
		if name == "Q5_K" {
			nmax = 31
		}
		lo, hi, _ := group(32)
		lo = min(lo, 0)
		// The super-block's largest scale and min, which set the 6-bit grid.
		var maxScale, maxMin float64
		for j := i / 256 * 256; j < i/256*256+256; j += 32 {
			slo, shi := math.Inf(1), math.Inf(-1)
			for _, v := range x[j : j+32] {
				slo, shi = min(slo, float64(v)), max(shi, float64(v))
			}
			slo = min(slo, 0)
			maxScale, maxMin = max(maxScale, (shi-slo)/nmax), max(maxMin, -slo)
		}
		step := (hi - lo) / nmax
		// A 6-bit scale is off by up to half a grid step (maxScale/126), which over
		// nmax levels moves the far end; the min likewise by maxMin/126.
		return step/2 + maxScale/126/2 + (nmax*maxScale+maxMin)/126*(1+f16) + (hi-lo)*f16
	case "Q6_K":
		_, _, amax := group(16)
		var maxAbs float64
		for j := i / 256 * 256; j < i/256*256+256; j += 16 {
			for _, v := range x[j : j+16] {
				maxAbs = max(maxAbs, math.Abs(float64(v))/32)
			}
		}
		// The 8-bit scale's grid is maxAbs/128; a scale off by half of it moves the
		// end level 32 by 32·maxAbs/256, and clamping +32 to 31 costs a step.
		step := amax / 32
		return step + maxAbs/256 + 32*maxAbs/256*(1+f16) + amax*f16
	}
	return 0
}

func TestBlockZeroRow(t *testing.T) {
	for _, f := range blockFormats {
		x := make([]float32, 256)
		row := make([]byte, f.RowBytes(256))
		for i := range row {
			row[i] = 0xff
		}
		f.Quantize(row, x)
		y := make([]float32, 256)
		f.Dequant(y, row)
		for i, v := range y {
			if v != 0 {
				t.Fatalf("%s: zero row dequantizes to %g at %d", f.Name, v, i)
			}
		}
	}
}

func TestBlockShortSlicePanics(t *testing.T) {
	for _, f := range blockFormats {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: Dequant of too few bytes did not panic", f.Name)
				}
			}()
			f.Dequant(make([]float32, 256), make([]byte, f.RowBytes(256)-1))
		}()
	}
}

// BenchmarkBlockDot measures the portable on-block dot products over a 256 x 4096
// weight matrix (bytes/s counts the weight bytes read), and Dot on float32 rows
// for scale.
func BenchmarkBlockDot(b *testing.B) {
	const rows, cols = 256, 4096
	r := rand.New(rand.NewPCG(7, 8))
	w := gaussRow(r, rows*cols, 0.02)
	x := gaussRow(r, cols, 1)
	b.Run("F32", func(b *testing.B) {
		b.SetBytes(rows * cols * 4)
		for b.Loop() {
			for i := range rows {
				Dot(w[i*cols:(i+1)*cols], x)
			}
		}
	})
	for _, f := range blockFormats {
		rb := f.RowBytes(cols)
		q := make([]byte, rows*rb)
		for i := range rows {
			f.Quantize(q[i*rb:(i+1)*rb], w[i*cols:(i+1)*cols])
		}
		b.Run(f.Name, func(b *testing.B) {
			b.SetBytes(int64(len(q)))
			for b.Loop() {
				for i := range rows {
					f.Dot(q[i*rb:(i+1)*rb], x)
				}
			}
		})
	}
}
