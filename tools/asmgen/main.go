// Command asmgen writes tensor/kern_amd64.s, the amd64 kernels of package tensor,
// once for AVX-512 (zmm, 16 lanes) and once for AVX2+FMA (ymm, 8 lanes) from the
// same templates, so that the two paths cannot drift apart.
//
//	go run ./tools/asmgen > tensor/kern_amd64.s
//
// Every kernel handles only whole vectors; the Go wrappers in tensor/kern_amd64.go
// do the ragged tails, which keeps the assembly short and free of masks.
package main

import (
	"fmt"
	"os"
	"strings"
)

// isa describes one vector width.
type isa struct {
	suffix string // function name suffix
	reg    string // "Z" or "Y"
	lanes  int    // float32 lanes per vector
	mr, nr int    // GEMM micro-tile: mr rows of A, nr columns of B (nr = 2 vectors)
	zero   string // instruction that zeroes a vector register
}

var isas = []isa{
	// 12x32: 24 accumulators, 2 B vectors, 6 broadcast registers out of 32 zmm.
	{suffix: "AVX512", reg: "Z", lanes: 16, mr: 12, nr: 32, zero: "VPXORD"},
	// 6x16: 12 accumulators, 2 B vectors, 2 broadcast registers out of 16 ymm.
	{suffix: "AVX2", reg: "Y", lanes: 8, mr: 6, nr: 16, zero: "VXORPS"},
}

var out strings.Builder

func emit(format string, args ...any) { fmt.Fprintf(&out, format+"\n", args...) }

func (s isa) r(i int) string { return fmt.Sprintf("%s%d", s.reg, i) }

func (s isa) vbytes() int { return 4 * s.lanes }

// reduce sums the lanes of vector register v into the low lane of X<v>, using t as scratch.
func (s isa) reduce(v, t int) {
	if s.reg == "Z" {
		emit("\tVEXTRACTF64X4 $1, Z%d, Y%d", v, t)
		emit("\tVADDPS Y%d, Y%d, Y%d", t, v, v)
	}
	emit("\tVEXTRACTF128 $1, Y%d, X%d", v, t)
	emit("\tVADDPS X%d, X%d, X%d", t, v, v)
	emit("\tVHADDPS X%d, X%d, X%d", v, v, v)
	emit("\tVHADDPS X%d, X%d, X%d", v, v, v)
}

// gemm writes the micro-kernel: C[mr x nr] (row stride ldc) = (add ? C : 0) + Σ_p A[:,p]·B[p,:],
// where A is packed p-major in groups of mr and B p-major in groups of nr.
func (s isa) gemm() {
	mr, vb := s.mr, s.vbytes()
	nacc := 2 * mr
	b0, b1, bc := nacc, nacc+1, nacc+2 // B vectors, then broadcast registers
	nbc := 6
	if s.reg == "Y" {
		nbc = 2
	}
	emit("// func gemm%s(k int, a, b, c *float32, ldc int, add bool)", s.suffix)
	emit("TEXT ·gemm%s(SB), NOSPLIT, $0-41", s.suffix)
	emit("\tMOVQ k+0(FP), CX")
	emit("\tMOVQ a+8(FP), SI")
	emit("\tMOVQ b+16(FP), DI")
	emit("\tMOVQ c+24(FP), DX")
	emit("\tMOVQ ldc+32(FP), R8")
	emit("\tSHLQ $2, R8")
	for i := 0; i < nacc; i++ {
		emit("\t%s %s, %s, %s", s.zero, s.r(i), s.r(i), s.r(i))
	}
	emit("\tTESTQ CX, CX")
	emit("\tJZ gemm%sstore", s.suffix)
	emit("gemm%sloop:", s.suffix)
	emit("\tVMOVUPS (DI), %s", s.r(b0))
	emit("\tVMOVUPS %d(DI), %s", vb, s.r(b1))
	for i := 0; i < mr; i++ {
		br := s.r(bc + i%nbc)
		emit("\tVBROADCASTSS %d(SI), %s", 4*i, br)
		emit("\tVFMADD231PS %s, %s, %s", br, s.r(b0), s.r(2*i))
		emit("\tVFMADD231PS %s, %s, %s", br, s.r(b1), s.r(2*i+1))
	}
	emit("\tADDQ $%d, SI", 4*mr)
	emit("\tADDQ $%d, DI", 2*vb)
	emit("\tDECQ CX")
	emit("\tJNZ gemm%sloop", s.suffix)
	emit("gemm%sstore:", s.suffix)
	emit("\tMOVBQZX add+40(FP), AX")
	emit("\tTESTQ AX, AX")
	emit("\tJZ gemm%sset", s.suffix)
	for i := 0; i < mr; i++ {
		emit("\tVADDPS (DX), %s, %s", s.r(2*i), s.r(2*i))
		emit("\tVADDPS %d(DX), %s, %s", vb, s.r(2*i+1), s.r(2*i+1))
		emit("\tVMOVUPS %s, (DX)", s.r(2*i))
		emit("\tVMOVUPS %s, %d(DX)", s.r(2*i+1), vb)
		emit("\tADDQ R8, DX")
	}
	emit("\tVZEROUPPER")
	emit("\tRET")
	emit("gemm%sset:", s.suffix)
	for i := 0; i < mr; i++ {
		emit("\tVMOVUPS %s, (DX)", s.r(2*i))
		emit("\tVMOVUPS %s, %d(DX)", s.r(2*i+1), vb)
		emit("\tADDQ R8, DX")
	}
	emit("\tVZEROUPPER")
	emit("\tRET")
	emit("")
}

