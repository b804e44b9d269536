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

// TestDotF16Rows: the several-row dot the matrix-vector route takes (where the CPU
// has one) gives each of 0 to 35 rows (the four streams of quarters and the rows left over), packed or with a gap between rows, the bits
// BlockF16.Dot gives the row alone, within the float64 sum's bound as TestDotF16 sets
// it, and writes nothing past dst.
func TestDotF16Rows(t *testing.T) {
	dots := BlockF16.dotRows
	if dots == nil {
		t.Skip("no several-row F16 dot on this CPU")
	}
	r := rand.New(rand.NewPCG(15, 16))
	u := math.Pow(2, -24)
	for _, n := range []int{0, 1, 15, 16, 17, 63, 64, 80, 100, 2048, 2061} {
		for _, gap := range []int{0, 64} {
			for _, nrows := range []int{0, 1, 2, 3, 4, 5, 7, 8, 9, 11, 13, 32, 35} {
				rb := 2*n + gap
				rows := make([]byte, nrows*rb)
				for i := range nrows {
					copy(rows[i*rb:], randomF16Row(r, n))
				}
				x := nanTail(gaussRow(r, n, 1))
				dst := make([]float32, nrows+4)
				for i := range dst {
					dst[i] = -7
				}
				dots(dst[:nrows], rows, rb, x)
				for i := range nrows {
					row := rows[i*rb : i*rb+2*n]
					var want, mag float64
					for c := range n {
						p := float64(F16ToFloat(binary.LittleEndian.Uint16(row[2*c:]))) * float64(x[c])
						want += p
						mag += math.Abs(p)
					}
					bound := float64(n) * u / (1 - float64(n)*u) * mag
					if got := dst[i]; !(math.Abs(float64(got)-want) <= bound) {
						t.Fatalf("n %d, gap %d, %d rows: row %d: %g, float64 sum %g (bound %g)", n, gap, nrows, i, got, want, bound)
					}
					if alone := BlockF16.Dot(row, x); math.Float32bits(dst[i]) != math.Float32bits(alone) {
						t.Fatalf("n %d, gap %d, %d rows: row %d: %g, alone %g", n, gap, nrows, i, dst[i], alone)
					}
				}
				for i := nrows; i < len(dst); i++ {
					if dst[i] != -7 {
						t.Fatalf("n %d, gap %d, %d rows: wrote past dst at %d", n, gap, nrows, i)
					}
				}
			}
		}
	}
}

// TestMatMulTF16Rows: MatMulT of an F16 matrix with rows long enough for the
// several-row route (2048 values), 70 rows (two 32-row units and a short one) and 1 to
// 3 rows of x, on 1 and 2 threads, gives every element the bits BlockF16.Dot gives
// its row alone, and the float64 sum within TestDotF16's bound.
func TestMatMulTF16Rows(t *testing.T) {
	defer SetThreads(Threads())
	const rows, k = 70, 2048
	r := rand.New(rand.NewPCG(17, 18))
	data := make([]byte, 0, rows*2*k)
	for range rows {
		data = append(data, randomF16Row(r, k)...)
	}
	w := &Mat{Rows: rows, Cols: k, Blocks: data, Block: &BlockF16}
	u := math.Pow(2, -24)
	for _, threads := range []int{1, 2} {
		SetThreads(threads)
		for m := 1; m <= 3; m++ {
			x := gaussRow(r, m*k, 1)
			dst := make([]float32, m*rows)
			MatMulT(dst, x, m, w)
			for i := range m {
				xi := x[i*k : (i+1)*k]
				for o := range rows {
					row := data[o*2*k : (o+1)*2*k]
					var want, mag float64
					for c := range k {
						p := float64(F16ToFloat(binary.LittleEndian.Uint16(row[2*c:]))) * float64(xi[c])
						want += p
						mag += math.Abs(p)
					}
					got := dst[i*rows+o]
					if bound := float64(k) * u / (1 - float64(k)*u) * mag; !(math.Abs(float64(got)-want) <= bound) {
						t.Fatalf("threads %d, m %d: [%d, %d] = %g, float64 sum %g (bound %g)", threads, m, i, o, got, want, bound)
					}
					if alone := BlockF16.Dot(row, xi); math.Float32bits(got) != math.Float32bits(alone) {
						t.Fatalf("threads %d, m %d: [%d, %d] = %g, the row alone %g", threads, m, i, o, got, alone)
					}
				}
			}
		}
	}
}

