package tensor

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
)

// testQ8 is a block type made for the test: 32 int8 codes after a float32 scale.
var testQ8 = &BlockFormat{Name: "testQ8", Values: 32, Bytes: 36,
	Dequant: func(dst []float32, src []byte) {
		for b := 0; b < len(dst)/32; b++ {
			blk := src[b*36:]
			d := math.Float32frombits(binary.LittleEndian.Uint32(blk))
			for i := range 32 {
				dst[b*32+i] = d * float32(int8(blk[4+i]))
			}
		}
	},
	Dot: func(row []byte, x []float32) float32 {
		var s float32
		for b := 0; b < len(x)/32; b++ {
			blk := row[b*36:]
			d := math.Float32frombits(binary.LittleEndian.Uint32(blk))
			var t float32
			for i := range 32 {
				t += float32(int8(blk[4+i])) * x[b*32+i]
			}
			s += d * t
		}
		return s
	}}

func randBlocks(rng *rand.Rand, rows, cols int) []byte {
	out := make([]byte, rows*testQ8.RowBytes(cols))
	for b := 0; b < len(out); b += 36 {
		binary.LittleEndian.PutUint32(out[b:], math.Float32bits(float32(rng.Float64()*0.1+0.01)))
		for i := range 32 {
			out[b+4+i] = byte(int8(rng.IntN(255) - 127))
		}
	}
	return out
}

// TestBlockMatMul: products with a block-typed matrix, through the matrix-vector
// route (few rows) and the panel GEMM route (more rows than smallM, more weight rows
// than a panel), alone and beside a float32 product of the same x, agree with float64
// sums over the values the block type's own Dequant gives, times x (on the
// matrix-vector route of a format with an integer dot: the values x's 8-bit
// quantization stands for).
func TestBlockMatMul(t *testing.T) {
	defer SetThreads(Threads())
	rng := rand.New(rand.NewPCG(3, 4))
	// a matrix of each format: testQ8's random codes, the others quantized from
	// Gaussian rows by their own Quantize
	makeMat := func(f *BlockFormat, rows, k int) Mat {
		var data []byte
		if f == testQ8 {
			data = randBlocks(rng, rows, k)
		} else {
			data = make([]byte, rows*f.RowBytes(k))
			for r := range rows {
				f.Quantize(data[r*f.RowBytes(k):(r+1)*f.RowBytes(k)], gaussRow(rng, k, 1))
			}
		}
		w, err := NewBlockMat(rows, k, f, data)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	for _, format := range append([]*BlockFormat{testQ8}, blockFormats...) {
		for _, th := range []int{1, 3} {
			SetThreads(th)
			for _, m := range []int{1, 3, 17, 40} {
				for _, rows := range []int{5, 70, 530} {
					const k = 256
					w := makeMat(format, rows, k)
					f := Mat{Rows: 7, Cols: k, F32: make([]float32, 7*k)}
					for i := range f.F32 {
						f.F32[i] = float32(rng.NormFloat64())
					}
					x := make([]float32, m*k)
					for i := range x {
						x[i] = float32(rng.NormFloat64())
					}
					got, gotF := make([]float32, m*rows), make([]float32, m*7)
					MatMulTs(x, m, Proj{Dst: got, W: &w}, Proj{Dst: gotF, W: &f})
					wv := make([]float32, k)
					// The matrix-vector route of a format with an integer dot, and the
					// integer pre-fill (wgemm_int.go), compute with x quantized to 8 bits
					// (wint.go): the values that stand for.
					xw := make([]float64, len(x))
					for i, v := range x {
						xw[i] = float64(v)
					}
					if format.dotAct != nil && (m <= smallM || gemmIntFor(format, m) != nil) {
						for i := range m {
							copy(xw[i*k:(i+1)*k], actValues(quantizedRow(format.act, x[i*k:(i+1)*k])))
						}
					}
					check := func(name string, dst []float32, wrows int, row func(r int) []float32, x []float64) {
						for i := range m {
							for r := range wrows {
								var want float64
								for p, v := range row(r) {
									want += float64(v) * x[i*k+p]
								}
								if d := math.Abs(float64(dst[i*wrows+r]) - want); d > 1e-4*(1+math.Abs(want)) {
									t.Fatalf("threads %d, m %d, rows %d: %s[%d,%d] = %g, want %g", th, m, rows, name, i, r, dst[i*wrows+r], want)
								}
							}
						}
					}
					check(format.Name, got, rows, func(r int) []float32 { w.Row(wv, r); return wv }, xw)
					xf := make([]float64, len(x))
					for i, v := range x {
						xf[i] = float64(v)
					}
					check("f32", gotF, 7, func(r int) []float32 { return f.F32[r*k : (r+1)*k] }, xf)
				}
			}
		}
	}
}

func TestNewBlockMatRefuses(t *testing.T) {
	for _, c := range []struct {
		rows, cols, bytes int
		want              string
	}{
		{2, 40, 80, "whole number"},
		{2, 64, 100, "bytes, want 144"},
		{-1, 32, 0, "negative"},
	} {
		_, err := NewBlockMat(c.rows, c.cols, testQ8, make([]byte, c.bytes))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error with %q", c, err, c.want)
		}
	}
}

