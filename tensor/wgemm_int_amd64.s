//go:build amd64 && !purego

#include "textflag.h"

// Hand-written: the integer pre-fill GEMM of wgemm_int.go with AVX-512 VNNI. A tile is
// 32 weight rows (two zmm of 16 rows, one int32 lane a row) by 6 activation rows. Per
// 4 values of k, VPDPBUSD multiplies the 4 unsigned weight codes of each of 16 rows
// (the repacked panel) by the 4 signed activation codes of one row, broadcast, and
// adds them into that row pair's int32 lane, exactly. At the end of each 32-value
// group the lanes are converted to float32 and added, times the weight row's scale
// times the activation row's, into the float32 accumulators.
//
// Registers: Z0…Z5 the int32 sums of weight rows 0…15 against activation rows 0…5,
// Z6…Z11 of rows 16…31; Z12…Z17 and Z18…Z23 the float32 sums likewise; Z24, Z25 the
// weight codes; Z26, Z27 the weight scales; Z28, Z29 scratch.
// SI: activation rows 0…2 (row c at SI + c·BX), DI: rows 3…5; R8: the group's
// metadata (6 int32 starting sums, then 6 float32 scales); R9: the panel's codes;
// R10: its scales; CX: groups left.

// STEP(s): values 4s…4s+3 of the group.
#define STEP(s) \
	VMOVDQU32     (s*128)(R9), Z24; \
	VMOVDQU32     (s*128+64)(R9), Z25; \
	VPDPBUSD.BCST (s*4)(SI), Z24, Z0; \
	VPDPBUSD.BCST (s*4)(SI), Z25, Z6; \
	VPDPBUSD.BCST (s*4)(SI)(BX*1), Z24, Z1; \
	VPDPBUSD.BCST (s*4)(SI)(BX*1), Z25, Z7; \
	VPDPBUSD.BCST (s*4)(SI)(BX*2), Z24, Z2; \
	VPDPBUSD.BCST (s*4)(SI)(BX*2), Z25, Z8; \
	VPDPBUSD.BCST (s*4)(DI), Z24, Z3; \
	VPDPBUSD.BCST (s*4)(DI), Z25, Z9; \
	VPDPBUSD.BCST (s*4)(DI)(BX*1), Z24, Z4; \
	VPDPBUSD.BCST (s*4)(DI)(BX*1), Z25, Z10; \
	VPDPBUSD.BCST (s*4)(DI)(BX*2), Z24, Z5; \
	VPDPBUSD.BCST (s*4)(DI)(BX*2), Z25, Z11

// START(c): activation row c's starting sum (the codes' offset times its code sum,
// negated) in both its int32 accumulators.
#define START(c, lo, hi) \
	VPBROADCASTD (c*4)(R8), lo; \
	VMOVDQA32    lo, hi

// SCALE(c): activation row c's sums of the group into its float32 accumulators.
#define SCALE(c, ilo, ihi, flo, fhi) \
	VMULPS.BCST (24+c*4)(R8), Z26, Z28; \
	VMULPS.BCST (24+c*4)(R8), Z27, Z29; \
	VCVTDQ2PS   ilo, ilo; \
	VCVTDQ2PS   ihi, ihi; \
	VFMADD231PS Z28, ilo, flo; \
	VFMADD231PS Z29, ihi, fhi

// func gemmQ8VNNI(a *int8, lda int, meta *uint32, codes *byte, scales *float32, groups int, dst *float32, ldc int)
TEXT ·gemmQ8VNNI(SB), NOSPLIT, $0-64
	MOVQ a+0(FP), SI
	MOVQ lda+8(FP), BX
	MOVQ meta+16(FP), R8
	MOVQ codes+24(FP), R9
	MOVQ scales+32(FP), R10
	MOVQ groups+40(FP), CX
	LEAQ (SI)(BX*2), DI
	ADDQ BX, DI
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15
	VPXORD Z16, Z16, Z16
	VPXORD Z17, Z17, Z17
	VPXORD Z18, Z18, Z18
	VPXORD Z19, Z19, Z19
	VPXORD Z20, Z20, Z20
	VPXORD Z21, Z21, Z21
	VPXORD Z22, Z22, Z22
	VPXORD Z23, Z23, Z23
	TESTQ CX, CX
	JZ    store

