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
	// The row a few blocks on, into L1, as dotQ4_KQ8VNNI does.
	PREFETCHT0 1024(SI)
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

// The same with AVX-512 VNNI: two blocks a zmm (the even block in lanes 0…7, the odd
// in 8…15, as dotQ8_0Q8's accumulators), the activations carrying the weights' signs
// by a masked negation, VPDPBUSD for the exact lanes of 4, and the two blocks' d·dₐ
// spread over their lanes by VPERMPS.

// func dotQ8_0Q8VNNI(row *byte, qs *int8, d *float32, nb int) float32
TEXT ·dotQ8_0Q8VNNI(SB), NOSPLIT, $0-36
	MOVQ      row+0(FP), SI
	MOVQ      qs+8(FP), DI
	MOVQ      d+16(FP), R11
	MOVQ      nb+24(FP), CX
	VPXORD    Z0, Z0, Z0
	VPXORD    Z15, Z15, Z15
	VPMOVZXBD pairIdx<>(SB), Z14
	MOVL      $0x00010001, AX
	VMOVD     AX, X13
	VPBROADCASTD X13, Y13
	CMPQ      CX, $2
	JLT       tail512

pair512:
	VMOVDQU      2(SI), Y1
	VINSERTI64X4 $1, 36(SI), Z1, Z1
	VMOVDQU64    (DI), Z2
	VPMOVB2M     Z1, K1
	VPABSB       Z1, Z1
	VPSUBB       Z2, Z15, K1, Z2
	VPXORD       Z3, Z3, Z3
	VPDPBUSD     Z2, Z1, Z3
	VCVTDQ2PS    Z3, Z3
	MOVWLZX      (SI), AX
	MOVWLZX      34(SI), BX
	SHLL         $16, BX
	ORL          BX, AX
	VMOVD        AX, X4
	VCVTPH2PS    X4, X4
	VMOVQ        (R11), X5
	VMULPS       X5, X4, X4
	VPERMPS      Z4, Z14, Z4
	VMULPS       Z4, Z3, Z3
	VADDPS       Z3, Z0, Z0
	ADDQ         $68, SI
	ADDQ         $64, DI
	ADDQ         $8, R11
	SUBQ         $2, CX
	CMPQ         CX, $2
	JGE          pair512

tail512:
	TESTQ CX, CX
	JZ    done512
	// One even block with the AVX2 steps into Y6; a VEX write clears Z6's upper lanes.
	VXORPS Y6, Y6, Y6
	VMOVDQU      2(SI), Y1
	VMOVDQU      (DI), Y2
	VPSIGNB      Y1, Y2, Y2
	VPABSB       Y1, Y1
	VPMADDUBSW   Y2, Y1, Y1
	VPMADDWD     Y13, Y1, Y1
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

// pairIdx spreads two floats over lanes 0…7 and 8…15 (VPERMPS indices, as bytes).
DATA pairIdx<>+0(SB)/8, $0
DATA pairIdx<>+8(SB)/8, $0x0101010101010101
GLOBL pairIdx<>(SB), RODATA|NOPTR, $16

// The VNNI dot of four rows at once, each rows+j·stride: each activation vector and
// pair of scales is loaded once for the four, and each row's sum takes
// dotQ8_0Q8VNNI's steps in its order (Z0, Z16, Z17, Z18), so its bits are that
// kernel's. The rows are four streams through memory at once, each prefetched.

// One row's pair of blocks at off(SI)(idx*1) into acc; Z2 the activations, X5 their
// two scales.
#define Q80R4PAIR(idx, acc) \
	VMOVDQU      2(SI)(idx*1), Y1; \
	VINSERTI64X4 $1, 36(SI)(idx*1), Z1, Z1; \
	VPMOVB2M     Z1, K1; \
	VPABSB       Z1, Z1; \
	VMOVDQA64    Z2, Z6; \
	VPSUBB       Z2, Z15, K1, Z6; \
	VPXORD       Z3, Z3, Z3; \
	VPDPBUSD     Z6, Z1, Z3; \
	VCVTDQ2PS    Z3, Z3; \
	MOVWLZX      (SI)(idx*1), AX; \
	MOVWLZX      34(SI)(idx*1), DX; \
	SHLL         $16, DX; \
	ORL          DX, AX; \
	VMOVD        AX, X4; \
	VCVTPH2PS    X4, X4; \
	VMULPS       X5, X4, X4; \
	VPERMPS      Z4, Z14, Z4; \
	VMULPS       Z4, Z3, Z3; \
	VADDPS       Z3, acc, acc

