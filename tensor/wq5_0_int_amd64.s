//go:build amd64 && !purego

#include "textflag.h"
#include "wdot_amd64.h"

// Hand-written: Q5_0's integer dot (wq5_0_int.go's dotQ5_0Q8) with AVX2. A block's
// 32 fifth bits (qh) become bytes, 0xff where set (spread by VPSHUFB, each byte
// ORed with all bits but its own, compared with all ones); the nibbles, ORed with
// 0xf0 where the bit is clear, are the signed levels q−16. Then as
// wq8_0_int_amd64.s: |q−16| times the activation codes carrying its sign, in exact
// int32 lanes of 4, scaled by d·dₐ into the even or odd blocks' accumulator.

#define Q50IBLOCK(off, acc) \
	VPBROADCASTD (off+2)(SI), Y5; \
	VPSHUFB      Y12, Y5, Y5; \
	VPOR         Y11, Y5, Y5; \
	VPCMPEQB     Y10, Y5, Y5; \
	VPANDN       Y9, Y5, Y5; \
	VMOVDQU      (off+6)(SI), X1; \
	VPSRLW       $4, X1, X2; \
	VINSERTI128  $1, X2, Y1, Y1; \
	VPAND        Y14, Y1, Y1; \
	VPOR         Y5, Y1, Y1; \
	VMOVDQU      (off/22*32)(DI), Y2; \
	VPSIGNB      Y1, Y2, Y2; \
	VPABSB       Y1, Y1; \
	VPMADDUBSW   Y2, Y1, Y1; \
	VPMADDWD     Y15, Y1, Y1; \
	VCVTDQ2PS    Y1, Y1; \
	MOVWLZX      (off)(SI), AX; \
	VMOVD        AX, X3; \
	VCVTPH2PS    X3, X3; \
	VMULSS       (off/22*4)(R11), X3, X3; \
	VBROADCASTSS X3, Y3; \
	VMULPS       Y3, Y1, Y1; \
	VADDPS       Y1, acc, acc

// func dotQ5_0Q8AVX2(row *byte, qs *int8, d *float32, nb int) float32
TEXT ·dotQ5_0Q8AVX2(SB), NOSPLIT, $0-36
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
	VMOVDQU      bitSpread<>(SB), Y12
	VPBROADCASTQ bitOthers<>(SB), Y11
	VPCMPEQB     Y10, Y10, Y10
	MOVL         $0xf0f0f0f0, AX
	VMOVD        AX, X9
	VPBROADCASTD X9, Y9
	CMPQ         CX, $2
	JLT          tail

pair:
	// The row a few blocks on, into L1, as dotQ4_KQ8VNNI does.
	PREFETCHT0 1024(SI)
	Q50IBLOCK(0, Y0)
	Q50IBLOCK(22, Y4)
	ADDQ $44, SI
	ADDQ $64, DI
	ADDQ $8, R11
	SUBQ $2, CX
	CMPQ CX, $2
	JGE  pair

tail:
	TESTQ CX, CX
	JZ    done
	Q50IBLOCK(0, Y0)

done:
	VADDPS Y4, Y0, Y0
	SUMY0
	MOVSS X0, ret+32(FP)
	RET

// The same with AVX-512 VNNI, two blocks a zmm (lanes as dotQ5_0Q8's accumulators):
// the two blocks' qh are a byte mask that adds 16 to the nibbles where set, the
// levels stay unsigned (0…31) for VPDPBUSD, and a second VPDPBUSD of 16s with the
// activations takes the offset off, exactly, before the scaling.

// func dotQ5_0Q8VNNI(row *byte, qs *int8, d *float32, nb int) float32
TEXT ·dotQ5_0Q8VNNI(SB), NOSPLIT, $0-36
	MOVQ         row+0(FP), SI
	MOVQ         qs+8(FP), DI
	MOVQ         d+16(FP), R11
	MOVQ         nb+24(FP), CX
	VPXORD       Z0, Z0, Z0
	VPMOVZXBD    pairIdx5<>(SB), Z14
	MOVL         $0x0f0f0f0f, AX
	VMOVD        AX, X13
	VPBROADCASTD X13, Z13
	MOVL         $0x10101010, AX
	VMOVD        AX, X12
	VPBROADCASTD X12, Z12
	CMPQ         CX, $2
	JLT          tail512