// dot writes Σ a[i]·b[i] for n a multiple of the lane count.
func (s isa) dot() {
	vb, l := s.vbytes(), s.lanes
	emit("// func dot%s(a, b *float32, n int) float32", s.suffix)
	emit("TEXT ·dot%s(SB), NOSPLIT, $0-28", s.suffix)
	emit("\tMOVQ a+0(FP), SI")
	emit("\tMOVQ b+8(FP), DI")
	emit("\tMOVQ n+16(FP), CX")
	for i := 0; i < 4; i++ {
		emit("\t%s %s, %s, %s", s.zero, s.r(i), s.r(i), s.r(i))
	}
	emit("dot%sloop4:", s.suffix)
	emit("\tCMPQ CX, $%d", 4*l)
	emit("\tJLT dot%sloop1", s.suffix)
	for i := 0; i < 4; i++ {
		emit("\tVMOVUPS %d(SI), %s", i*vb, s.r(4+i))
		emit("\tVFMADD231PS %d(DI), %s, %s", i*vb, s.r(4+i), s.r(i))
	}
	emit("\tADDQ $%d, SI", 4*vb)
	emit("\tADDQ $%d, DI", 4*vb)
	emit("\tSUBQ $%d, CX", 4*l)
	emit("\tJMP dot%sloop4", s.suffix)
	emit("dot%sloop1:", s.suffix)
	emit("\tTESTQ CX, CX")
	emit("\tJZ dot%sdone", s.suffix)
	emit("\tVMOVUPS (SI), %s", s.r(4))
	emit("\tVFMADD231PS (DI), %s, %s", s.r(4), s.r(0))
	emit("\tADDQ $%d, SI", vb)
	emit("\tADDQ $%d, DI", vb)
	emit("\tSUBQ $%d, CX", l)
	emit("\tJMP dot%sloop1", s.suffix)
	emit("dot%sdone:", s.suffix)
	emit("\tVADDPS %s, %s, %s", s.r(1), s.r(0), s.r(0))
	emit("\tVADDPS %s, %s, %s", s.r(3), s.r(2), s.r(2))
	emit("\tVADDPS %s, %s, %s", s.r(2), s.r(0), s.r(0))
	s.reduce(0, 1)
	emit("\tVZEROUPPER")
	emit("\tMOVSS X0, ret+24(FP)")
	emit("\tRET")
	emit("")
}

