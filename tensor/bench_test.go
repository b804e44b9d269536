package tensor

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// Benchmarks report GFLOP/s and GB/s through b.ReportMetric. Run, for example:
//
//	go test ./tensor -run '^$' -bench . -count 5
//
// Each has t=1 and t=2 variants (goroutines). "cold" cycles through a set of
// matrices three times the 300 MiB L3, as decoding a large model does; "hot"
// reuses one 4096x4096 matrix, which stays in L3.

const (
	mvN      = 4096
	coldSet  = 768 << 20 // bytes of weights cycled through by the cold benchmarks
	threadsT = 2
)

func benchThreads(b *testing.B, fn func(b *testing.B)) {
	saved := threads
	defer func() { threads = saved }()
	for t := 1; t <= threadsT; t++ {
		threads = t
		b.Run(fmt.Sprintf("t=%d", t), fn)
	}
}

func BenchmarkMatMulT1024(b *testing.B) {
	const n = 1024
	r := rand.New(rand.NewPCG(1, 1))
	x := randSlice(r, n*n)
	w := &Mat{Rows: n, Cols: n, F32: randSlice(r, n*n)}
	dst := make([]float32, n*n)
	benchThreads(b, func(b *testing.B) {
		for b.Loop() {
			MatMulT(dst, x, n, w)
		}
		b.ReportMetric(2*n*n*n*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	})
}

func BenchmarkMatMul1024(b *testing.B) {
	const n = 1024
	r := rand.New(rand.NewPCG(1, 2))
	a, bb := randSlice(r, n*n), randSlice(r, n*n)
	dst := make([]float32, n*n)
	benchThreads(b, func(b *testing.B) {
		for b.Loop() {
			MatMul(dst, a, bb, n, n, n)
		}
		b.ReportMetric(2*n*n*n*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	})
}

// coldMats lazily builds the matrices of the cold set (and the first one serves
// as the hot matrix), shared by all benchmarks of one process.
var coldF32, coldBF16 []*Mat

func mats(bf16 bool) []*Mat {
	r := rand.New(rand.NewPCG(2, 3))
	if !bf16 && coldF32 == nil {
		for range coldSet / (4 * mvN * mvN) {
			coldF32 = append(coldF32, &Mat{Rows: mvN, Cols: mvN, F32: randSlice(r, mvN*mvN)})
		}
	}
	if bf16 && coldBF16 == nil {
		for range coldSet / (2 * mvN * mvN) {
			w := make([]uint16, mvN*mvN)
			for i := range w {
				w[i] = FloatToBF16(float32(r.NormFloat64()))
			}
			coldBF16 = append(coldBF16, &Mat{Rows: mvN, Cols: mvN, BF16: w})
		}
	}
	if bf16 {
		return coldBF16
	}
	return coldF32
}

func BenchmarkMatVec(b *testing.B) {
	x := randSlice(rand.New(rand.NewPCG(4, 5)), mvN)
	dst := make([]float32, mvN)
	for _, c := range []struct {
		name       string
		bf16, cold bool
	}{{"f32/hot", false, false}, {"f32/cold", false, true}, {"bf16/hot", true, false}, {"bf16/cold", true, true}} {
		ms := mats(c.bf16)
		if !c.cold {
			ms = ms[:1]
		}
		bytes := 4.0 * mvN * mvN
		if c.bf16 {
			bytes /= 2
		}
		b.Run(c.name, func(b *testing.B) {
			benchThreads(b, func(b *testing.B) {
				i := 0
				for b.Loop() {
					MatMulT(dst, x, 1, ms[i%len(ms)])
					i++
				}
				s := b.Elapsed().Seconds()
				b.ReportMetric(bytes*float64(b.N)/s/1e9, "GB/s")
				b.ReportMetric(2*mvN*mvN*float64(b.N)/s/1e9, "GFLOP/s")
			})
		})
	}
}

// BenchmarkReadBW is the memory read bandwidth against which matvec is judged: the
// same cold set of 4096x4096 f32 matrices, summed with the widest vector loads and
// split over the goroutines as matvec splits rows.
func BenchmarkReadBW(b *testing.B) {
	ms := mats(false)
	var sink float32
	benchThreads(b, func(b *testing.B) {
		i := 0
		for b.Loop() {
			w := ms[i%len(ms)].F32
			parts := make([]float32, threads)
			parallelFor(threads, threads, func(lo, hi int) {
				n := len(w) / threads
				parts[lo] = active.sum(w[lo*n : hi*n])
			})
			sink += parts[0]
			i++
		}
		b.ReportMetric(4*mvN*mvN*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
	})
	_ = sink
}

func BenchmarkDot(b *testing.B) {
	r := rand.New(rand.NewPCG(6, 7))
	for _, n := range []int{64, 128} {
		x, y := randSlice(r, n), randSlice(r, n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var s float32
			for b.Loop() {
				s += Dot(x, y)
			}
			b.ReportMetric(2*float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			_ = s
		})
	}
}

func BenchmarkAxpy(b *testing.B) {
	r := rand.New(rand.NewPCG(8, 9))
	for _, n := range []int{64, 128} {
		x, y := randSlice(r, n), randSlice(r, n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				Axpy(1e-9, x, y)
			}
			b.ReportMetric(2*float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkSoftmax is the softmax over one head's attention scores at decode.
func BenchmarkSoftmax(b *testing.B) {
	r := rand.New(rand.NewPCG(10, 11))
	for _, n := range []int{1024, 8192} {
		x := randSlice(r, n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			y := make([]float32, n)
			for b.Loop() {
				copy(y, x)
				Softmax(y)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/elem")
		})
	}
}

// BenchmarkSiLUMul is SwiGLU on one pre-fill chunk of SmolLM2-135M (512 rows of 1536
// values), for every kernel set, on one thread.
func BenchmarkSiLUMul(b *testing.B) {
	const n = 512 * 1536
	r := rand.New(rand.NewPCG(12, 13))
	g, up := randSlice(r, n), randSlice(r, n)
	gate := make([]float32, n)
	for _, im := range impls {
		b.Run(im.name, func(b *testing.B) {
			for b.Loop() {
				copy(gate, g)
				im.siluMul(gate, up)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/elem")
		})
	}
}

// BenchmarkMatVecSmolLM2 is one decode step's weight reads in the SmolLM2-135M shape:
// 30 layers of fused Q/K/V, O, fused gate/up and down products (576 wide, short
// rows), then the 49152-row LM head. The set (269 MB in bf16) is read in the model's
// order, so it comes from memory as a decode step's does.
func BenchmarkMatVecSmolLM2(b *testing.B) {
	const d, kvd, ff, vocab, layers = 576, 192, 1536, 49152, 30
	r := rand.New(rand.NewPCG(6, 7))
	for _, bf16 := range []bool{false, true} {
		mk := func(rows, cols int) *Mat { return randMat(r, rows, cols, bf16) }
		type layer struct{ q, k, v, o, gate, up, down *Mat }
		ls := make([]layer, layers)
		weights := 0
		for i := range ls {
			ls[i] = layer{mk(d, d), mk(kvd, d), mk(kvd, d), mk(d, d), mk(ff, d), mk(ff, d), mk(d, ff)}
			weights += 2*d*d + 2*kvd*d + 3*ff*d
		}
		head := mk(vocab, d)
		weights += vocab * d
		x, h := randSlice(r, ff), make([]float32, 3*ff)
		logits := make([]float32, vocab)
		name, bytes := "f32", 4.0*float64(weights)
		if bf16 {
			name, bytes = "bf16", bytes/2
		}
		for _, im := range impls[:len(impls)-1] { // the assembly routes; Go's is a reference
			b.Run(name+"/"+im.name, func(b *testing.B) {
				saved := active
				defer func() { active = saved }()
				active = im
				benchThreads(b, func(b *testing.B) {
					for b.Loop() {
						for _, l := range ls {
							MatMulTs(x[:d], 1, Proj{h[:d], l.q}, Proj{h[d : d+kvd], l.k}, Proj{h[d+kvd : d+2*kvd], l.v})
							MatMulT(h[:d], x[:d], 1, l.o)
							MatMulTs(x[:d], 1, Proj{h[:ff], l.gate}, Proj{h[ff : 2*ff], l.up})
							MatMulT(h[:d], x, 1, l.down)
						}
						MatMulT(logits, x[:d], 1, head)
					}
					b.ReportMetric(bytes*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
				})
			})
		}
	}
}

// BenchmarkPrefillSmolLM2 is one 512-token pre-fill chunk's weight products in the
// SmolLM2-135M shape, one thread: 30 layers of fused Q/K/V, O, fused gate/up and down,
// the weights held as float32, bf16 or F16 blocks (a GGUF file's F16, widened into
// 512-row float32 panels per product), read from memory as a pre-fill reads them.
func BenchmarkPrefillSmolLM2(b *testing.B) {
	const d, kvd, ff, layers, m = 576, 192, 1536, 30, 512
	defer SetThreads(Threads())
	SetThreads(1)
	r := rand.New(rand.NewPCG(10, 11))
	x, h := randSlice(r, m*ff), make([]float32, m*3*ff)
	for _, store := range []string{"f32", "bf16", "f16"} {
		b.Run(store, func(b *testing.B) {
			mk := func(rows, cols int) *Mat {
				w := randMat(r, rows, cols, store == "bf16")
				if store == "f16" {
					data := make([]byte, rows*cols*2)
					QuantizeF16(data, w.F32)
					w = &Mat{Rows: rows, Cols: cols, Blocks: data, Block: &BlockF16}
				}
				return w
			}
			type layer struct{ q, k, v, o, gate, up, down *Mat }
			ls := make([]layer, layers)
			for i := range ls {
				ls[i] = layer{mk(d, d), mk(kvd, d), mk(kvd, d), mk(d, d), mk(ff, d), mk(ff, d), mk(d, ff)}
			}
			for b.Loop() {
				for _, l := range ls {
					MatMulTs(x[:m*d], m, Proj{h[:m*d], l.q}, Proj{h[m*d : m*(d+kvd)], l.k}, Proj{h[m*(d+kvd) : m*(d+2*kvd)], l.v})
					MatMulT(h[:m*d], x[:m*d], m, l.o)
					MatMulTs(x[:m*d], m, Proj{h[:m*ff], l.gate}, Proj{h[m*ff : 2*m*ff], l.up})
					MatMulT(h[:m*d], x[:m*ff], m, l.down)
				}
			}
			flops := 2.0 * m * layers * (2*d*d + 2*kvd*d + 3*ff*d)
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkMatMulTRows is MatMulT of a few rows (a server's batch of decode steps, a
// short pre-fill chunk) through each route: the matrix-vector kernel (route=mv) and
// the packing GEMM (route=gemm), on 30 layers of the SmolLM2-135M shapes (Q, gate,
// down). smallM, the rows below which MatMulT takes the first, comes from here.
func BenchmarkMatMulTRows(b *testing.B) {
	const d, ff, layers = 576, 1536, 30
	r := rand.New(rand.NewPCG(8, 9))
	for _, bf16 := range []bool{false, true} {
		mk := func(rows, cols int) *Mat { return randMat(r, rows, cols, bf16) }
		type layer struct{ q, gate, down *Mat }
		ls := make([]layer, layers)
		for i := range ls {
			ls[i] = layer{mk(d, d), mk(ff, d), mk(d, ff)}
		}
		const most = 128
		x, h := randSlice(r, most*ff), make([]float32, most*ff)
		name := map[bool]string{false: "f32", true: "bf16"}[bf16]
		for _, m := range []int{8, 16, 32, 64, most} {
			for _, route := range []string{"mv", "gemm"} {
				b.Run(fmt.Sprintf("%s/m=%d/route=%s", name, m, route), func(b *testing.B) {
					defer func(s int) { smallM = s }(smallM)
					smallM = map[string]int{"mv": most, "gemm": 0}[route]
					benchThreads(b, func(b *testing.B) {
						for b.Loop() {
							for _, l := range ls {
								MatMulT(h, x[:m*d], m, l.q)
								MatMulT(h, x[:m*d], m, l.gate)
								MatMulT(h, x[:m*ff], m, l.down)
							}
						}
						b.ReportMetric(float64(b.N*m)/b.Elapsed().Seconds(), "rows/s")
					})
				})
			}
		}
	}
}

// randMat is a rows x cols matrix of normal values, held in bf16 or float32.
func randMat(r *rand.Rand, rows, cols int, bf16 bool) *Mat {
	if !bf16 {
		return &Mat{Rows: rows, Cols: cols, F32: randSlice(r, rows*cols)}
	}
	w := make([]uint16, rows*cols)
	for i := range w {
		w[i] = FloatToBF16(float32(r.NormFloat64()))
	}
	return &Mat{Rows: rows, Cols: cols, BF16: w}
}

// BenchmarkDotRowsQueries scores three query heads (SmolLM2's group) against 4096 rows
// of 64 codes in key groups of 32 rows (a call per group, each with its own scales, as
// decode attention calls it), as one call of several queries (queries=3) and as three
// calls of one (queries=1x3).
//
//	go test ./tensor -run '^$' -bench DotRowsQueries -benchtime 2000x
func BenchmarkDotRowsQueries(b *testing.B) {
	const rows, k, m, group = 4096, 64, 3, 32
	r := rand.New(rand.NewPCG(10, 11))
	codes := make([]uint8, rows*k)
	for i := range codes {
		codes[i] = uint8(r.IntN(256))
	}
	y, dst := randSlice(r, m*k), make([]float32, m*group)
	sc, mn := randSlice(r, rows/group*k), randSlice(r, rows/group*k)
	for _, bits := range []int{8, 4} {
		dot, stride := DotRowsU8, k
		if bits == 4 {
			dot, stride = DotRowsU4, k/2
		}
		b.Run(fmt.Sprintf("%d-bit/queries=3", bits), func(b *testing.B) {
			for b.Loop() {
				for g := range rows / group {
					dot(dst, y, m, codes[g*group*stride:], stride, sc[g*k:], mn[g*k:])
				}
			}
		})
		b.Run(fmt.Sprintf("%d-bit/queries=1x3", bits), func(b *testing.B) {
			for b.Loop() {
				for g := range rows / group {
					for h := range m {
						dot(dst[h*group:(h+1)*group], y[h*k:(h+1)*k], 1, codes[g*group*stride:], stride, sc[g*k:], mn[g*k:])
					}
				}
			}
		})
	}
}
