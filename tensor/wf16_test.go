package tensor

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
)

// f16Dequants are the vector F16 widenings this CPU runs (wf16_amd64_test.go).
var f16Dequants []namedDequant

// TestDequantF16: every one of the 65536 half-precision bit patterns, widened by each
// widening in rows of every length to 100 (the vector steps and the tails), comes out
// as F16ToFloat gives it, bit for bit (NaNs: NaN of the same sign), and nothing past
// the row is written.
func TestDequantF16(t *testing.T) {
	all := make([]byte, 2<<16)
	for h := range 1 << 16 {
		binary.LittleEndian.PutUint16(all[2*h:], uint16(h))
	}
	same := func(got, want float32) bool {
		if want != want {
			return got != got && math.Signbit(float64(got)) == math.Signbit(float64(want))
		}
		return math.Float32bits(got) == math.Float32bits(want)
	}
	for _, k := range append([]namedDequant{{"portable", DequantF16}, {"BlockF16.Dequant", BlockF16.Dequant}}, f16Dequants...) {
		for n := 0; n <= 100; n++ {
			for start := 0; start+n <= 1<<16; start += 997 {
				buf := make([]float32, n+8)
				for i := range buf {
					buf[i] = -7
				}
				k.dequant(buf[:n], all[2*start:2*(start+n)])
				for i := range n {
					if want := F16ToFloat(uint16(start + i)); !same(buf[i], want) {
						t.Fatalf("%s, n %d: half 0x%04x widened to %g (0x%08x), want %g (0x%08x)", k.name, n, start+i, buf[i], math.Float32bits(buf[i]), want, math.Float32bits(want))
					}
				}
				for i := n; i < len(buf); i++ {
					if buf[i] != -7 {
						t.Fatalf("%s, n %d: wrote past the row at %d", k.name, n, i)
					}
				}
			}
		}
		got := make([]float32, 1<<16)
		k.dequant(got, all)
		for h, v := range got {
			if want := F16ToFloat(uint16(h)); !same(v, want) {
				t.Fatalf("%s: half 0x%04x widened to %g, want %g", k.name, h, v, want)
			}
		}
	}
}

// f16Kernels are the vector F16 dots this CPU runs (wf16_amd64_test.go), tested
// beside the portable DotF16 and whichever one init installed in BlockF16.
var f16Kernels []namedDot

func allF16Dots() []namedDot {
	return append([]namedDot{{"portable", DotF16}, {"BlockF16.Dot", BlockF16.Dot}}, f16Kernels...)
}

// randomF16Row is n random finite half-precision bit patterns (subnormals, zeros and
// ±65504 included) inside a longer buffer of random bytes, so that a kernel reading
// past the row changes its result.
func randomF16Row(r *rand.Rand, n int) []byte {
	buf := make([]byte, 2*n+64)
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	for i := range n {
		h := uint16(r.Uint32())
		for h&0x7c00 == 0x7c00 {
			h = uint16(r.Uint32())
		}
		binary.LittleEndian.PutUint16(buf[2*i:], h)
	}
	return buf[:2*n]
}

// nanTail is x followed, past its length, by NaNs a kernel reading too far would add.
func nanTail(x []float32) []float32 {
	buf := append(append([]float32(nil), x...), make([]float32, 32)...)
	for i := len(x); i < len(buf); i++ {
		buf[i] = float32(math.NaN())
	}
	return buf[:len(x)]
}

// TestDotF16 checks every F16 dot against the float64 sum of the exactly widened
// values times x, within the error any order of n float32 multiply-adds can make:
// γ_n·Σ|w·x| with γ_n = n·u/(1 − n·u), u = 2⁻²⁴. Lengths 0 to 300 and a few long
// ones run the kernels' 32/64-value loops, their 8/16-value loops and the tails.
func TestDotF16(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	lengths := []int{1000, 2048, 4099}
	for n := 0; n <= 300; n++ {
		lengths = append(lengths, n)
	}
	for _, n := range lengths {
		for trial := range 3 {
			row := randomF16Row(r, n)
			x := nanTail(gaussRow(r, n, 1))
			var want, mag float64
			for i := range n {
				p := float64(F16ToFloat(binary.LittleEndian.Uint16(row[2*i:]))) * float64(x[i])
				want += p
				mag += math.Abs(p)
			}
			u := math.Pow(2, -24)
			bound := float64(n) * u / (1 - float64(n)*u) * mag
			for _, k := range allF16Dots() {
				if got := k.dot(row, x); !(math.Abs(float64(got)-want) <= bound) {
					t.Fatalf("%s, n %d, trial %d: %g, float64 sum %g (bound %g)", k.name, n, trial, got, want, bound)
				}
			}
		}
	}
}

// TestDotF16Exact: small integers, whose products and partial sums float32 holds
// exactly in any order, give every kernel the float64 sum to the bit; and every finite
// half-precision value, alone in a row against a one-hot x, comes back exactly as
// F16ToFloat widens it (which wblock_test.go checks against the IEEE formula).
func TestDotF16Exact(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for _, n := range []int{7, 8, 31, 64, 100, 1024, 1037} {
		row := make([]byte, 2*n)
		x := make([]float32, n)
		var want float64
		for i := range n {
			w := float32(r.IntN(33) - 16)
			x[i] = float32(r.IntN(33) - 16)
			binary.LittleEndian.PutUint16(row[2*i:], FloatToF16(w))
			want += float64(w) * float64(x[i])
		}
		for _, k := range allF16Dots() {
			if got := k.dot(row, nanTail(x)); float64(got) != want {
				t.Errorf("%s, n %d: %g, want exactly %g", k.name, n, got, want)
			}
		}
	}
	const n = 80 // a 64-value trip, a 16-value one and a tail
	row := make([]byte, 2*n)
	x := make([]float32, n)
	for h := range 1 << 16 {
		if h&0x7c00 == 0x7c00 {
			continue // Inf and NaN times the zeros around them are NaN
		}
		p := h % n
		binary.LittleEndian.PutUint16(row[2*p:], uint16(h))
		x[p] = 1
		want := F16ToFloat(uint16(h))
		for _, k := range allF16Dots() {
			if got := k.dot(row, x); got != want {
				t.Fatalf("%s: half 0x%04x at %d: %g, want %g", k.name, h, p, got, want)
			}
		}
		binary.LittleEndian.PutUint16(row[2*p:], 0)
		x[p] = 0
	}
}

// BenchmarkBlockMatVecF16: one decode row against a 2048x2048 F16 matrix, one
// thread, with the portable dot and with the one init installed: GB/s of weights read
// (BenchmarkBlockMatVec's other storages for scale).
func BenchmarkBlockMatVecF16(b *testing.B) {
	defer SetThreads(Threads())
	SetThreads(1)
	const n = 2048
	rng := rand.New(rand.NewPCG(1, 2))
	x := gaussRow(rng, n, 1)
	data := make([]byte, n*BlockF16.RowBytes(n))
	QuantizeF16(data, gaussRow(rng, n*n, 1))
	portable := BlockF16
	portable.Dot = DotF16
	dst := make([]float32, n)
	for _, c := range []struct {
		name string
		f    *BlockFormat
	}{{"portable", &portable}, {"installed", &BlockF16}} {
		w, _ := NewBlockMat(n, n, c.f, data)
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(w.Bytes())
			for b.Loop() {
				MatMulT(dst, x, 1, &w)
			}
		})
	}
}
