//go:build amd64 && !purego

package tensor

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// Every vector integer kernel the CPU can run joins TestIntDot, TestIntDotExtremes
// and TestActQuantize, not only the one init installed.
func init() {
	add := func(format, isa string, k *intKernel) {
		extraDotActs[format] = append(extraDotActs[format], namedDotAct{isa, k.dot})
	}
	if hasInt8AVX2 {
		add("Q4_K", "AVX2", q4KAVX2)
		add("Q6_K", "AVX2", q6KAVX2)
		add("Q5_K", "AVX2", q5KAVX2)
		add("Q8_0", "AVX2", q8_0AVX2)
		add("Q4_0", "AVX2", q4_0AVX2)
		add("Q5_0", "AVX2", q5_0AVX2)
		add("Q4_1", "AVX2", q4_1AVX2)
		add("Q5_1", "AVX2", q5_1AVX2)
	}
	if hasInt8VNNI {
		extraActQuantizers[actQ8_K] = append(extraActQuantizers[actQ8_K], quantizeActQ8_KFast)
		extraActQuantizers[actQ8_0] = append(extraActQuantizers[actQ8_0], quantizeActQ8_0Fast)
		add("Q8_0", "VNNI", q8_0VNNI)
		add("Q4_K", "VNNI", q4KVNNI)
		add("Q6_K", "VNNI", q6KVNNI)
		add("Q5_K", "VNNI", q5KVNNI)
		add("Q4_0", "VNNI", q4_0VNNI)
		add("Q5_0", "VNNI", q5_0VNNI)
		add("Q4_1", "VNNI", q4_1VNNI)
		add("Q5_1", "VNNI", q5_1VNNI)
	}
}

// runKernel is an integer kernel this CPU runs, with its block format and instruction set.
type runKernel struct {
	isa string
	k   *intKernel
	f   *BlockFormat
}

// runnableKernels is every integer kernel this CPU runs.
func runnableKernels() []runKernel {
	var ks []runKernel
	if hasInt8AVX2 {
		ks = append(ks, runKernel{"AVX2", q4KAVX2, &BlockQ4_K}, runKernel{"AVX2", q5KAVX2, &BlockQ5_K},
			runKernel{"AVX2", q6KAVX2, &BlockQ6_K}, runKernel{"AVX2", q8_0AVX2, &BlockQ8_0},
			runKernel{"AVX2", q4_0AVX2, &BlockQ4_0}, runKernel{"AVX2", q5_0AVX2, &BlockQ5_0},
			runKernel{"AVX2", q4_1AVX2, &BlockQ4_1}, runKernel{"AVX2", q5_1AVX2, &BlockQ5_1})
	}
	if hasInt8VNNI {
		ks = append(ks, runKernel{"VNNI", q4KVNNI, &BlockQ4_K}, runKernel{"VNNI", q5KVNNI, &BlockQ5_K},
			runKernel{"VNNI", q6KVNNI, &BlockQ6_K}, runKernel{"VNNI", q8_0VNNI, &BlockQ8_0},
			runKernel{"VNNI", q4_0VNNI, &BlockQ4_0}, runKernel{"VNNI", q5_0VNNI, &BlockQ5_0},
			runKernel{"VNNI", q4_1VNNI, &BlockQ4_1}, runKernel{"VNNI", q5_1VNNI, &BlockQ5_1})
	}
	return ks
}

// A kernel's dotRows over many rows gives each row's dot bit for bit, and writes exactly
// the rows asked for.
func TestIntDotRows(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	for _, rk := range runnableKernels() {
		k, f := rk.k, rk.f
		for _, nb := range []int{1, 3} {
			n, rb := nb*f.Values, nb*f.Bytes
			a := quantizedRow(f.act, gaussRow(r, n, 1))
			for _, count := range []int{0, 1, 5, 17} {
				rows := make([]byte, count*rb)
				for i := 0; i < count; i++ {
					f.Quantize(rows[i*rb:(i+1)*rb], gaussRow(r, n, 1))
				}
				dst := make([]float32, count+1)
				dst[count] = 42 // past the rows: untouched
				k.dotRows(dst[:count], rows, rb, a)
				for i := 0; i < count; i++ {
					if want := k.dot(rows[i*rb:(i+1)*rb], a); math.Float32bits(dst[i]) != math.Float32bits(want) {
						t.Fatalf("%s, %d blocks, row %d of %d: rows %g, one at a time %g", k.name, nb, i, count, dst[i], want)
					}
				}
				if dst[count] != 42 {
					t.Fatalf("%s wrote past its %d rows", k.name, count)
				}
			}
		}
	}
}

