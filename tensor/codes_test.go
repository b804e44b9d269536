package tensor

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// code returns code c of a row of 8-bit (bits 8) or 4-bit codes, as the kernels'
// documentation defines it.
func code(row []uint8, c, bits int) float64 {
	if bits == 8 {
		return float64(row[c])
	}
	return float64(row[c/2] >> (4 * (c % 2)) & 15)
}

// keyScore is y·(code·sc + mn) over a row's channels in float64, and the sum of the
// terms' magnitudes.
func keyScore(y []float32, row []uint8, sc, mn []float32, bits int) (want, abs float64) {
	for c, v := range y {
		p := float64(v) * (code(row, c, bits)*float64(sc[c]) + float64(mn[c]))
		want += p
		abs += math.Abs(float64(v)) * (math.Abs(code(row, c, bits)*float64(sc[c])) + math.Abs(float64(mn[c])))
	}
	return want, abs
}

// The code kernels against float64 sums over the documented layout: widths around the
// vector blocks (16, 32, 64), strides wider than a row, every kernel set.
func TestCodeRows(t *testing.T) {
	withImpls(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(31, 32))
		for _, bits := range []int{8, 4} {
			widths := []int{1, 5, 15, 16, 17, 31, 32, 48, 64, 80, 96, 128, 192, 200}
			if bits == 4 {
				widths = []int{0, 32, 64, 96, 128, 160, 256}
			}
			for _, rows := range []int{0, 1, 3, 4, 7, 33} {
				for _, k := range widths {
					bytes := k * bits / 8
					stride := bytes + 3
					codes := make([]uint8, rows*stride+1)
					for i := range codes {
						codes[i] = uint8(r.IntN(256))
					}
					y, ksc, kmn := randSlice(r, k), randSlice(r, k), randSlice(r, k)
					dst := randSlice(r, rows+1)
					last := dst[rows]
					groups := []int{16, 32, 5, max(k, 1)}
					if bits == 4 {
						groups = []int{32, 64, max(k, 32)}
					}
					g := groups[(rows+k)%len(groups)]
					ng := (k + g - 1) / g
					sc, mn := randSlice(r, rows*ng), randSlice(r, rows*ng)
					prob := randSlice(r, rows)
					acc := randSlice(r, k+1)
					acc0 := append([]float32(nil), acc...)
					if bits == 8 {
						DotRowsU8(dst[:rows], y, 1, codes, stride, ksc, kmn)
						AxpyDequantU8(acc[:k], prob, 1, codes, stride, sc, mn, g)
					} else {
						DotRowsU4(dst[:rows], y, 1, codes, stride, ksc, kmn)
						an := make([]float32, k)
						NibbleOrder(an, acc[:k])
						AxpyDequantU4(an, prob, 1, codes, stride, sc, mn, g)
						NibbleUnorder(acc[:k], an)
					}
					name := fmt.Sprintf("%d-bit rows=%d k=%d group=%d", bits, rows, k, g)
					for j := range rows {
						want, abs := keyScore(y, codes[j*stride:], ksc, kmn, bits)
						checkSum(t, fmt.Sprintf("DotRows %s: dst[%d]", name, j), dst[j], want, abs, k+2)
					}
					if dst[rows] != last {
						t.Fatalf("DotRows %s wrote past len(dst)", name)
					}
					for c := range k {
						want, abs := float64(acc0[c]), math.Abs(float64(acc0[c]))
						for j := range rows {
							cs, m := code(codes[j*stride:], c, bits)*float64(sc[j*ng+c/g]), float64(mn[j*ng+c/g])
							want += float64(prob[j]) * (cs + m)
							abs += math.Abs(float64(prob[j])) * (math.Abs(cs) + math.Abs(m))
						}
						// each term: the dequantized value (one product, one sum) times p
						checkSum(t, fmt.Sprintf("AxpyDequant %s: y[%d]", name, c), acc[c], want, abs, rows+3)
					}
					if acc[k] != acc0[k] {
						t.Fatalf("AxpyDequant %s wrote past len(y)", name)
					}
				}
			}
		}
	})
}

func TestNibbleOrder(t *testing.T) {
	x := make([]float32, 64)
	for i := range x {
		x[i] = float32(i)
	}
	n := make([]float32, 64)
	NibbleOrder(n, x)
	for b := 0; b < 64; b += 32 {
		for i := range 16 {
			if n[b+i] != float32(b+2*i) || n[b+16+i] != float32(b+2*i+1) {
				t.Fatalf("NibbleOrder: block %d entry %d: %v, %v", b, i, n[b+i], n[b+16+i])
			}
		}
	}
	back := make([]float32, 64)
	NibbleUnorder(back, n)
	for i, v := range back {
		if v != x[i] {
			t.Fatalf("NibbleUnorder(NibbleOrder(x))[%d] = %v", i, v)
		}
	}
}