// sum writes Σ a[i] for n a multiple of 4 vectors; it only loads and adds, so it
// measures read bandwidth.
func (s isa) sum() {
	vb, l := s.vbytes(), s.lanes
	emit("// func sum%s(a *float32, n int) float32", s.suffix)
	emit("TEXT ·sum%s(SB), NOSPLIT, $0-20", s.suffix)
	emit("\tMOVQ a+0(FP), SI")
	emit("\tMOVQ n+8(FP), CX")
	for i := 0; i < 4; i++ {
		emit("\t%s %s, %s, %s", s.zero, s.r(i), s.r(i), s.r(i))
	}
	emit("\tTESTQ CX, CX")
	emit("\tJZ sum%sdone", s.suffix)
	emit("sum%sloop:", s.suffix)
	for i := 0; i < 4; i++ {
		emit("\tVADDPS %d(SI), %s, %s", i*vb, s.r(i), s.r(i))
	}
	emit("\tADDQ $%d, SI", 4*vb)
	emit("\tSUBQ $%d, CX", 4*l)
	emit("\tJNZ sum%sloop", s.suffix)
	emit("sum%sdone:", s.suffix)
	emit("\tVADDPS %s, %s, %s", s.r(1), s.r(0), s.r(0))
	emit("\tVADDPS %s, %s, %s", s.r(3), s.r(2), s.r(2))
	emit("\tVADDPS %s, %s, %s", s.r(2), s.r(0), s.r(0))
	s.reduce(0, 1)
	emit("\tVZEROUPPER")
	emit("\tMOVSS X0, ret+16(FP)")
	emit("\tRET")
	emit("")
}

// axpy writes y += alpha·x for n a multiple of the lane count.
func (s isa) axpy() {
	vb, l := s.vbytes(), s.lanes
	al := s.r(15)
	emit("// func axpy%s(alpha float32, x, y *float32, n int)", s.suffix)
	emit("TEXT ·axpy%s(SB), NOSPLIT, $0-32", s.suffix)
	emit("\tVBROADCASTSS alpha+0(FP), %s", al)
	emit("\tMOVQ x+8(FP), SI")
	emit("\tMOVQ y+16(FP), DI")
	emit("\tMOVQ n+24(FP), CX")
	emit("axpy%sloop4:", s.suffix)
	emit("\tCMPQ CX, $%d", 4*l)
	emit("\tJLT axpy%sloop1", s.suffix)
	for i := 0; i < 4; i++ {
		emit("\tVMOVUPS %d(DI), %s", i*vb, s.r(i))
		emit("\tVFMADD231PS %d(SI), %s, %s", i*vb, al, s.r(i))
		emit("\tVMOVUPS %s, %d(DI)", s.r(i), i*vb)
	}
	emit("\tADDQ $%d, SI", 4*vb)
	emit("\tADDQ $%d, DI", 4*vb)
	emit("\tSUBQ $%d, CX", 4*l)
	emit("\tJMP axpy%sloop4", s.suffix)
	emit("axpy%sloop1:", s.suffix)
	emit("\tTESTQ CX, CX")
	emit("\tJZ axpy%sdone", s.suffix)
	emit("\tVMOVUPS (DI), %s", s.r(0))
	emit("\tVFMADD231PS (SI), %s, %s", al, s.r(0))
	emit("\tVMOVUPS %s, (DI)", s.r(0))
	emit("\tADDQ $%d, SI", vb)
	emit("\tADDQ $%d, DI", vb)
	emit("\tSUBQ $%d, CX", l)
	emit("\tJMP axpy%sloop1", s.suffix)
	emit("axpy%sdone:", s.suffix)
	emit("\tVZEROUPPER")
	emit("\tRET")
	emit("")
}