group:
	START(0, Z0, Z6)
	START(1, Z1, Z7)
	START(2, Z2, Z8)
	START(3, Z3, Z9)
	START(4, Z4, Z10)
	START(5, Z5, Z11)
	STEP(0)
	STEP(1)
	STEP(2)
	STEP(3)
	STEP(4)
	STEP(5)
	STEP(6)
	STEP(7)
	VMOVUPS (R10), Z26
	VMOVUPS 64(R10), Z27
	SCALE(0, Z0, Z6, Z12, Z18)
	SCALE(1, Z1, Z7, Z13, Z19)
	SCALE(2, Z2, Z8, Z14, Z20)
	SCALE(3, Z3, Z9, Z15, Z21)
	SCALE(4, Z4, Z10, Z16, Z22)
	SCALE(5, Z5, Z11, Z17, Z23)
	ADDQ $32, SI
	ADDQ $32, DI
	ADDQ $48, R8
	ADDQ $1024, R9
	ADDQ $128, R10
	DECQ CX
	JNZ  group

store:
	MOVQ    dst+48(FP), DX
	MOVQ    ldc+56(FP), R11
	SHLQ    $2, R11
	LEAQ    (DX)(R11*2), AX
	ADDQ    R11, AX
	VMOVUPS Z12, (DX)
	VMOVUPS Z18, 64(DX)
	VMOVUPS Z13, (DX)(R11*1)
	VMOVUPS Z19, 64(DX)(R11*1)
	VMOVUPS Z14, (DX)(R11*2)
	VMOVUPS Z20, 64(DX)(R11*2)
	VMOVUPS Z15, (AX)
	VMOVUPS Z21, 64(AX)
	VMOVUPS Z16, (AX)(R11*1)
	VMOVUPS Z22, 64(AX)(R11*1)
	VMOVUPS Z17, (AX)(R11*2)
	VMOVUPS Z23, 64(AX)(R11*2)
	VZEROUPPER
	RET

// Q8_0's panel: per block of 32 values, 8 steps of 32 rows' 4 codes (each a gathered
// dword, its bytes offset by 128 to unsigned), then the 32 rows' scales widened from
// half precision.

// GATHER(off, idx, dst): the dwords at SI+off+idx[r] for the 16 rows r.
#define GATHER(off, idx, dst) \
	KXNORW     K1, K1, K1; \
	VPGATHERDD off(SI)(idx*1), K1, dst

// CODES8(s): step s of the block at SI into the panel at DI.
#define CODES8(s) \
	GATHER(2+4*s, Z30, Z0); \
	GATHER(2+4*s, Z31, Z1); \
	VPXORD Z29, Z0, Z0; \
	VPXORD Z29, Z1, Z1; \
	VMOVDQU32 Z0, (s*128)(DI); \
	VMOVDQU32 Z1, (s*128+64)(DI)

// func repackQ8_0VNNI(src *byte, offs *int32, nb int, codes *byte, scales *float32)
TEXT ·repackQ8_0VNNI(SB), NOSPLIT, $0-40
	MOVQ      src+0(FP), SI
	MOVQ      offs+8(FP), AX
	MOVQ      nb+16(FP), CX
	MOVQ      codes+24(FP), DI
	MOVQ      scales+32(FP), R10
	VMOVDQU32 (AX), Z30
	VMOVDQU32 64(AX), Z31
	MOVL      $0x80808080, AX
	VPBROADCASTD AX, Z29
	TESTQ     CX, CX
	JZ        rdone

rblock:
	CODES8(0)
	CODES8(1)
	CODES8(2)
	CODES8(3)
	CODES8(4)
	CODES8(5)
	CODES8(6)
	CODES8(7)
	GATHER(0, Z30, Z0)
	GATHER(0, Z31, Z1)
	VPMOVDW   Z0, Y0
	VPMOVDW   Z1, Y1
	VCVTPH2PS Y0, Z0
	VCVTPH2PS Y1, Z1
	VMOVUPS   Z0, (R10)
	VMOVUPS   Z1, 64(R10)
	ADDQ      $34, SI
	ADDQ      $1024, DI
	ADDQ      $128, R10
	DECQ      CX
	JNZ       rblock

rdone:
	VZEROUPPER
	RET
