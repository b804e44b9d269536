//go:build amd64 && !purego

#include "textflag.h"
#include "wdot_amd64.h"

// Hand-written: Q8_0's dot on the blocks (wq8_0.go's DotQ8_0). A block is a half-
// precision scale d and 32 int8 codes; its 32 codes are widened to float32 in four
// ymm, multiplied with x, summed into one ymm, and scaled by d into the total, so a
// block costs about fifteen instructions and the 34 bytes are read once.

// func dotQ8_0AVX2(row *byte, x *float32, nb int) float32
TEXT ·dotQ8_0AVX2(SB), NOSPLIT, $0-28
	MOVQ   row+0(FP), SI
	MOVQ   x+8(FP), DI
	MOVQ   nb+16(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	TESTQ  CX, CX
	JZ     done

loop:
	MOVWLZX      (SI), AX
	VMOVD        AX, X2
	VCVTPH2PS    X2, X2
	VBROADCASTSS X2, Y2
	VPMOVSXBD    2(SI), Y3
	VPMOVSXBD    10(SI), Y4
	VPMOVSXBD    18(SI), Y5
	VPMOVSXBD    26(SI), Y6
	VCVTDQ2PS    Y3, Y3
	VCVTDQ2PS    Y4, Y4
	VCVTDQ2PS    Y5, Y5
	VCVTDQ2PS    Y6, Y6
	VMULPS       (DI), Y3, Y3
	VMULPS       32(DI), Y4, Y4
	VFMADD231PS  64(DI), Y5, Y3
	VFMADD231PS  96(DI), Y6, Y4
	VADDPS       Y4, Y3, Y3
	VFMADD231PS  Y3, Y2, Y0
	ADDQ         $34, SI
	ADDQ         $128, DI
	DECQ         CX
	JNZ          loop

done:
	SUMY0
	MOVSS X0, ret+24(FP)
	RET

// The same with AVX-512: a block's 32 codes are two zmm, and two blocks go into two
// accumulators a trip, so the scale FMAs of neighbouring blocks do not wait on each other.
#define Q8BLOCK512(off, acc) \
	VPBROADCASTW (off)(SI), Y2; \
	VCVTPH2PS    Y2, Z2; \
	VPMOVSXBD    (off+2)(SI), Z3; \
	VPMOVSXBD    (off+18)(SI), Z4; \
	VCVTDQ2PS    Z3, Z3; \
	VCVTDQ2PS    Z4, Z4; \
	VMULPS       (2*off/34*64)(DI), Z3, Z3; \
	VFMADD231PS  (2*off/34*64+64)(DI), Z4, Z3; \
	VFMADD231PS  Z3, Z2, acc

// func dotQ8_0AVX512(row *byte, x *float32, nb int) float32
TEXT ·dotQ8_0AVX512(SB), NOSPLIT, $0-28
	MOVQ   row+0(FP), SI
	MOVQ   x+8(FP), DI
	MOVQ   nb+16(FP), CX
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	CMPQ   CX, $2
	JLT    tail512

pair512:
	Q8BLOCK512(0, Z0)
	Q8BLOCK512(34, Z1)
	ADDQ $68, SI
	ADDQ $256, DI
	SUBQ $2, CX
	CMPQ CX, $2
	JGE  pair512

tail512:
	TESTQ CX, CX
	JZ    done512
	Q8BLOCK512(0, Z0)

done512:
	VADDPS        Z1, Z0, Z0
	SUMZ0
	MOVSS X0, ret+24(FP)
	RET
