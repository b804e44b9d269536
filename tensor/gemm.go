package tensor

import "sync"

// operand is a read-only matrix view whose element (i, p) is at index i*rs + p*cs
// of f32 or, when f32 is nil, of bf16. The three products differ only in these strides.
type operand struct {
	f32    []float32
	bf16   []uint16
	rs, cs int
}

// Blocking (Goto/BLIS): a kc x nc panel of B is packed once and reused for every
// mc-row block of A; the mc x kc block of A stays in L2 and each kc x nr micro-panel
// of B (32 KiB at kc=256, nr=32) in L1 while the micro-kernel walks down A.
const (
	kcBlock = 256
	mcRows  = 192 // rounded up to a multiple of mr
	ncCols  = 1024
)

// gemmBufs are one goroutine's packing buffers.
type gemmBufs struct{ a, b, tile []float32 }

var bufPool = sync.Pool{New: func() any { return new(gemmBufs) }}

func grow(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

// gemm sets dst[i*ldc+j] = Σ_p a(i,p)·b(j,p) for i < m, j < n, p < k, split over t
// goroutines.
func gemm(im *impl, t int, dst []float32, ldc, m, n, k int, a, b operand) {
	if m == 0 || n == 0 {
		return
	}
	if k == 0 {
		for i := 0; i < m; i++ {
			clear(dst[i*ldc : i*ldc+n])
		}
		return
	}
	// Below ~1 MFLOP a goroutine costs more than it saves.
	if 2*m*n*k < 1<<20 {
		t = 1
	}
	// Split over columns of B (each goroutine packs its own B panel and needs no
	// synchronisation) unless there are too few column tiles to go round.
	if nt := (n + im.nr - 1) / im.nr; nt >= t {
		parallelFor(t, nt, func(lo, hi int) {
			gemmSerial(im, dst, ldc, 0, m, lo*im.nr, min(hi*im.nr, n), k, a, b)
		})
		return
	}
	mt := (m + im.mr - 1) / im.mr
	parallelFor(t, mt, func(lo, hi int) {
		gemmSerial(im, dst, ldc, lo*im.mr, min(hi*im.mr, m), 0, n, k, a, b)
	})
}

// gemmSerial computes the block of rows [i0, i1) and columns [j0, j1) of dst.
func gemmSerial(im *impl, dst []float32, ldc, i0, i1, j0, j1, k int, a, b operand) {
	mr, nr := im.mr, im.nr
	mc := (mcRows + mr - 1) / mr * mr
	bufs := bufPool.Get().(*gemmBufs)
	defer bufPool.Put(bufs)
	bufs.a = grow(bufs.a, mc*kcBlock)
	bufs.b = grow(bufs.b, kcBlock*ncCols)
	bufs.tile = grow(bufs.tile, mr*nr)
	tile := bufs.tile
	for jc := j0; jc < j1; jc += ncCols {
		nc := min(ncCols, j1-jc)
		for pc := 0; pc < k; pc += kcBlock {
			kc := min(kcBlock, k-pc)
			add := pc > 0
			pack(bufs.b, b, jc, nc, pc, kc, nr)
			for ic := i0; ic < i1; ic += mc {
				mcc := min(mc, i1-ic)
				pack(bufs.a, a, ic, mcc, pc, kc, mr)
				for jr := 0; jr < nc; jr += nr {
					bp := &bufs.b[jr*kc]
					nn := min(nr, nc-jr)
					for ir := 0; ir < mcc; ir += mr {
						ap := &bufs.a[ir*kc]
						mm := min(mr, mcc-ir)
						c := (ic+ir)*ldc + jc + jr
						if mm == mr && nn == nr {
							im.kernel(kc, ap, bp, &dst[c], ldc, add)
							continue
						}
						// Ragged edge: compute the full tile aside, keep the valid part.
						im.kernel(kc, ap, bp, &tile[0], nr, false)
						for i := 0; i < mm; i++ {
							row := dst[c+i*ldc : c+i*ldc+nn]
							src := tile[i*nr : i*nr+nn]
							if add {
								for j, v := range src {
									row[j] += v
								}
							} else {
								copy(row, src)
							}
						}
					}
				}
			}
		}
	}
}

// pack copies rows [r0, r0+rn) x columns [p0, p0+kc) of o into buf as micro-panels
// of blk rows, each stored column by column (p-major), zero-padding the last panel.
// bf16 is widened here, so the micro-kernel only ever sees float32.
func pack(buf []float32, o operand, r0, rn, p0, kc, blk int) {
	for r := 0; r < rn; r += blk {
		panel := buf[r*kc : (r+blk)*kc]
		n := min(blk, rn-r)
		if n < blk {
			clear(panel)
		}
		if o.f32 != nil && o.rs == 1 {
			// Columns are contiguous (MatMul's B, MatMulTN's A): copy them whole.
			for p := 0; p < kc; p++ {
				base := r0 + r + (p0+p)*o.cs
				copy(panel[p*blk:p*blk+n], o.f32[base:base+n])
			}
			continue
		}
		for i := 0; i < n; i++ {
			base := (r0+r+i)*o.rs + p0*o.cs
			if o.f32 != nil {
				if o.cs == 1 {
					for p, v := range o.f32[base : base+kc] {
						panel[p*blk+i] = v
					}
				} else {
					for p := 0; p < kc; p++ {
						panel[p*blk+i] = o.f32[base+p*o.cs]
					}
				}
			} else {
				if o.cs == 1 {
					for p, v := range o.bf16[base : base+kc] {
						panel[p*blk+i] = BF16ToFloat(v)
					}
				} else {
					for p := 0; p < kc; p++ {
						panel[p*blk+i] = BF16ToFloat(o.bf16[base+p*o.cs])
					}
				}
			}
		}
	}
}
