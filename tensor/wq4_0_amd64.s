//go:build amd64 && !purego

#include "textflag.h"
#include "wdot_amd64.h"

// Hand-written: Q4_0's dot on the blocks (wq4_0.go's DotQ4_0), as Q8_0's kernel
// (wq8_0_amd64.s): a block's 16 bytes give values 0-15 in their low nibbles and 16-31
// in their high ones; each 8 are zero-extended, masked or shifted, offset by −8,
// converted and multiplied with x, and the block's sum is scaled by d into the total.

// func dotQ4_0AVX2(row *byte, x *float32, nb int) float32
TEXT ·dotQ4_0AVX2(SB), NOSPLIT, $0-28
	MOVQ         row+0(FP), SI
	MOVQ         x+8(FP), DI
	MOVQ         nb+16(FP), CX
	VXORPS       Y0, Y0, Y0
	MOVL         $15, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15
	MOVL         $8, AX
	VMOVD        AX, X14
	VPBROADCASTD X14, Y14
	TESTQ        CX, CX
	JZ           done

loop:
	MOVWLZX      (SI), AX
	VMOVD        AX, X2
	VCVTPH2PS    X2, X2
	VBROADCASTSS X2, Y2
	VPMOVZXBD    2(SI), Y3
	VPMOVZXBD    10(SI), Y4
	VPSRLD       $4, Y3, Y5
	VPSRLD       $4, Y4, Y6
	VPAND        Y15, Y3, Y3
	VPAND        Y15, Y4, Y4
	VPSUBD       Y14, Y3, Y3
	VPSUBD       Y14, Y4, Y4
	VPSUBD       Y14, Y5, Y5
	VPSUBD       Y14, Y6, Y6
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
	ADDQ         $18, SI
	ADDQ         $128, DI
	DECQ         CX
	JNZ          loop

done:
	SUMY0
	MOVSS X0, ret+24(FP)
	RET