// BenchmarkBlockMatVec: one decode row against a 2048x2048 weight matrix in each
// storage, one thread: GB/s of weights read. A format with an integer dot runs twice,
// the float dot (/float) and the integer one with the activation row's quantization
// (/int), so that one run compares them.
func BenchmarkBlockMatVec(b *testing.B) {
	defer SetThreads(Threads())
	SetThreads(1)
	n := benchN()
	rng := rand.New(rand.NewPCG(1, 2))
	x := gaussRow(rng, n, 1)
	f32 := Mat{Rows: n, Cols: n, F32: gaussRow(rng, n*n, 1)}
	bf := Mat{Rows: n, Cols: n, BF16: make([]uint16, n*n)}
	for i, v := range f32.F32 {
		bf.BF16[i] = FloatToBF16(v)
	}
	mats := map[string]Mat{"f32": f32, "bf16": bf}
	for _, f := range []*BlockFormat{&BlockQ8_0, &BlockQ4_0, &BlockQ5_0, &BlockQ5_1, &BlockQ4_1, &BlockQ4_K, &BlockQ5_K, &BlockQ6_K} {
		data := make([]byte, n*f.RowBytes(n))
		for r := range n {
			f.Quantize(data[r*f.RowBytes(n):(r+1)*f.RowBytes(n)], f32.F32[r*n:(r+1)*n])
		}
		w, _ := NewBlockMat(n, n, f, data)
		mats[f.Name] = w
	}
	dst := make([]float32, n)
	for _, name := range []string{"f32", "bf16", "Q8_0", "Q4_0", "Q5_0", "Q5_1", "Q4_1", "Q4_K", "Q5_K", "Q6_K"} {
		w := mats[name]
		run := func(name string) {
			b.Run(name, func(b *testing.B) {
				b.SetBytes(w.Bytes())
				for b.Loop() {
					MatMulT(dst, x, 1, &w)
				}
			})
		}
		if w.Block == nil || w.Block.dotAct == nil {
			run(name)
			continue
		}
		dot := w.Block.dotAct
		w.Block.dotAct = nil
		run(name + "/float")
		w.Block.dotAct = dot
		run(name + "/int")
	}
}

// BenchmarkBlockMatMul: a pre-fill's 64 rows against a 2048x2048 Q4_K matrix, one thread:
// the widened panels and the float32 GEMM.
func BenchmarkBlockMatMul(b *testing.B) {
	defer SetThreads(Threads())
	SetThreads(1)
	const n, m = 2048, 64
	rng := rand.New(rand.NewPCG(3, 4))
	w32 := gaussRow(rng, n*n, 1)
	f := &BlockQ4_K
	data := make([]byte, n*f.RowBytes(n))
	for r := range n {
		f.Quantize(data[r*f.RowBytes(n):(r+1)*f.RowBytes(n)], w32[r*n:(r+1)*n])
	}
	w, _ := NewBlockMat(n, n, f, data)
	x, dst := gaussRow(rng, m*n, 1), make([]float32, m*n)
	for b.Loop() {
		MatMulT(dst, x, m, &w)
	}
}

// benchN is BenchmarkBlockMatVec's matrix size: 2048, or $KVFOOT_BENCH_N (a multiple of
// 256), so that small models' matrices, which stay in cache, can be timed too.
func benchN() int {
	if v := os.Getenv("KVFOOT_BENCH_N"); v != "" {
		n, _ := strconv.Atoi(v)
		return n
	}
	return 2048
}