// TestIntDotQuarters: every kernel's quarters (its rows4 where it has one, else its dot on
// the four rows in turn) gives rows i, q+i, 2q+i and 3q+i for i < n, packed or with a gap
// between rows, with an odd block count (the one-block tail) or even, the bits its dot
// gives the row alone, and writes nothing else of dst.
func TestIntDotQuarters(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 24))
	for _, rk := range runnableKernels() {
		quartersAgree(t, r, rk.k, rk.f)
	}
}

func quartersAgree(t *testing.T, r *rand.Rand, k *intKernel, f *BlockFormat) {
	for _, nb := range []int{1, 2, 5, 64, 65} {
		n := nb * f.Values
		a := quantizedRow(f.act, gaussRow(r, n, 1))
		for _, gap := range []int{0, 64} {
			rb := nb*f.Bytes + gap
			for _, qn := range [][2]int{{1, 0}, {1, 1}, {8, 8}, {9, 5}, {26, 2}} {
				q, count := qn[0], qn[1]
				rows := make([]byte, 4*q*rb)
				for i := range 4 * q {
					f.Quantize(rows[i*rb:i*rb+nb*f.Bytes], gaussRow(r, n, 1))
				}
				dst := make([]float32, 4*q+4)
				for i := range dst {
					dst[i] = -7
				}
				k.quarters(dst, rows, rb, q, count, a)
				for i := range dst {
					if i >= 4*q || i%q >= count {
						if dst[i] != -7 {
							t.Fatalf("%s: %d blocks, gap %d, q %d, n %d: wrote dst[%d]", f.Name, nb, gap, q, count, i)
						}
						continue
					}
					if want := k.dot(rows[i*rb:i*rb+nb*f.Bytes], a); math.Float32bits(dst[i]) != math.Float32bits(want) {
						t.Fatalf("%s: %d blocks, gap %d, q %d, n %d: row %d: quarters %g, alone %g", f.Name, nb, gap, q, count, i, dst[i], want)
					}
				}
			}
		}
	}
}

// TestMatMulTQ8_0Quarters: MatMulT of Q8_0 matrices with rows long enough for the
// four-stream route (2048 values, mvQuarterCols) and 104 rows (quarters of 26: three
// whole units and a short one) or 70 (not quartered), 1 to 3 rows of x, on 1 and 2
// threads, gives every element the bits the installed dotAct gives its row alone
// against x's row quantized by the portable quantizer.
func TestMatMulTQ8_0Quarters(t *testing.T) {
	if BlockQ8_0.dotActQuarters == nil {
		t.Skip("no four-stream Q8_0 dot on this CPU")
	}
	defer SetThreads(Threads())
	const k = 2048
	r := rand.New(rand.NewPCG(25, 26))
	rb := BlockQ8_0.RowBytes(k)
	for _, rows := range []int{104, 70} {
		data := make([]byte, rows*rb)
		for o := range rows {
			BlockQ8_0.Quantize(data[o*rb:(o+1)*rb], gaussRow(r, k, 1))
		}
		w := &Mat{Rows: rows, Cols: k, Blocks: data, Block: &BlockQ8_0}
		if quartered(w) != (rows%4 == 0) {
			t.Fatalf("%d rows: quartered %v", rows, quartered(w))
		}
		for _, threads := range []int{1, 2} {
			SetThreads(threads)
			for m := 1; m <= 3; m++ {
				x := gaussRow(r, m*k, 1)
				dst := make([]float32, m*rows)
				MatMulT(dst, x, m, w)
				for i := range m {
					a := quantizedRow(BlockQ8_0.act, x[i*k:(i+1)*k])
					for o := range rows {
						got := dst[i*rows+o]
						if alone := BlockQ8_0.dotAct(data[o*rb:(o+1)*rb], a); math.Float32bits(got) != math.Float32bits(alone) {
							t.Fatalf("%d rows, threads %d, m %d: [%d, %d] = %g, the row alone %g", rows, threads, m, i, o, got, alone)
						}
					}
				}
			}
		}
	}
}