// matvec writes y[r] = Σ_c w[r·ldw + c]·x[c] for rows a multiple of 4 and k a
// multiple of the lane count, four rows at a time so that each x vector loaded
// serves four weight rows.
func (s isa) matvec() {
	vb := s.vbytes()
	name := "matvecF32" + s.suffix
	// Z0-Z7: accumulators (row r, half h) = 2r+h; Z8, Z9: x.
	emit("// func %s(w unsafe.Pointer, ldw int, x, y *float32, rows, k int)", name)
	emit("//")
	emit("// Groups of four rows of at most 32 KiB are prefetched as in matvecBF16%s (with the", s.suffix)
	emit("// AVX-512 kernel one core of the reference machine's Xeon read f32 SmolLM2-shaped")
	emit("// weights at 13.3 GB/s instead of 10.4); longer rows are left to the hardware")
	emit("// prefetcher, which keeps up with them.")
	emit("TEXT ·%s(SB), NOSPLIT, $0-48", name)
	emit("\tMOVQ w+0(FP), SI")
	emit("\tMOVQ ldw+8(FP), R8")
	emit("\tMOVQ x+16(FP), DI")
	emit("\tMOVQ y+24(FP), DX")
	emit("\tMOVQ rows+32(FP), BX")
	emit("\tMOVQ k+40(FP), R13")
	emit("\tSHLQ $2, R8") // row stride in bytes
	emit("\tLEAQ (R8)(R8*2), R11")
	emit("\tSHLQ $2, R13") // k in bytes
	// R10: how far ahead to prefetch, 0 for groups of rows longer than 32 KiB
	emit("\tLEAQ (R8*4), R10")
	emit("\tCMPQ R10, $32768")
	emit("\tJLE %sshort", name)
	emit("\tXORQ R10, R10")
	emit("\tJMP %spf", name)
	emit("%sshort:", name)
	emit("\tCMPQ R10, $8192")
	emit("\tJGE %spf", name)
	emit("\tMOVQ $8192, R10")
	emit("%spf:", name)
	emit("\tTESTQ BX, BX")
	emit("\tJZ %sdone", name)
	emit("%srows:", name)
	for i := 0; i < 8; i++ {
		emit("\t%s %s, %s, %s", s.zero, s.r(i), s.r(i), s.r(i))
	}
	emit("\tXORQ AX, AX") // byte offset into a row of w
	emit("\tMOVQ DI, R9") // x pointer
	emit("\tMOVQ R13, CX")
	emit("\tANDQ $-%d, CX", 2*vb) // bytes covered by the 2-vector loop
	// R12 walks along row 0; rows 1-3 are R12 + R8, + 2·R8, + R11 (= 3·R8).
	emit("\tMOVQ SI, R12")
	emit("\tLEAQ (SI)(R10*1), R14") // R14: the prefetch pointer
	body := func(h int) {
		xr := s.r(8 + h)
		emit("\tVMOVUPS %d(R9), %s", h*vb, xr)
		addrs := []string{
			fmt.Sprintf("%d(R12)", h*vb),
			fmt.Sprintf("%d(R12)(R8*1)", h*vb),
			fmt.Sprintf("%d(R12)(R8*2)", h*vb),
			fmt.Sprintf("%d(R12)(R11*1)", h*vb),
		}
		for r := 0; r < 4; r++ {
			emit("\tVFMADD231PS %s, %s, %s", addrs[r], xr, s.r(2*r+h))
		}
	}
	emit("\tTESTQ CX, CX")
	emit("\tJZ %sone", name)
	emit("%sloop2:", name)
	emit("\tTESTQ R10, R10")
	emit("\tJZ %sfma", name)
	for o := 0; o < 8*vb; o += 64 { // the lines of the four rows' 2·vb bytes each
		emit("\tPREFETCHT0 %d(R14)", o)
	}
	emit("\tADDQ $%d, R14", 8*vb)
	emit("%sfma:", name)
	body(0)
	body(1)
	emit("\tADDQ $%d, R12", 2*vb)
	emit("\tADDQ $%d, R9", 2*vb)
	emit("\tADDQ $%d, AX", 2*vb)
	emit("\tCMPQ AX, CX")
	emit("\tJLT %sloop2", name)
	emit("%sone:", name)
	emit("\tCMPQ AX, R13")
	emit("\tJGE %sred", name)
	body(0)
	emit("\tADDQ $%d, R12", vb)
	emit("\tADDQ $%d, R9", vb)
	emit("\tADDQ $%d, AX", vb)
	emit("\tJMP %sone", name)
	emit("%sred:", name)
	for r := 0; r < 4; r++ {
		emit("\tVADDPS %s, %s, %s", s.r(2*r+1), s.r(2*r), s.r(2*r))
		s.reduce(2*r, 2*r+1)
		emit("\tVMOVSS X%d, %d(DX)", 2*r, 4*r)
	}
	emit("\tADDQ $16, DX")
	emit("\tLEAQ (SI)(R8*4), SI")
	emit("\tSUBQ $4, BX")
	emit("\tJNZ %srows", name)
	emit("%sdone:", name)
	emit("\tVZEROUPPER")
	emit("\tRET")
	emit("")
}