// A pre-fill's product with an F16 matrix (more than smallM rows of x) gives the same
// bits as with the float32 matrix of its widened values, on every kernel set: the GEMM
// packs F16 weights itself where it can (packT16F16AVX512 for whole 16x16 tiles, the
// scalar pack for the rest: rows past a multiple of 32, columns past one of 16; more
// rows than one call takes), and the widening is exact. Each element is also held to its float64 sum.
func TestMatMulTF16GEMM(t *testing.T) {
	defer SetThreads(Threads())
	defer func(im *impl) { active = im }(active)
	r := rand.New(rand.NewPCG(19, 20))
	u := math.Pow(2, -24)
	for _, shape := range [][3]int{{45, 70, 20}, {300, 576, 33}, {64, 1024, 17}, {1100, 48, 17}} {
		rows, k, m := shape[0], shape[1], shape[2]
		data := make([]byte, 0, rows*2*k)
		for range rows {
			data = append(data, randomF16Row(r, k)...)
		}
		f16 := &Mat{Rows: rows, Cols: k, Blocks: data, Block: &BlockF16}
		f32 := &Mat{Rows: rows, Cols: k, F32: make([]float32, rows*k)}
		DequantF16(f32.F32, data)
		x := gaussRow(r, m*k, 1)
		for _, im := range impls {
			active = im
			for _, threads := range []int{1, 2} {
				SetThreads(threads)
				got, want := make([]float32, m*rows), make([]float32, m*rows)
				MatMulT(got, x, m, f16)
				MatMulT(want, x, m, f32)
				for i := range got {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%s, %dx%d, m %d, threads %d: [%d] = %g, float32 matrix %g", im.name, rows, k, m, threads, i, got[i], want[i])
					}
					var sum, mag float64
					for c := range k {
						p := float64(f32.F32[(i%rows)*k+c]) * float64(x[(i/rows)*k+c])
						sum, mag = sum+p, mag+math.Abs(p)
					}
					if bound := float64(k) * u / (1 - float64(k)*u) * mag; !(math.Abs(float64(got[i])-sum) <= bound) {
						t.Fatalf("%s, %dx%d: [%d] = %g, float64 sum %g (bound %g)", im.name, rows, k, i, got[i], sum, bound)
					}
				}
			}
		}
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
	portable.Dot, portable.dotRows = DotF16, nil
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

// BenchmarkMatVecLlama1BF16 is a decode step's weight reads in the Llama-3.2-1B shape
// with F16 weights, as a GGUF file holds them: layers of fused Q/K/V, O, fused
// gate/up and down products (the LM head left out), read in the model's order. Four
// layers (486 MB) are more than the L3 holds, so they come from memory as a decode
// step's do; $KVFOOT_BENCH_N sets the layer count.
func BenchmarkMatVecLlama1BF16(b *testing.B) {
	const d, kvd, ff = 2048, 512, 8192
	layers := 4
	if n := benchN(); n != 2048 {
		layers = n
	}
	r := rand.New(rand.NewPCG(12, 13))
	mk := func(rows, cols int) *Mat {
		data := make([]byte, rows*cols*2)
		for i := 0; i < len(data); i += 2 {
			binary.LittleEndian.PutUint16(data[i:], FloatToF16(float32(r.NormFloat64())))
		}
		return &Mat{Rows: rows, Cols: cols, Blocks: data, Block: &BlockF16}
	}
	type layer struct{ q, k, v, o, gate, up, down *Mat }
	ls := make([]layer, layers)
	for i := range ls {
		ls[i] = layer{mk(d, d), mk(kvd, d), mk(kvd, d), mk(d, d), mk(ff, d), mk(ff, d), mk(d, ff)}
	}
	weights := layers * (2*d*d + 2*kvd*d + 3*ff*d)
	x, h := randSlice(r, ff), make([]float32, 2*ff+2*kvd)
	// "single" is the single-row dot for every row, "rows" the several-row dot
	// where this CPU has one.
	rowsDot := BlockF16.dotRows
	defer func() { BlockF16.dotRows = rowsDot }()
	for _, route := range []string{"single", "rows"} {
		if route == "rows" && rowsDot == nil {
			continue
		}
		b.Run(route, func(b *testing.B) {
			BlockF16.dotRows = map[string]func([]float32, []byte, int, []float32){"rows": rowsDot}[route]
			benchThreads(b, func(b *testing.B) {
				for b.Loop() {
					for _, l := range ls {
						MatMulTs(x[:d], 1, Proj{h[:d], l.q}, Proj{h[d : d+kvd], l.k}, Proj{h[d+kvd : d+2*kvd], l.v})
						MatMulT(h[:d], x[:d], 1, l.o)
						MatMulTs(x[:d], 1, Proj{h[:ff], l.gate}, Proj{h[ff : 2*ff], l.up})
						MatMulT(h[:d], x, 1, l.down)
					}
				}
				b.ReportMetric(2*float64(weights)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
			})
		})
	}
}
