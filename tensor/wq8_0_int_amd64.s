//go:build amd64 && !purego

#include "textflag.h"
#include "wdot_amd64.h"

// Hand-written: Q8_0's integer dot (wq8_0_int.go's dotQ8_0Q8) with AVX2. A block's
// 32 weight codes w and activation codes a: VPMADDUBSW multiplies |w| (unsigned)
// with a carrying w's sign (VPSIGNB), in int16 pairs, and VPMADDWD by ones adds them
// into 8 int32 lanes of 4 values each, exactly; the lanes are scaled by d·dₐ and
// added into the even or odd blocks' accumulator, which SUMY0 reduces in
// sumLanes16's order, so the result has dotQ8_0Q8's bits.

// One block: weights at off+2(SI), activations at off/34*32(DI), its scale at
// off/34*4(R11).
#define Q80IBLOCK(off, acc) \
	VMOVDQU      (off+2)(SI), Y1; \
	VMOVDQU      (off/34*32)(DI), Y2; \
	VPSIGNB      Y1, Y2, Y2; \
	VPABSB       Y1, Y1; \
	VPMADDUBSW   Y2, Y1, Y1; \
	VPMADDWD     Y15, Y1, Y1; \
	VCVTDQ2PS    Y1, Y1; \
	MOVWLZX      (off)(SI), AX; \
	VMOVD        AX, X3; \
	VCVTPH2PS    X3, X3; \
	VMULSS       (off/34*4)(R11), X3, X3; \
	VBROADCASTSS X3, Y3; \
	VMULPS       Y3, Y1, Y1; \
	VADDPS       Y1, acc, acc

// func dotQ8_0Q8AVX2(row *byte, qs *int8, d *float32, nb int) float32
TEXT ·dotQ8_0Q8AVX2(SB), NOSPLIT, $0-36
	MOVQ         row+0(FP), SI
	MOVQ         qs+8(FP), DI
	MOVQ         d+16(FP), R11
	MOVQ         nb+24(FP), CX
	VXORPS       Y0, Y0, Y0
	VXORPS       Y4, Y4, Y4
	MOVL         $0x00010001, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15
	CMPQ         CX, $2
	JLT          tail

pair:
	Q80IBLOCK(0, Y0)
	Q80IBLOCK(34, Y4)
	ADDQ $68, SI
	ADDQ $64, DI
	ADDQ $8, R11
	SUBQ $2, CX
	CMPQ CX, $2
	JGE  pair

tail:
	TESTQ CX, CX
	JZ    done
	Q80IBLOCK(0, Y0)

done:
	VADDPS Y4, Y0, Y0
	SUMY0
	MOVSS X0, ret+32(FP)
	RET
