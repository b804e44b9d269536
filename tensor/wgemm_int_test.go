package tensor

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// gemmIntMat is an n x k matrix of f quantized from Gaussian rows whose scale varies
// by row.
func gemmIntMat(t *testing.T, rng *rand.Rand, f *BlockFormat, n, k int) Mat {
	rb := f.RowBytes(k)
	data := make([]byte, n*rb)
	for r := range n {
		f.Quantize(data[r*rb:(r+1)*rb], gaussRow(rng, k, 0.1+rng.Float64()))
	}
	w, err := NewBlockMat(n, k, f, data)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// exactValues returns a row's values exactly, in float64 (Dequant rounds Q4_K's and
// Q5_K's d·sc·q − dmin·m, Q6_K's d·sc·(q−32) and Q4_1's and Q5_1's d·q + m to float32),
// and the magnitudes of the terms they sum: |d·sc·q| + |dmin·m| for Q4_K.
func exactValues(f *BlockFormat, row []byte) (w, mag []float64) {
	switch f {
	case &BlockQ4_K, &BlockQ5_K:
		for b := 0; b < len(row); b += f.Bytes {
			blk := row[b : b+f.Bytes]
			d, dmin := float64(f16At(blk)), float64(f16At(blk[2:]))
			for c := range 4 {
				for half := range 2 {
					sc, m := scaleMinK4(2*c+half, blk[4:16])
					for l := range 32 {
						q := float64(blk[16+32*c+l] >> (4 * half) & 0xf)
						if f == &BlockQ5_K {
							q = float64(blk[48+32*c+l]>>(4*half)&0xf | (blk[16+l]>>(2*c+half)&1)<<4)
						}
						v, o := d*float64(sc)*q, dmin*float64(m)
						w, mag = append(w, v-o), append(mag, math.Abs(v)+math.Abs(o))
					}
				}
			}
		}
		return w, mag
	case &BlockQ6_K:
		for b := 0; b < len(row); b += 210 {
			blk := row[b : b+210]
			d := float64(f16At(blk[208:]))
			w = append(w, make([]float64, kBlock)...)
			out := w[len(w)-kBlock:]
			for h := range 2 {
				for k := range 4 {
					for l := range 32 {
						sc := float64(int8(blk[192+8*h+2*k+l/16]))
						out[128*h+32*k+l] = d * sc * float64(q6Level(blk, h, k, l))
					}
				}
			}
		}
		for _, v := range w {
			mag = append(mag, math.Abs(v))
		}
		return w, mag
	case &BlockQ4_1, &BlockQ5_1:
		return dequant64(f, 2, row)
	}
	return dequant64(f, -1, row)
}

// checkGemmInt runs g on x (m rows) and w and compares every value with the float64 sum
// of w's values times x's 8-bit quantization (the format's activation kind, by the
// portable quantizer), within 1e-5 of the sum of the terms' magnitudes: the integer sums
// are exact, so only the float32 scaling and the sum over groups round. It also checks
// that nothing past m·n is written.
func checkGemmInt(t *testing.T, name string, g *gemmIntFormat, x []float32, m int, w *Mat) {
	t.Helper()
	n, k := w.Rows, w.Cols
	dst := make([]float32, m*n+7)
	for i := range dst {
		dst[i] = float32(math.NaN())
	}
	gemmIntRun(g, x, m, Proj{Dst: dst, W: w})
	for i, v := range dst[m*n:] {
		if !math.IsNaN(float64(v)) {
			t.Fatalf("%s: dst[%d] past m·n written: %g", name, m*n+i, v)
		}
	}
	rb := w.Block.RowBytes(k)
	for i := range m {
		xq := actValues(quantizedRow(w.Block.act, x[i*k:(i+1)*k]))
		for r := range n {
			wv, wm := exactValues(w.Block, w.Blocks[r*rb:(r+1)*rb])
			var want, mag float64
			for p, v := range wv {
				want += v * xq[p]
				mag += wm[p] * math.Abs(xq[p])
			}
			if got := float64(dst[i*n+r]); !(math.Abs(got-want) <= 1e-5*mag) {
				t.Fatalf("%s: dst[%d,%d] = %g, want %g (terms' magnitude %g)", name, i, r, got, want, mag)
			}
		}
	}
}

// TestGemmInt checks each integer pre-fill on ragged and whole tiles and panels, several
// widths and thread counts, against checkGemmInt's float64 reference.
func TestGemmInt(t *testing.T) {
	if len(gemmInts) == 0 {
		t.Skip("no integer pre-fill on this CPU")
	}
	defer SetThreads(Threads())
	rng := rand.New(rand.NewPCG(20, 3))
	for f, g := range gemmInts {
		for _, th := range []int{1, 3} {
			SetThreads(th)
			for _, k := range []int{f.Values, 4 * f.Values, 1024} {
				for _, n := range []int{1, 31, 32, 33, 70} {
					w := gemmIntMat(t, rng, f, n, k)
					for _, m := range []int{1, 6, 7, 13, 40} {
						x := gaussRow(rng, m*k, 1)
						checkGemmInt(t, f.Name, g, x, m, &w)
					}
				}
			}
		}
	}
}

// TestGemmIntExtremes: Q8_0 codes of −128 and 127 against activation codes of ±127
// give the largest integer sums; a zero activation row gives zeros.
func TestGemmIntExtremes(t *testing.T) {
	g := gemmInts[&BlockQ8_0]
	if g == nil {
		t.Skip("no Q8_0 integer pre-fill on this CPU")
	}
	const n, k, m = 40, 2048, 8
	data := make([]byte, n*BlockQ8_0.RowBytes(k))
	for b := 0; b < len(data); b += 34 {
		binary.LittleEndian.PutUint16(data[b:], FloatToF16(0.5))
		code := byte(0x80)
		if b/34/(k/32)%2 == 1 {
			code = 0x7f
		}
		for i := range 32 {
			data[b+2+i] = code
		}
	}
	w, err := NewBlockMat(n, k, &BlockQ8_0, data)
	if err != nil {
		t.Fatal(err)
	}
	x := make([]float32, m*k)
	for i := range k * (m - 1) {
		x[i] = float32(1 - 2*(i/k%2))
	}
	checkGemmInt(t, "Q8_0 extremes", g, x, m, &w)
}

// TestGemmIntVsFloat: MatMulT on a format with an integer pre-fill, at m rows where it is
// used, stays within the activations' quantization error of the float64 product with x
// itself: |Σ w·(x − x₈)| ≤ Σ |w|·actErrBound, plus float32 rounding.
func TestGemmIntVsFloat(t *testing.T) {
	rng := rand.New(rand.NewPCG(20, 4))
	for f, g := range gemmInts {
		const n, k = 70, 512
		w := gemmIntMat(t, rng, f, n, k)
		rb := f.RowBytes(k)
		for _, m := range []int{g.minRows, 40} {
			if gemmIntFor(f, m) == nil || m <= smallM {
				t.Fatalf("%s: %d rows would not take the integer pre-fill", f.Name, m)
			}
			x := gaussRow(rng, m*k, 1)
			dst := make([]float32, m*n)
			MatMulT(dst, x, m, &w)
			for i := range m {
				xs := x[i*k : (i+1)*k]
				bound := actErrBound(f.act, xs)
				for r := range n {
					wv, _ := exactValues(f, w.Blocks[r*rb:(r+1)*rb])
					var want, err, mag float64
					for p, v := range wv {
						want += v * float64(xs[p])
						err += math.Abs(v) * bound[p]
						mag += math.Abs(v * float64(xs[p]))
					}
					if got := float64(dst[i*n+r]); !(math.Abs(got-want) <= err+1e-5*mag) {
						t.Fatalf("%s m=%d: dst[%d,%d] = %g, want %g within %g", f.Name, m, i, r, got, want, err+1e-5*mag)
					}
				}
			}
		}
	}
}

// BenchmarkGemmInt times pre-fill products of the Llama-3.2-1B shape's matrices (n x k:
// q/o 2048x2048, k/v 512x2048, gate/up 8192x2048, down 2048x8192) and SmolLM2-135M's
// (576x576, 192x576, 1536x576, 576x1536) for m rows, by the float path (widened panels,
// float32 GEMM) and the integer one, at 1 and 2 threads; 17 rows is the fewest that take
// the GEMM (smallM + 1). A matrix is quantized when a benchmark first needs it.
func BenchmarkGemmInt(b *testing.B) {
	defer SetThreads(Threads())
	rng := rand.New(rand.NewPCG(5, 6))
	var formats []*BlockFormat
	for f := range gemmInts {
		formats = append(formats, f)
	}
	shapes := [][2]int{{2048, 2048}, {512, 2048}, {8192, 2048}, {2048, 8192}, {576, 576}, {192, 576}, {1536, 576}, {576, 1536}}
	for _, f := range formats {
		g := gemmInts[f]
		for _, shape := range shapes {
			n, k := shape[0], shape[1]
			if k%f.Values != 0 { // SmolLM2's 576-value rows have no K-quant
				continue
			}
			var w *Mat
			matrix := func() *Mat {
				if w == nil {
					rb := f.RowBytes(k)
					data := make([]byte, n*rb)
					for r := range n {
						f.Quantize(data[r*rb:(r+1)*rb], gaussRow(rng, k, 1))
					}
					m, _ := NewBlockMat(n, k, f, data)
					w = &m
				}
				return w
			}
			for _, m := range []int{17, 64, 512} {
				for _, th := range []int{1, 2} {
					for _, path := range []string{"float", "int"} {
						b.Run(fmt.Sprintf("%s/%s/%dx%d/m%d/t%d", f.Name, path, n, k, m, th), func(b *testing.B) {
							SetThreads(th)
							if path == "float" {
								delete(gemmInts, f)
								defer func() { gemmInts[f] = g }()
							} else if gemmIntFor(f, m) == nil {
								b.Skip("below minRows")
							}
							w := matrix()
							x, dst := gaussRow(rng, m*k, 1), make([]float32, m*n)
							for b.Loop() {
								MatMulT(dst, x, m, w)
							}
							b.ReportMetric(float64(2*m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
						})
					}
				}
			}
		}
	}
}
