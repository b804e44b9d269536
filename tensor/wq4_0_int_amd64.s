//go:build amd64 && !purego

#include "textflag.h"
#include "wdot_amd64.h"

// Hand-written: Q4_0's integer dot (wq4_0_int.go's dotQ4_0Q8) with AVX2: a block's
// 16 code bytes become 32 signed levels q−8 (low nibbles, then high nibbles), then
// as wq8_0_int_amd64.s: |q−8| times the activation codes carrying its sign, in
// exact int32 lanes of 4, scaled by d·dₐ into the even or odd blocks' accumulator.

#define Q40IBLOCK(off, acc) \
	VMOVDQU      (off+2)(SI), X1; \
	VPSRLW       $4, X1, X2; \
	VINSERTI128  $1, X2, Y1, Y1; \
	VPAND        Y14, Y1, Y1; \
	VPSUBB       Y13, Y1, Y1; \
	VMOVDQU      (off/18*32)(DI), Y2; \
	VPSIGNB      Y1, Y2, Y2; \
	VPABSB       Y1, Y1; \
	VPMADDUBSW   Y2, Y1, Y1; \
	VPMADDWD     Y15, Y1, Y1; \
	VCVTDQ2PS    Y1, Y1; \
	MOVWLZX      (off)(SI), AX; \
	VMOVD        AX, X3; \
	VCVTPH2PS    X3, X3; \
	VMULSS       (off/18*4)(R11), X3, X3; \
	VBROADCASTSS X3, Y3; \
	VMULPS       Y3, Y1, Y1; \
	VADDPS       Y1, acc, acc

// func dotQ4_0Q8AVX2(row *byte, qs *int8, d *float32, nb int) float32
TEXT ·dotQ4_0Q8AVX2(SB), NOSPLIT, $0-36
	MOVQ         row+0(FP), SI
	MOVQ         qs+8(FP), DI
	MOVQ         d+16(FP), R11
	MOVQ         nb+24(FP), CX
	VXORPS       Y0, Y0, Y0
	VXORPS       Y4, Y4, Y4
	MOVL         $0x00010001, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15
	MOVL         $0x0f0f0f0f, AX
	VMOVD        AX, X14
	VPBROADCASTD X14, Y14
	MOVL         $0x08080808, AX
	VMOVD        AX, X13
	VPBROADCASTD X13, Y13
	CMPQ         CX, $2
	JLT          tail

pair:
	Q40IBLOCK(0, Y0)
	Q40IBLOCK(18, Y4)
	ADDQ $36, SI
	ADDQ $64, DI
	ADDQ $8, R11
	SUBQ $2, CX
	CMPQ CX, $2
	JGE  pair

tail:
	TESTQ CX, CX
	JZ    done
	Q40IBLOCK(0, Y0)

done:
	VADDPS Y4, Y0, Y0
	SUMY0
	MOVSS X0, ret+32(FP)
	RET
