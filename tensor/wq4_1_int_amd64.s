//go:build amd64 && !purego

#include "textflag.h"
#include "wdot_amd64.h"

// Hand-written: Q4_1's integer dot (wq4_1_int.go's dotQ4_1Q8) with AVX2: a block's
// 16 code bytes become 32 unsigned levels (low nibbles, then high nibbles), which
// VPMADDUBSW multiplies with the activation codes in int16 pairs and VPMADDWD by
// ones adds into exact int32 lanes of 4, scaled by d·dₐ into the even or odd
// blocks' accumulator; the min's part as wdot_amd64.h's MINS2 says.

#define Q41IBLOCK(off, acc) \
	VMOVDQU      (off+4)(SI), X1; \
	VPSRLW       $4, X1, X2; \
	VINSERTI128  $1, X2, Y1, Y1; \
	VPAND        Y14, Y1, Y1; \
	VMOVDQU      (off/20*32)(DI), Y2; \
	VPMADDUBSW   Y2, Y1, Y1; \
	VPMADDWD     Y15, Y1, Y1; \
	VCVTDQ2PS    Y1, Y1; \
	MOVWLZX      (off)(SI), AX; \
	VMOVD        AX, X3; \
	VCVTPH2PS    X3, X3; \
	VMULSS       (off/20*4)(R11), X3, X3; \
	VBROADCASTSS X3, Y3; \
	VMULPS       Y3, Y1, Y1; \
	VADDPS       Y1, acc, acc

// func dotQ4_1Q8AVX2(row *byte, qs *int8, d *float32, sums *int16, nb int) float32
TEXT ·dotQ4_1Q8AVX2(SB), NOSPLIT, $0-44
	MOVQ         row+0(FP), SI
	MOVQ         qs+8(FP), DI
	MOVQ         d+16(FP), R11
	MOVQ         sums+24(FP), R12
	MOVQ         nb+32(FP), CX
	VXORPS       Y0, Y0, Y0
	VXORPS       Y4, Y4, Y4
	VXORPS       X8, X8, X8
	MOVL         $0x00010001, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15
	MOVL         $0x0f0f0f0f, AX
	VMOVD        AX, X14
	VPBROADCASTD X14, Y14
	CMPQ         CX, $2
	JLT          tail

pair:
	// The row a few blocks on, into L1, as dotQ4_KQ8VNNI does.
	PREFETCHT0 1024(SI)
	Q41IBLOCK(0, Y0)
	Q41IBLOCK(20, Y4)
	MINS2(20)
	ADDQ $40, SI
	ADDQ $64, DI
	ADDQ $8, R11
	ADDQ $4, R12
	SUBQ $2, CX
	CMPQ CX, $2
	JGE  pair

tail:
	TESTQ CX, CX
	JZ    done
	Q41IBLOCK(0, Y0)
	MINS1

done:
	VADDPS Y4, Y0, Y0
	SUMY0
	MINSADD
	MOVSS X0, ret+40(FP)
	RET

// The same with AVX-512 VNNI, two blocks a zmm (lanes as dotQ4_1Q8's accumulators),
// the unsigned levels times the codes by VPDPBUSD.

// func dotQ4_1Q8VNNI(row *byte, qs *int8, d *float32, sums *int16, nb int) float32
TEXT ·dotQ4_1Q8VNNI(SB), NOSPLIT, $0-44
	MOVQ         row+0(FP), SI
	MOVQ         qs+8(FP), DI
	MOVQ         d+16(FP), R11
	MOVQ         sums+24(FP), R12
	MOVQ         nb+32(FP), CX
	VPXORD       Z0, Z0, Z0
	VXORPS       X8, X8, X8
	VPMOVZXBD    pairIdx41<>(SB), Z14
	MOVL         $0x0f0f0f0f, AX
	VMOVD        AX, X13
	VPBROADCASTD X13, Z13
	CMPQ         CX, $2
	JLT          tail512

pair512:
	// The row a few blocks on, into L1, as dotQ4_KQ8VNNI does.
	PREFETCHT0   1024(SI)
	VMOVDQU      4(SI), X1
	VINSERTI128  $1, 24(SI), Y1, Y1
	VPSRLW       $4, Y1, Y2
	VINSERTI64X4 $1, Y2, Z1, Z1
	VSHUFI64X2   $0xd8, Z1, Z1, Z1
	VPANDD       Z13, Z1, Z1
	VMOVDQU64    (DI), Z2
	VPXORD       Z3, Z3, Z3
	VPDPBUSD     Z2, Z1, Z3
	VCVTDQ2PS    Z3, Z3
	MOVWLZX      (SI), AX
	MOVWLZX      20(SI), BX
	SHLL         $16, BX
	ORL          BX, AX
	VMOVD        AX, X4
	VCVTPH2PS    X4, X4
	VMOVQ        (R11), X5
	VMULPS       X5, X4, X4
	VPERMPS      Z4, Z14, Z4
	VMULPS       Z4, Z3, Z3
	VADDPS       Z3, Z0, Z0
	MINS2(20)
	ADDQ         $40, SI
	ADDQ         $64, DI
	ADDQ         $8, R11
	ADDQ         $4, R12
	SUBQ         $2, CX
	CMPQ         CX, $2
	JGE          pair512

tail512:
	TESTQ CX, CX
	JZ    done512
	// One even block in ymm registers; their writes clear the zmms' upper lanes.
	VMOVDQU      4(SI), X1
	VPSRLW       $4, X1, X2
	VINSERTI128  $1, X2, Y1, Y1
	VPAND        Y13, Y1, Y1
	VMOVDQU      (DI), Y2
	VPXORD       Y3, Y3, Y3
	VPDPBUSD     Y2, Y1, Y3
	VCVTDQ2PS    Y3, Y3
	MOVWLZX      (SI), AX
	VMOVD        AX, X4
	VCVTPH2PS    X4, X4
	VMULSS       (R11), X4, X4
	VBROADCASTSS X4, Y4
	VMULPS       Y4, Y3, Y6
	VADDPS       Z6, Z0, Z0
	MINS1

done512:
	SUMZ0
	MINSADD
	MOVSS X0, ret+40(FP)
	RET

DATA pairIdx41<>+0(SB)/8, $0
DATA pairIdx41<>+8(SB)/8, $0x0101010101010101
GLOBL pairIdx41<>(SB), RODATA|NOPTR, $16
