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
	// The row a few blocks on, into L1, as dotQ4_KQ8VNNI does.
	PREFETCHT0 1024(SI)
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

// The same with AVX-512 VNNI, two blocks a zmm (lanes as dotQ4_0Q8's accumulators):
// the levels stay unsigned (0…15) for VPDPBUSD, and a second VPDPBUSD of 8s with the
// activations takes the offset off, exactly, before the scaling.

// func dotQ4_0Q8VNNI(row *byte, qs *int8, d *float32, nb int) float32
TEXT ·dotQ4_0Q8VNNI(SB), NOSPLIT, $0-36
	MOVQ         row+0(FP), SI
	MOVQ         qs+8(FP), DI
	MOVQ         d+16(FP), R11
	MOVQ         nb+24(FP), CX
	VPXORD       Z0, Z0, Z0
	VPMOVZXBD    pairIdx4<>(SB), Z14
	MOVL         $0x00010001, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15
	MOVL         $0x0f0f0f0f, AX
	VMOVD        AX, X13
	VPBROADCASTD X13, Z13
	MOVL         $0x08080808, AX
	VMOVD        AX, X12
	VPBROADCASTD X12, Z12
	CMPQ         CX, $2
	JLT          tail512

pair512:
	// The row a few blocks on, into L1, as dotQ4_KQ8VNNI does.
	PREFETCHT0   1024(SI)
	VMOVDQU      2(SI), X1
	VINSERTI128  $1, 20(SI), Y1, Y1
	VPSRLW       $4, Y1, Y2
	VINSERTI64X4 $1, Y2, Z1, Z1
	VSHUFI64X2   $0xd8, Z1, Z1, Z1
	VPANDD       Z13, Z1, Z1
	VMOVDQU64    (DI), Z2
	VPXORD       Z3, Z3, Z3
	VPXORD       Z5, Z5, Z5
	VPDPBUSD     Z2, Z1, Z3
	VPDPBUSD     Z2, Z12, Z5
	VPSUBD       Z5, Z3, Z3
	VCVTDQ2PS    Z3, Z3
	MOVWLZX      (SI), AX
	MOVWLZX      18(SI), BX
	SHLL         $16, BX
	ORL          BX, AX
	VMOVD        AX, X4
	VCVTPH2PS    X4, X4
	VMOVQ        (R11), X5
	VMULPS       X5, X4, X4
	VPERMPS      Z4, Z14, Z4
	VMULPS       Z4, Z3, Z3
	VADDPS       Z3, Z0, Z0
	ADDQ         $36, SI
	ADDQ         $64, DI
	ADDQ         $8, R11
	SUBQ         $2, CX
	CMPQ         CX, $2
	JGE          pair512

tail512:
	TESTQ CX, CX
	JZ    done512
	// One even block with the AVX2 steps into Y6; a VEX write clears Z6's upper lanes.
	VMOVDQU      2(SI), X1
	VPSRLW       $4, X1, X2
	VINSERTI128  $1, X2, Y1, Y1
	VPAND        Y13, Y1, Y1
	VPSUBB       Y12, Y1, Y1
	VMOVDQU      (DI), Y2
	VPSIGNB      Y1, Y2, Y2
	VPABSB       Y1, Y1
	VPMADDUBSW   Y2, Y1, Y1
	VPMADDWD     Y15, Y1, Y1
	VCVTDQ2PS    Y1, Y1
	MOVWLZX      (SI), AX
	VMOVD        AX, X3
	VCVTPH2PS    X3, X3
	VMULSS       (R11), X3, X3
	VBROADCASTSS X3, Y3
	VMULPS       Y3, Y1, Y6
	VADDPS       Z6, Z0, Z0

done512:
	SUMZ0
	MOVSS X0, ret+32(FP)
	RET

DATA pairIdx4<>+0(SB)/8, $0
DATA pairIdx4<>+8(SB)/8, $0x0101010101010101
GLOBL pairIdx4<>(SB), RODATA|NOPTR, $16