// BenchmarkMatVecLlama1BQ8_0 is BenchmarkMatVecLlama1BF16 with Q8_0 weights: "single"
// reads one row after another, "quarters" the four-stream dot where this CPU has one.
func BenchmarkMatVecLlama1BQ8_0(b *testing.B) {
	const d, kvd, ff = 2048, 512, 8192
	layers := 4
	if n := benchN(); n != 2048 {
		layers = n
	}
	r := rand.New(rand.NewPCG(12, 13))
	scale := FloatToF16(0.01)
	mk := func(rows, cols int) *Mat {
		data := make([]byte, BlockQ8_0.RowBytes(rows*cols))
		for i := range data {
			data[i] = byte(r.Uint32())
		}
		for i := 0; i < len(data); i += BlockQ8_0.Bytes {
			data[i], data[i+1] = byte(scale), byte(scale>>8)
		}
		return &Mat{Rows: rows, Cols: cols, Blocks: data, Block: &BlockQ8_0}
	}
	type layer struct{ q, k, v, o, gate, up, down *Mat }
	ls := make([]layer, layers)
	for i := range ls {
		ls[i] = layer{mk(d, d), mk(kvd, d), mk(kvd, d), mk(d, d), mk(ff, d), mk(ff, d), mk(d, ff)}
	}
	bytes := float64(BlockQ8_0.RowBytes(layers * (2*d*d + 2*kvd*d + 3*ff*d)))
	x, h := randSlice(r, ff), make([]float32, 2*ff+2*kvd)
	saved := BlockQ8_0
	defer func() { BlockQ8_0 = saved }()
	for _, route := range []string{"single", "quarters"} {
		if saved.dotActQuarters == nil {
			b.Skip("no four-stream Q8_0 dot on this CPU")
		}
		b.Run(route, func(b *testing.B) {
			BlockQ8_0 = saved
			if route == "single" {
				BlockQ8_0.dotActQuarters = nil
			}
			benchThreads(b, func(b *testing.B) {
				for b.Loop() {
					for _, l := range ls {
						MatMulTs(x[:d], 1, Proj{h[:d], l.q}, Proj{h[d : d+kvd], l.k}, Proj{h[d+kvd : d+2*kvd], l.v})
						MatMulT(h[:d], x[:d], 1, l.o)
						MatMulTs(x[:d], 1, Proj{h[:ff], l.gate}, Proj{h[ff : 2*ff], l.up})
						MatMulT(h[:d], x, 1, l.down)
					}
				}
				b.ReportMetric(bytes*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
			})
		})
	}
}

// BenchmarkMatVecQ8_0Quarters: one decode row against Q8_0 matrices of several shapes
// (256 MB of copies cycled through, so that they come from memory), one thread, one
// row after another ("single") and four streams through the quarters ("quarters"):
// what mvQuarterCols is set from.
func BenchmarkMatVecQ8_0Quarters(b *testing.B) {
	if BlockQ8_0.dotActQuarters == nil {
		b.Skip("no four-stream Q8_0 dot on this CPU")
	}
	defer SetThreads(Threads())
	SetThreads(1)
	r := rand.New(rand.NewPCG(1, 2))
	saved := BlockQ8_0
	defer func() { BlockQ8_0 = saved }()
	scale := FloatToF16(0.01)
	for _, sh := range [][2]int{{576, 576}, {1536, 576}, {576, 1536}, {1024, 1024}, {2048, 2048}, {1024, 4096}, {4096, 4096}, {2048, 8192}, {4096, 14336}} {
		rows, cols := sh[0], sh[1]
		rb := BlockQ8_0.RowBytes(cols)
		ms := make([]*Mat, (256<<20)/(rows*rb))
		for c := range ms {
			data := make([]byte, rows*rb)
			for i := range data {
				data[i] = byte(r.Uint32())
			}
			for i := 0; i < len(data); i += BlockQ8_0.Bytes {
				data[i], data[i+1] = byte(scale), byte(scale>>8)
			}
			ms[c] = &Mat{Rows: rows, Cols: cols, Blocks: data, Block: &BlockQ8_0}
		}
		x, dst := randSlice(r, cols), make([]float32, rows)
		for _, route := range []string{"single", "quarters"} {
			b.Run(fmt.Sprintf("%dx%d/%s", rows, cols, route), func(b *testing.B) {
				BlockQ8_0 = saved
				if route == "single" {
					BlockQ8_0.dotActQuarters = nil
				} else {
					defer func(c int) { mvQuarterCols = c }(mvQuarterCols)
					mvQuarterCols = 0
				}
				b.SetBytes(int64(rows * rb))
				for i := 0; b.Loop(); i++ {
					MatMulT(dst, x, 1, ms[i%len(ms)])
				}
			})
		}
	}
}

// BenchmarkIntDotHot: each integer kernel this CPU runs on one row of 4096 values held in
// L1, dotted again and again: the kernel's own speed, with no wait on memory (bytes/s
// counts the row's bytes), beside what a decode step reads from memory.
func BenchmarkIntDotHot(b *testing.B) {
	r := rand.New(rand.NewPCG(31, 32))
	const n = 4096
	for _, rk := range runnableKernels() {
		k, f := rk.k, rk.f
		row := make([]byte, f.RowBytes(n))
		f.Quantize(row, gaussRow(r, n, 1))
		a := quantizedRow(f.act, gaussRow(r, n, 1))
		b.Run(f.Name+"/"+rk.isa, func(b *testing.B) {
			b.SetBytes(int64(len(row)))
			for b.Loop() {
				k.dot(row, a)
			}
		})
	}
}

// BenchmarkIntDotStream: each integer kernel this CPU runs, installed in its format for the
// run, in a one-thread decode product with a 256 MiB matrix of 4096-value rows (64 rows
// quantized once and repeated): the kernel as a decode step sees it, reading from memory,
// AVX2 kernels included on a CPU that prefers VNNI ones (bytes/s counts the weights).
func BenchmarkIntDotStream(b *testing.B) {
	defer SetThreads(Threads())
	SetThreads(1)
	r := rand.New(rand.NewPCG(33, 34))
	const n, distinct = 4096, 64
	x := gaussRow(r, n, 1)
	for _, rk := range runnableKernels() {
		k, f := rk.k, rk.f
		rb := f.RowBytes(n)
		rows := (256 << 20) / rb
		data := make([]byte, rows*rb)
		for i := range distinct {
			f.Quantize(data[i*rb:(i+1)*rb], gaussRow(r, n, 1))
		}
		for i := distinct; i < rows; i++ {
			copy(data[i*rb:(i+1)*rb], data[(i%distinct)*rb:])
		}
		w, err := NewBlockMat(rows, n, f, data)
		if err != nil {
			b.Fatal(err)
		}
		dst := make([]float32, rows)
		dot, rowsFn, quarters := f.dotAct, f.dotActRows, f.dotActQuarters
		f.dotAct, f.dotActRows, f.dotActQuarters = k.dot, k.dotRows, k.quarters
		b.Run(f.Name+"/"+rk.isa, func(b *testing.B) {
			b.SetBytes(w.Bytes())
			for b.Loop() {
				MatMulT(dst, x, 1, &w)
			}
		})
		f.dotAct, f.dotActRows, f.dotActQuarters = dot, rowsFn, quarters
	}
}