pair512:
	// The row a few blocks on, into L1, as dotQ4_KQ8VNNI does.
	PREFETCHT0   1024(SI)
	VMOVDQU      6(SI), X1
	VINSERTI128  $1, 28(SI), Y1, Y1
	VPSRLW       $4, Y1, Y2
	VINSERTI64X4 $1, Y2, Z1, Z1
	VSHUFI64X2   $0xd8, Z1, Z1, Z1
	VPANDD       Z13, Z1, Z1
	MOVL         2(SI), AX
	MOVL         24(SI), BX
	SHLQ         $32, BX
	ORQ          BX, AX
	KMOVQ        AX, K1
	VPADDB       Z12, Z1, K1, Z1
	VMOVDQU64    (DI), Z2
	VPXORD       Z3, Z3, Z3
	VPXORD       Z5, Z5, Z5
	VPDPBUSD     Z2, Z1, Z3
	VPDPBUSD     Z2, Z12, Z5
	VPSUBD       Z5, Z3, Z3
	VCVTDQ2PS    Z3, Z3
	MOVWLZX      (SI), AX
	MOVWLZX      22(SI), BX
	SHLL         $16, BX
	ORL          BX, AX
	VMOVD        AX, X4
	VCVTPH2PS    X4, X4
	VMOVQ        (R11), X5
	VMULPS       X5, X4, X4
	VPERMPS      Z4, Z14, Z4
	VMULPS       Z4, Z3, Z3
	VADDPS       Z3, Z0, Z0
	ADDQ         $44, SI
	ADDQ         $64, DI
	ADDQ         $8, R11
	SUBQ         $2, CX
	CMPQ         CX, $2
	JGE          pair512

tail512:
	TESTQ CX, CX
	JZ    done512
	// One even block in ymm registers; their writes clear the zmms' upper lanes.
	VMOVDQU      6(SI), X1
	VPSRLW       $4, X1, X2
	VINSERTI128  $1, X2, Y1, Y1
	VPAND        Y13, Y1, Y1
	MOVL         2(SI), AX
	KMOVD        AX, K1
	VPADDB       Y12, Y1, K1, Y1
	VMOVDQU      (DI), Y2
	VPXORD       Y3, Y3, Y3
	VPXORD       Y5, Y5, Y5
	VPDPBUSD     Y2, Y1, Y3
	VPDPBUSD     Y2, Y12, Y5
	VPSUBD       Y5, Y3, Y3
	VCVTDQ2PS    Y3, Y3
	MOVWLZX      (SI), AX
	VMOVD        AX, X4
	VCVTPH2PS    X4, X4
	VMULSS       (R11), X4, X4
	VBROADCASTSS X4, Y4
	VMULPS       Y4, Y3, Y6
	VADDPS       Z6, Z0, Z0

done512:
	SUMZ0
	MOVSS X0, ret+32(FP)
	RET

DATA pairIdx5<>+0(SB)/8, $0
DATA pairIdx5<>+8(SB)/8, $0x0101010101010101
GLOBL pairIdx5<>(SB), RODATA|NOPTR, $16

// bitSpread copies qh's byte j/8 to byte j (VPSHUFB works within 128-bit halves:
// the low half takes bytes 0 and 1, the high half bytes 2 and 3).
DATA bitSpread<>+0(SB)/8, $0x0000000000000000
DATA bitSpread<>+8(SB)/8, $0x0101010101010101
DATA bitSpread<>+16(SB)/8, $0x0202020202020202
DATA bitSpread<>+24(SB)/8, $0x0303030303030303
GLOBL bitSpread<>(SB), RODATA|NOPTR, $32

// bitOthers: byte j has every bit set but bit j%8.
DATA bitOthers<>+0(SB)/8, $0x7fbfdfeff7fbfdfe
GLOBL bitOthers<>(SB), RODATA|NOPTR, $8
