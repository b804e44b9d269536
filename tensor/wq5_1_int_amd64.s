//go:build amd64 && !purego

#include "textflag.h"
#include "wdot_amd64.h"

// Hand-written: Q5_1's integer dot (wq5_1_int.go's dotQ5_1Q8) with AVX2: the fifth
// bits become bytes 0xff where set as in wq5_0_int_amd64.s, their 0x10s ORed into
// the nibbles give the unsigned levels (0…31), and then as wq4_1_int_amd64.s:
// VPMADDUBSW and VPMADDWD into exact int32 lanes of 4, scaled by d·dₐ into the even
// or odd blocks' accumulator, the min's part as wdot_amd64.h's MINS2 says.

#define Q51IBLOCK(off, acc) \
	VPBROADCASTD (off+4)(SI), Y5; \
	VPSHUFB      Y12, Y5, Y5; \
	VPOR         Y11, Y5, Y5; \
	VPCMPEQB     Y10, Y5, Y5; \
	VPAND        Y9, Y5, Y5; \
	VMOVDQU      (off+8)(SI), X1; \
	VPSRLW       $4, X1, X2; \
	VINSERTI128  $1, X2, Y1, Y1; \
	VPAND        Y14, Y1, Y1; \
	VPOR         Y5, Y1, Y1; \
	VMOVDQU      (off/24*32)(DI), Y2; \
	VPMADDUBSW   Y2, Y1, Y1; \
	VPMADDWD     Y15, Y1, Y1; \
	VCVTDQ2PS    Y1, Y1; \
	MOVWLZX      (off)(SI), AX; \
	VMOVD        AX, X3; \
	VCVTPH2PS    X3, X3; \
	VMULSS       (off/24*4)(R11), X3, X3; \
	VBROADCASTSS X3, Y3; \
	VMULPS       Y3, Y1, Y1; \
	VADDPS       Y1, acc, acc

// func dotQ5_1Q8AVX2(row *byte, qs *int8, d *float32, sums *int16, nb int) float32
TEXT ·dotQ5_1Q8AVX2(SB), NOSPLIT, $0-44
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
	VMOVDQU      bitSpread51<>(SB), Y12
	VPBROADCASTQ bitOthers51<>(SB), Y11
	VPCMPEQB     Y10, Y10, Y10
	MOVL         $0x10101010, AX
	VMOVD        AX, X9
	VPBROADCASTD X9, Y9
	CMPQ         CX, $2
	JLT          tail

pair:
	// The row a few blocks on, into L1, as dotQ4_KQ8VNNI does.
	PREFETCHT0 1024(SI)
	Q51IBLOCK(0, Y0)
	Q51IBLOCK(24, Y4)
	MINS2(24)
	ADDQ $48, SI
	ADDQ $64, DI
	ADDQ $8, R11
	ADDQ $4, R12
	SUBQ $2, CX
	CMPQ CX, $2
	JGE  pair

tail:
	TESTQ CX, CX
	JZ    done
	Q51IBLOCK(0, Y0)
	MINS1

done:
	VADDPS Y4, Y0, Y0
	SUMY0
	MINSADD
	MOVSS X0, ret+40(FP)
	RET

// The same with AVX-512 VNNI, two blocks a zmm (lanes as dotQ5_1Q8's accumulators):
// the two blocks' qh are a byte mask that adds 16 to the nibbles where set, and
// VPDPBUSD multiplies the unsigned levels with the codes.

// func dotQ5_1Q8VNNI(row *byte, qs *int8, d *float32, sums *int16, nb int) float32
TEXT ·dotQ5_1Q8VNNI(SB), NOSPLIT, $0-44
	MOVQ         row+0(FP), SI
	MOVQ         qs+8(FP), DI
	MOVQ         d+16(FP), R11
	MOVQ         sums+24(FP), R12
	MOVQ         nb+32(FP), CX
	VPXORD       Z0, Z0, Z0
	VXORPS       X8, X8, X8
	VPMOVZXBD    pairIdx51<>(SB), Z14
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
	VMOVDQU      8(SI), X1
	VINSERTI128  $1, 32(SI), Y1, Y1
	VPSRLW       $4, Y1, Y2
	VINSERTI64X4 $1, Y2, Z1, Z1
	VSHUFI64X2   $0xd8, Z1, Z1, Z1
	VPANDD       Z13, Z1, Z1
	MOVL         4(SI), AX
	MOVL         28(SI), BX
	SHLQ         $32, BX
	ORQ          BX, AX
	KMOVQ        AX, K1
	VPADDB       Z12, Z1, K1, Z1
	VMOVDQU64    (DI), Z2
	VPXORD       Z3, Z3, Z3
	VPDPBUSD     Z2, Z1, Z3
	VCVTDQ2PS    Z3, Z3
	MOVWLZX      (SI), AX
	MOVWLZX      24(SI), BX
	SHLL         $16, BX
	ORL          BX, AX
	VMOVD        AX, X4
	VCVTPH2PS    X4, X4
	VMOVQ        (R11), X5
	VMULPS       X5, X4, X4
	VPERMPS      Z4, Z14, Z4
	VMULPS       Z4, Z3, Z3
	VADDPS       Z3, Z0, Z0
	MINS2(24)
	ADDQ         $48, SI
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
	VMOVDQU      8(SI), X1
	VPSRLW       $4, X1, X2
	VINSERTI128  $1, X2, Y1, Y1
	VPAND        Y13, Y1, Y1
	MOVL         4(SI), AX
	KMOVD        AX, K1
	VPADDB       Y12, Y1, K1, Y1
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

DATA pairIdx51<>+0(SB)/8, $0
DATA pairIdx51<>+8(SB)/8, $0x0101010101010101
GLOBL pairIdx51<>(SB), RODATA|NOPTR, $16

// bitSpread51 and bitOthers51 are wq5_0_int_amd64.s's bitSpread and bitOthers.
DATA bitSpread51<>+0(SB)/8, $0x0000000000000000
DATA bitSpread51<>+8(SB)/8, $0x0101010101010101
DATA bitSpread51<>+16(SB)/8, $0x0202020202020202
DATA bitSpread51<>+24(SB)/8, $0x0303030303030303
GLOBL bitSpread51<>(SB), RODATA|NOPTR, $32

DATA bitOthers51<>+0(SB)/8, $0x7fbfdfeff7fbfdfe
GLOBL bitOthers51<>(SB), RODATA|NOPTR, $8
