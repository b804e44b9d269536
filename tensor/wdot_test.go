package tensor

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
)

// namedDot is a vector kernel of a format, tested beside the format's Dot.
type namedDot struct {
	name string
	dot  func([]byte, []float32) float32
}

// extraDots are the vector kernels this CPU can run, by format name (wdot_amd64_test.go).
var extraDots = map[string][]namedDot{}

// TestBlockDotRandomBytes checks each format's Dot (the vector kernel where init
// installed one), every other vector kernel the CPU runs, and the portable twin against the float64 sum of Dequant's values
// times x, on blocks of random bytes: every code, scale and min bit pattern, not only
// those the quantizers write, with the half-precision scales finite. Rows of 1 to 5
// blocks, so that the kernels' loops run once and more.
func TestBlockDotRandomBytes(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, c := range []struct {
		f        *BlockFormat
		portable func([]byte, []float32) float32
		halves   []int // offsets of the half-precision fields in a block
	}{
		{&BlockQ8_0, DotQ8_0, []int{0}},
		{&BlockQ4_0, DotQ4_0, []int{0}},
		{&BlockQ4_K, DotQ4_K, []int{0, 2}},
		{&BlockQ5_K, DotQ5_K, []int{0, 2}},
		{&BlockQ6_K, DotQ6_K, []int{208}},
	} {
		f := c.f
		for nb := 1; nb <= 5; nb++ {
			for trial := range 20 {
				n := nb * f.Values
				// The row and x sit in longer buffers of random bytes and NaNs, so a
				// kernel that reads past either changes its result.
				row := make([]byte, (nb+2)*f.Bytes)
				for i := range row {
					row[i] = byte(r.Uint32())
				}
				row = row[:nb*f.Bytes]
				for b := range nb {
					for _, o := range c.halves {
						binary.LittleEndian.PutUint16(row[b*f.Bytes+o:], FloatToF16(float32(r.NormFloat64()/64)))
					}
				}
				w := make([]float32, n)
				f.Dequant(w, row)
				x := append(gaussRow(r, n, 1), make([]float32, 2*f.Values)...)
				for i := n; i < len(x); i++ {
					x[i] = float32(math.NaN())
				}
				x = x[:n]
				var want, mag float64
				for i := range w {
					want += float64(w[i]) * float64(x[i])
					mag += math.Abs(float64(w[i]) * float64(x[i]))
				}
				for _, k := range append([]namedDot{{"Dot", f.Dot}, {"portable", c.portable}}, extraDots[f.Name]...) {
					if got := k.dot(row, x); !(math.Abs(float64(got)-want) <= 1e-5*mag) {
						t.Fatalf("%s %s, %d blocks, trial %d: %g, float64 sum %g (magnitude %g)", f.Name, k.name, nb, trial, got, want, mag)
					}
				}
			}
		}
	}
}

// namedDequant is a vector row-dequantization kernel of a format.
type namedDequant struct {
	name    string
	dequant func([]float32, []byte)
}

// extraDequants are the vector dequantization kernels this CPU can run, by format
// name (wdot_amd64_test.go).
var extraDequants = map[string][]namedDequant{}

// TestBlockDequantRandomBytes checks each vector dequantization kernel against the
// portable one on random-byte blocks (finite half-precision scales), 1 to 5 blocks:
// equal up to the rounding a fused multiply-subtract saves.
func TestBlockDequantRandomBytes(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, c := range []struct {
		f        *BlockFormat
		portable func([]float32, []byte)
		halves   []int
	}{
		{&BlockQ4_K, DequantQ4_K, []int{0, 2}},
		{&BlockQ6_K, DequantQ6_K, []int{208}},
	} {
		f := c.f
		for nb := 1; nb <= 5; nb++ {
			row := make([]byte, nb*f.Bytes)
			for i := range row {
				row[i] = byte(r.Uint32())
			}
			for b := range nb {
				for _, o := range c.halves {
					binary.LittleEndian.PutUint16(row[b*f.Bytes+o:], FloatToF16(float32(r.NormFloat64()/64)))
				}
			}
			want := make([]float32, nb*f.Values)
			c.portable(want, row)
			var big float64
			for _, v := range want {
				big = max(big, math.Abs(float64(v)))
			}
			for _, k := range append([]namedDequant{{"Dequant", f.Dequant}}, extraDequants[f.Name]...) {
				// Past the row's values a sentinel that a kernel writing too far changes.
				buf := make([]float32, len(want)+f.Values)
				for i := range buf {
					buf[i] = -7
				}
				got := buf[:len(want)]
				k.dequant(got, row)
				for i, v := range buf[len(want):] {
					if v != -7 {
						t.Fatalf("%s %s, %d blocks: wrote %g past the row at %d", f.Name, k.name, nb, v, len(want)+i)
					}
				}
				for i := range want {
					if !(math.Abs(float64(got[i])-float64(want[i])) <= 1e-6*big) {
						t.Fatalf("%s %s, %d blocks: value %d is %g, portable %g", f.Name, k.name, nb, i, got[i], want[i])
					}
				}
			}
		}
	}
}