// matvecBF16 is matvec for bf16 weights, rows a multiple of 4 and k a multiple of
// 2·lanes. One vector load brings 2·lanes bf16 weights; a bf16 is the high half of
// a float32, so shifting each 32-bit lane left by 16 widens the even-indexed weights
// and masking off the low half widens the odd ones: two cheap ops per 2·lanes
// weights and no shuffle. The caller passes x de-interleaved to match: per chunk of
// 2·lanes, the even-indexed values, then the odd-indexed ones.
func (s isa) matvecBF16() {
	vb, name := s.vbytes(), "matvecBF16"+s.suffix
	and := "VPAND"
	if s.reg == "Z" {
		and = "VPANDD"
	}
	// 0-7: accumulators (row r, even/odd h) = 2r+h; 8, 9: x even/odd; 10-13: weights; 15: mask.
	emit("// func %s(w unsafe.Pointer, ldw int, x, y *float32, rows, k int)", name)
	emit("//")
	emit("// It prefetches the weights max(8 KiB, 4 rows) ahead of the group of four rows it")
	emit("// reads: four streams of short rows (576 bf16, 18 lines each, as in small models)")
	emit("// end before the hardware prefetcher has ramped up, and the kernel waited on memory")
	emit("// at half the f32 kernel's bandwidth (BenchmarkMatVecSmolLM2).")
	emit("TEXT ·%s(SB), NOSPLIT, $0-48", name)
	emit("\tMOVQ w+0(FP), SI")
	emit("\tMOVQ ldw+8(FP), R8")
	emit("\tMOVQ x+16(FP), DI")
	emit("\tMOVQ y+24(FP), DX")
	emit("\tMOVQ rows+32(FP), BX")
	emit("\tMOVQ k+40(FP), R13")
	emit("\tSHLQ $1, R8") // row stride in bytes
	emit("\tLEAQ (R8)(R8*2), R11")
	emit("\tSHLQ $1, R13") // k in bytes of w
	emit("\tMOVL $0xffff0000, AX")
	emit("\tMOVQ AX, X15")
	emit("\tVPBROADCASTD X15, %s", s.r(15))
	emit("\tLEAQ (R8*4), R10") // R10: how far ahead to prefetch
	emit("\tCMPQ R10, $8192")
	emit("\tJGE %spf", name)
	emit("\tMOVQ $8192, R10")
	emit("%spf:", name)
	emit("\tTESTQ BX, BX")
	emit("\tJZ %sdone", name)
	emit("%srows:", name)
	for i := 0; i < 8; i++ {
		emit("\t%s %s, %s, %s", s.zero, s.r(i), s.r(i), s.r(i))
	}
	emit("\tXORQ AX, AX")
	emit("\tMOVQ DI, R9")
	emit("\tMOVQ SI, R12")
	emit("\tLEAQ (SI)(R10*1), R14")
	emit("\tTESTQ R13, R13")
	emit("\tJZ %sred", name)
	emit("%sloop:", name)
	for o := 0; o < 4*vb; o += 64 { // the lines of the four rows' vb bytes each
		emit("\tPREFETCHT0 %d(R14)", o)
	}
	emit("\tADDQ $%d, R14", 4*vb)
	emit("\tVMOVUPS (R9), %s", s.r(8))
	emit("\tVMOVUPS %d(R9), %s", vb, s.r(9))
	addrs := []string{"(R12)", "(R12)(R8*1)", "(R12)(R8*2)", "(R12)(R11*1)"}
	for r := 0; r < 4; r++ {
		e, o := s.r(10+2*(r%2)), s.r(11+2*(r%2))
		emit("\tVMOVUPS %s, %s", addrs[r], e)
		emit("\t%s %s, %s, %s", and, e, s.r(15), o)
		emit("\tVPSLLD $16, %s, %s", e, e)
		emit("\tVFMADD231PS %s, %s, %s", e, s.r(8), s.r(2*r))
		emit("\tVFMADD231PS %s, %s, %s", o, s.r(9), s.r(2*r+1))
	}
	emit("\tADDQ $%d, R12", vb)
	emit("\tADDQ $%d, R9", 2*vb)
	emit("\tADDQ $%d, AX", vb)
	emit("\tCMPQ AX, R13")
	emit("\tJLT %sloop", name)
	emit("%sred:", name)
	for r := 0; r < 4; r++ {
		emit("\tVADDPS %s, %s, %s", s.r(2*r+1), s.r(2*r), s.r(2*r))
		s.reduce(2*r, 2*r+1)
		emit("\tVMOVSS X%d, %d(DX)", 2*r, 4*r)
	}
	emit("\tADDQ $16, DX")
	emit("\tLEAQ (SI)(R8*4), SI")
	emit("\tSUBQ $4, BX")
	emit("\tJNZ %srows", name)
	emit("%sdone:", name)
	emit("\tVZEROUPPER")
	emit("\tRET")
	emit("")
}