// One row's last (even) block into acc, as dotQ8_0Q8VNNI's tail.
#define Q80R4TAIL(idx, acc) \
	VXORPS       Y6, Y6, Y6; \
	VMOVDQU      2(SI)(idx*1), Y1; \
	VMOVDQU      (DI), Y2; \
	VPSIGNB      Y1, Y2, Y2; \
	VPABSB       Y1, Y1; \
	VPMADDUBSW   Y2, Y1, Y1; \
	VPMADDWD     Y13, Y1, Y1; \
	VCVTDQ2PS    Y1, Y1; \
	MOVWLZX      (SI)(idx*1), AX; \
	VMOVD        AX, X3; \
	VCVTPH2PS    X3, X3; \
	VMULSS       (R11), X3, X3; \
	VBROADCASTSS X3, Y3; \
	VMULPS       Y3, Y1, Y6; \
	VADDPS       Z6, acc, acc

// func dotQ8_0Q8Rows4VNNI(dst *float32, rows *byte, stride int, qs *int8, d *float32, nb int)
TEXT ·dotQ8_0Q8Rows4VNNI(SB), NOSPLIT, $0-48
	MOVQ      dst+0(FP), R8
	MOVQ      rows+8(FP), SI
	MOVQ      stride+16(FP), BX
	MOVQ      qs+24(FP), DI
	MOVQ      d+32(FP), R11
	MOVQ      nb+40(FP), CX
	XORQ      R12, R12
	LEAQ      (BX)(BX*1), R9
	LEAQ      (R9)(BX*1), R10
	VPXORD    Z0, Z0, Z0
	VPXORD    Z16, Z16, Z16
	VPXORD    Z17, Z17, Z17
	VPXORD    Z18, Z18, Z18
	VPXORD    Z15, Z15, Z15
	VPMOVZXBD pairIdx<>(SB), Z14
	MOVL      $0x00010001, AX
	VMOVD     AX, X13
	VPBROADCASTD X13, Y13
	CMPQ      CX, $2
	JLT       tail4

pair4:
	// Each stream 2 KB ahead: without it, rows of 2048 values read 0.76-0.95x one
	// row after another; with it 1.14x.
	PREFETCHT0 2048(SI)
	PREFETCHT0 2048(SI)(BX*1)
	PREFETCHT0 2048(SI)(R9*1)
	PREFETCHT0 2048(SI)(R10*1)
	VMOVDQU64 (DI), Z2
	VMOVQ     (R11), X5
	Q80R4PAIR(R12, Z0)
	Q80R4PAIR(BX, Z16)
	Q80R4PAIR(R9, Z17)
	Q80R4PAIR(R10, Z18)
	ADDQ      $68, SI
	ADDQ      $64, DI
	ADDQ      $8, R11
	SUBQ      $2, CX
	CMPQ      CX, $2
	JGE       pair4

tail4:
	TESTQ CX, CX
	JZ    done4
	Q80R4TAIL(R12, Z0)
	Q80R4TAIL(BX, Z16)
	Q80R4TAIL(R9, Z17)
	Q80R4TAIL(R10, Z18)

done4:
	SUMZ0
	MOVSS   X0, (R8)
	VMOVAPS Z16, Z0
	SUMZ0
	MOVSS   X0, 4(R8)
	VMOVAPS Z17, Z0
	SUMZ0
	MOVSS   X0, 8(R8)
	VMOVAPS Z18, Z0
	SUMZ0
	MOVSS   X0, 12(R8)
	RET
