//go:build amd64 && !purego

#include "textflag.h"
#include "wdot_amd64.h"

// Hand-written: F16's dot (wf16.go's DotF16). VCVTPH2PS widens eight (ymm) or
// sixteen (zmm) half-precision values exactly, straight from memory; four
// accumulators keep the FMAs of a trip independent, so the loop runs at the speed
// the row's bytes arrive. n is a multiple of 8 (AVX2) or 16 (AVX-512).

// func dotF16AVX2(row *byte, x *float32, n int) float32
TEXT ·dotF16AVX2(SB), NOSPLIT, $0-28
	MOVQ   row+0(FP), SI
	MOVQ   x+8(FP), DI
	MOVQ   n+16(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	CMPQ   CX, $32
	JLT    eights

loop32:
	VCVTPH2PS   (SI), Y4
	VCVTPH2PS   16(SI), Y5
	VCVTPH2PS   32(SI), Y6
	VCVTPH2PS   48(SI), Y7
	VFMADD231PS (DI), Y4, Y0
	VFMADD231PS 32(DI), Y5, Y1
	VFMADD231PS 64(DI), Y6, Y2
	VFMADD231PS 96(DI), Y7, Y3
	ADDQ        $64, SI
	ADDQ        $128, DI
	SUBQ        $32, CX
	CMPQ        CX, $32
	JGE         loop32

eights:
	TESTQ CX, CX
	JZ    done

loop8:
	VCVTPH2PS   (SI), Y4
	VFMADD231PS (DI), Y4, Y0
	ADDQ        $16, SI
	ADDQ        $32, DI
	SUBQ        $8, CX
	JNZ         loop8

done:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	SUMY0
	MOVSS  X0, ret+24(FP)
	RET

// func dotF16AVX512(row *byte, x *float32, n int) float32
TEXT ·dotF16AVX512(SB), NOSPLIT, $0-28
	MOVQ   row+0(FP), SI
	MOVQ   x+8(FP), DI
	MOVQ   n+16(FP), CX
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	CMPQ   CX, $64
	JLT    sixteens

loop64:
	VCVTPH2PS   (SI), Z4
	VCVTPH2PS   32(SI), Z5
	VCVTPH2PS   64(SI), Z6
	VCVTPH2PS   96(SI), Z7
	VFMADD231PS (DI), Z4, Z0
	VFMADD231PS 64(DI), Z5, Z1
	VFMADD231PS 128(DI), Z6, Z2
	VFMADD231PS 192(DI), Z7, Z3
	ADDQ        $128, SI
	ADDQ        $256, DI
	SUBQ        $64, CX
	CMPQ        CX, $64
	JGE         loop64

sixteens:
	TESTQ CX, CX
	JZ    done512

loop16:
	VCVTPH2PS   (SI), Z4
	VFMADD231PS (DI), Z4, Z0
	ADDQ        $32, SI
	ADDQ        $64, DI
	SUBQ        $16, CX
	JNZ         loop16

done512:
	VADDPS Z1, Z0, Z0
	VADDPS Z3, Z2, Z2
	VADDPS Z2, Z0, Z0
	SUMZ0
	MOVSS  X0, ret+24(FP)
	RET

// func dequantF16AVX2(dst *float32, src *byte, n int)
// n is a multiple of 8: eight values widened and stored a step.
TEXT ·dequantF16AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	TESTQ CX, CX
	JZ    dqdone

dqloop:
	VCVTPH2PS (SI), Y0
	VMOVUPS   Y0, (DI)
	ADDQ      $16, SI
	ADDQ      $32, DI
	SUBQ      $8, CX
	JNZ       dqloop

dqdone:
	VZEROUPPER
	RET

// func dequantF16AVX512(dst *float32, src *byte, n int)
// n is a multiple of 16.
TEXT ·dequantF16AVX512(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	TESTQ CX, CX
	JZ    dqdone512

dqloop512:
	VCVTPH2PS (SI), Z0
	VMOVUPS   Z0, (DI)
	ADDQ      $32, SI
	ADDQ      $64, DI
	SUBQ      $16, CX
	JNZ       dqloop512

dqdone512:
	VZEROUPPER
	RET

// The accumulators a…d of a row into one float at off(DX), summed in the order
// dotF16AVX512 sums its own four (so that a row's dot has the same bits either way);
// ya, xa and yb, xb name the lower halves of a and b (VHADDPS has no EVEX form, so
// the sum stays in the low sixteen registers).
#define SUM4(a, b, c, d, ya, xa, yb, xb, off) \
	VADDPS        b, a, a; \
	VADDPS        d, c, c; \
	VADDPS        c, a, a; \
	VEXTRACTF32X8 $1, a, yb; \
	VADDPS        yb, ya, ya; \
	VEXTRACTF128  $1, ya, xb; \
	VADDPS        xb, xa, xa; \
	VHADDPS       xa, xa, xa; \
	VHADDPS       xa, xa, xa; \
	VMOVSS        xa, off(DX)

// One row's step of 64 values at (r) against Z16…Z19 (x), into a…d.
#define ROW64(r, a, b, c, d) \
	VCVTPH2PS   (r), Z20; \
	VCVTPH2PS   32(r), Z21; \
	VCVTPH2PS   64(r), Z22; \
	VCVTPH2PS   96(r), Z23; \
	VFMADD231PS Z16, Z20, a; \
	VFMADD231PS Z17, Z21, b; \
	VFMADD231PS Z18, Z22, c; \
	VFMADD231PS Z19, Z23, d

// func dotF16Rows4AVX512(dst *float32, rows *byte, stride int, x *float32, n int)
// dst[0..3] = the dots of the four rows at rows, rows+stride, rows+2·stride and
// rows+3·stride with x, n (a multiple of 16) values each. Each x vector is loaded
// once for the four rows, and the four rows are four streams from memory at once.
TEXT ·dotF16Rows4AVX512(SB), NOSPLIT, $0-40
	MOVQ   dst+0(FP), DX
	MOVQ   rows+8(FP), SI
	MOVQ   stride+16(FP), R8
	MOVQ   x+24(FP), DI
	MOVQ   n+32(FP), CX
	LEAQ   (SI)(R8*1), R9
	LEAQ   (R9)(R8*1), R10
	LEAQ   (R10)(R8*1), R11
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15
	CMPQ   CX, $64
	JLT    r4sixteens

r4loop64:
	VMOVUPS (DI), Z16
	VMOVUPS 64(DI), Z17
	VMOVUPS 128(DI), Z18
	VMOVUPS 192(DI), Z19
	ROW64(SI, Z0, Z1, Z2, Z3)
	ROW64(R9, Z4, Z5, Z6, Z7)
	ROW64(R10, Z8, Z9, Z10, Z11)
	ROW64(R11, Z12, Z13, Z14, Z15)
	ADDQ    $128, SI
	ADDQ    $128, R9
	ADDQ    $128, R10
	ADDQ    $128, R11
	ADDQ    $256, DI
	SUBQ    $64, CX
	CMPQ    CX, $64
	JGE     r4loop64

r4sixteens:
	TESTQ CX, CX
	JZ    r4done

r4loop16:
	VMOVUPS     (DI), Z16
	VCVTPH2PS   (SI), Z20
	VCVTPH2PS   (R9), Z21
	VCVTPH2PS   (R10), Z22
	VCVTPH2PS   (R11), Z23
	VFMADD231PS Z16, Z20, Z0
	VFMADD231PS Z16, Z21, Z4
	VFMADD231PS Z16, Z22, Z8
	VFMADD231PS Z16, Z23, Z12
	ADDQ        $32, SI
	ADDQ        $32, R9
	ADDQ        $32, R10
	ADDQ        $32, R11
	ADDQ        $64, DI
	SUBQ        $16, CX
	JNZ         r4loop16

r4done:
	SUM4(Z0, Z1, Z2, Z3, Y0, X0, Y1, X1, 0)
	SUM4(Z4, Z5, Z6, Z7, Y4, X4, Y5, X5, 4)
	SUM4(Z8, Z9, Z10, Z11, Y8, X8, Y9, X9, 8)
	SUM4(Z12, Z13, Z14, Z15, Y12, X12, Y13, X13, 12)
	VZEROUPPER
	RET