// expConsts are the constants of expSum, each repeated over one ymm (32 bytes):
// the clamp below which exp(t) underflows, log2(e), ln 2 split in a high part exact
// in float32 and a low part, the Cephes expf polynomial, 1, the exponent bias and
// the sign bit.
var expConsts = []struct {
	name string
	bits uint32
}{
	{"clamp", 0xc2aeac4f}, // -87.33654
	{"log2e", 0x3fb8aa3b}, // 1.44269504
	{"ln2hi", 0x3f318000}, // 0.693359375
	{"ln2lo", 0xb95e8083}, // -2.12194440e-4
	{"c5", 0x39506967},    // 1.9875691500e-4
	{"c4", 0x3ab743ce},    // 1.3981999507e-3
	{"c3", 0x3c088908},    // 8.3334519073e-3
	{"c2", 0x3d2aa9c1},    // 4.1665795894e-2
	{"c1", 0x3e2aaaaa},    // 1.6666665459e-1
	{"c0", 0x3f000000},    // 5.0000001201e-1
	{"one", 0x3f800000},
	{"bias", 127},
	{"sign", 0x80000000},
}

func expConst(name string) string {
	for i, c := range expConsts {
		if c.name == name {
			return fmt.Sprintf("expConsts<>+%d(SB)", 32*i)
		}
	}
	panic(name)
}

// expSum writes x[i] = exp(x[i] - mx) for n a multiple of 8 and returns their sum:
// the exponentials of Softmax. It assumes x[i] ≤ mx (so no overflow): t = x - mx is
// split as n·ln2 + r with |r| ≤ ln2/2, exp(r) comes from a degree-7 polynomial and 2^n
// is built in the exponent bits. Below the clamp the result is exactly 0, and NaN
// stays NaN. It uses ymm only, so the AVX-512 set shares it.
func expSum() {
	for i, c := range expConsts {
		for j := 0; j < 8; j++ {
			emit("DATA expConsts<>+%d(SB)/4, $0x%08x", 32*i+4*j, c.bits)
		}
	}
	emit("GLOBL expConsts<>(SB), RODATA|NOPTR, $%d", 32*len(expConsts))
	emit("")
	emit("// func expSumAVX2(x *float32, n int, mx float32) float32")
	emit("TEXT ·expSumAVX2(SB), NOSPLIT, $0-28")
	emit("\tMOVQ x+0(FP), SI")
	emit("\tMOVQ n+8(FP), CX")
	emit("\tVBROADCASTSS mx+16(FP), Y15")
	emit("\tVMOVUPS %s, Y14", expConst("clamp"))
	emit("\tVXORPS Y0, Y0, Y0")
	emit("\tTESTQ CX, CX")
	emit("\tJZ expdone")
	emit("exploop:")
	emit("\tVMOVUPS (SI), Y1")
	emit("\tVSUBPS Y15, Y1, Y1") // t
	expY1()
	emit("\tVMOVUPS Y4, (SI)")
	emit("\tVADDPS Y4, Y0, Y0")
	emit("\tADDQ $32, SI")
	emit("\tSUBQ $8, CX")
	emit("\tJNZ exploop")
	emit("expdone:")
	isas[1].reduce(0, 1)
	emit("\tVZEROUPPER")
	emit("\tMOVSS X0, ret+24(FP)")
	emit("\tRET")
	emit("")
}