// DotRowsU8 and DotRowsU4 with several queries (up to the kernels' four, and past
// them) against the same rows equal each query's float64 sum.
func TestDotRowsQueries(t *testing.T) {
	withImpls(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(33, 34))
		for _, bits := range []int{8, 4} {
			widths := []int{16, 20, 64, 130}
			if bits == 4 {
				widths = []int{32, 64, 128}
			}
			for _, m := range []int{1, 2, 3, 4, 5, 9} {
				for _, rows := range []int{1, 7, 33} {
					for _, k := range widths {
						stride := k*bits/8 + 5
						codes := make([]uint8, rows*stride)
						for i := range codes {
							codes[i] = uint8(r.IntN(256))
						}
						y, ksc, kmn := randSlice(r, m*k), randSlice(r, k), randSlice(r, k)
						dst := randSlice(r, m*rows+1)
						last := dst[m*rows]
						if bits == 8 {
							DotRowsU8(dst[:m*rows], y, m, codes, stride, ksc, kmn)
						} else {
							DotRowsU4(dst[:m*rows], y, m, codes, stride, ksc, kmn)
						}
						for h := range m {
							for j := range rows {
								want, abs := keyScore(y[h*k:(h+1)*k], codes[j*stride:], ksc, kmn, bits)
								checkSum(t, fmt.Sprintf("%d-bit m=%d rows=%d k=%d: query %d row %d", bits, m, rows, k, h, j), dst[h*rows+j], want, abs, k+2)
							}
						}
						if dst[m*rows] != last {
							t.Fatalf("%d-bit m=%d rows=%d k=%d: wrote past len(dst)", bits, m, rows, k)
						}
					}
				}
			}
		}
	})
}

// AxpyDequantU8 and AxpyDequantU4 with several queries (the kernels take four, more go
// four at a time) over the same rows equal each query's float64 sum, with 1, 2, 3 and 4
// column groups a 64-column block and rows odd and even (the one-query kernels pair
// rows).
func TestAxpyDequantQueries(t *testing.T) {
	withImpls(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(35, 36))
		for _, bits := range []int{8, 4} {
			widths, groups := []int{16, 64, 130, 192}, []int{16, 32, 64}
			if bits == 4 {
				widths, groups = []int{32, 64, 128}, []int{32, 64}
			}
			for _, m := range []int{1, 2, 3, 4, 5, 9} {
				for _, rows := range []int{1, 2, 7, 33} {
					for _, k := range widths {
						g := groups[(m+rows+k)%len(groups)]
						ng := (k + g - 1) / g
						stride := k*bits/8 + 5
						codes := make([]uint8, rows*stride)
						for i := range codes {
							codes[i] = uint8(r.IntN(256))
						}
						sc, mn := randSlice(r, rows*ng), randSlice(r, rows*ng)
						p := randSlice(r, m*rows)
						y0 := randSlice(r, m*k+1)
						y := append([]float32(nil), y0...)
						if bits == 8 {
							AxpyDequantU8(y[:m*k], p, m, codes, stride, sc, mn, g)
						} else {
							yn := make([]float32, m*k)
							NibbleOrder(yn, y[:m*k])
							AxpyDequantU4(yn, p, m, codes, stride, sc, mn, g)
							NibbleUnorder(y[:m*k], yn)
						}
						name := fmt.Sprintf("%d-bit m=%d rows=%d k=%d group=%d", bits, m, rows, k, g)
						for h := range m {
							for c := range k {
								want, abs := float64(y0[h*k+c]), math.Abs(float64(y0[h*k+c]))
								for j := range rows {
									cs, mj := code(codes[j*stride:], c, bits)*float64(sc[j*ng+c/g]), float64(mn[j*ng+c/g])
									want += float64(p[h*rows+j]) * (cs + mj)
									abs += math.Abs(float64(p[h*rows+j])) * (math.Abs(cs) + math.Abs(mj))
								}
								checkSum(t, fmt.Sprintf("%s: query %d y[%d]", name, h, c), y[h*k+c], want, abs, rows+3)
							}
						}
						if y[m*k] != y0[m*k] {
							t.Fatalf("%s: wrote past len(y)", name)
						}
					}
				}
			}
		}
	})
}