// expY1 sets Y4 = exp(Y1) for lanes of Y1 below exp's overflow (expSum's are ≤ 0), with
// Y14 = the clamp and Y2, Y3, Y5 as scratch: the body of expSum and siluMul.
func expY1() {
	emit("\tVMAXPS Y1, Y14, Y2") // max(clamp, t); a NaN t passes through
	emit("\tVMULPS %s, Y2, Y3", expConst("log2e"))
	emit("\tVROUNDPS $0, Y3, Y3") // n, to nearest
	emit("\tVFNMADD231PS %s, Y3, Y2", expConst("ln2hi"))
	emit("\tVFNMADD231PS %s, Y3, Y2", expConst("ln2lo")) // r = t - n·ln2
	emit("\tVMOVUPS %s, Y4", expConst("c5"))
	for _, c := range []string{"c4", "c3", "c2", "c1", "c0"} {
		emit("\tVFMADD213PS %s, Y2, Y4", expConst(c))
	}
	emit("\tVMULPS Y2, Y2, Y5")
	emit("\tVFMADD213PS Y2, Y5, Y4") // p·r² + r
	emit("\tVADDPS %s, Y4, Y4", expConst("one"))
	emit("\tVCVTPS2DQ Y3, Y3")
	emit("\tVPADDD %s, Y3, Y3", expConst("bias"))
	emit("\tVPSLLD $23, Y3, Y3") // 2^n
	emit("\tVMULPS Y3, Y4, Y4")
	emit("\tVCMPPS $5, Y14, Y1, Y5") // !(t < clamp), true for NaN
	emit("\tVANDPS Y5, Y4, Y4")
}

// siluMul writes g[i] = g[i]·σ(g[i])·u[i] for n a multiple of 8, σ(g) from
// e = exp(-|g|): 1/(1+e) for g ≥ 0 (not NaN), e/(1+e) else. The same operations in
// the same order as siluMulGo, with expSum's exp: SwiGLU without a Go loop around it.
func siluMul() {
	emit("// func siluMulAVX2(gate, up *float32, n int)")
	emit("TEXT ·siluMulAVX2(SB), NOSPLIT, $0-24")
	emit("\tMOVQ gate+0(FP), DI")
	emit("\tMOVQ up+8(FP), DX")
	emit("\tMOVQ n+16(FP), CX")
	emit("\tVMOVUPS %s, Y14", expConst("clamp"))
	emit("\tVMOVUPS %s, Y13", expConst("one"))
	emit("\tVMOVUPS %s, Y12", expConst("sign"))
	emit("\tVXORPS Y11, Y11, Y11")
	emit("\tTESTQ CX, CX")
	emit("\tJZ silumuldone")
	emit("silumulloop:")
	emit("\tVMOVUPS (DI), Y0")
	emit("\tVORPS Y12, Y0, Y1") // -|g|
	expY1()
	emit("\tVCMPPS $13, Y11, Y0, Y6")   // g ≥ 0, false for NaN
	emit("\tVBLENDVPS Y6, Y13, Y4, Y7") // g ≥ 0 ? 1 : e
	emit("\tVMULPS Y7, Y0, Y7")
	emit("\tVADDPS Y13, Y4, Y4")
	emit("\tVDIVPS Y4, Y7, Y7")
	emit("\tVMULPS (DX), Y7, Y7")
	emit("\tVMOVUPS Y7, (DI)")
	emit("\tADDQ $32, DI")
	emit("\tADDQ $32, DX")
	emit("\tSUBQ $8, CX")
	emit("\tJNZ silumulloop")
	emit("silumuldone:")
	emit("\tVZEROUPPER")
	emit("\tRET")
	emit("")
}

func main() {
	emit("// Code generated by tools/asmgen; DO NOT EDIT.")
	emit("")
	emit("//go:build amd64 && !purego")
	emit("")
	emit("#include \"textflag.h\"")
	emit("")
	for _, s := range isas {
		s.gemm()
		s.dot()
		s.sum()
		s.axpy()
		s.matvec()
		s.matvecBF16()
	}
	expSum()
	siluMul()
	os.Stdout.WriteString(out.String())
}
