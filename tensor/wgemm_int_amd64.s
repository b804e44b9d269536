//go:build amd64 && !purego

#include "textflag.h"

// Hand-written: the integer pre-fill GEMM of wgemm_int.go with AVX-512 VNNI. A tile is
// 32 weight rows (two zmm of 16 rows, one int32 lane a row) by 6 activation rows. Per
// 4 values of k, VPDPBUSD multiplies the 4 unsigned weight codes of each of 16 rows
// (the repacked panel) by the 4 signed activation codes of one row, broadcast, and
// adds them into that row pair's int32 lane, exactly. At the end of each group (32
// values, or Q6_K's 16) the lanes are converted to float32 and added, times the weight
// row's scale times the activation row's, into the float32 accumulators, and for a
// format with a min (Q4_K) the weight row's min times the activation row's min term.
//
// Registers: Z0…Z5 the int32 sums of weight rows 0…15 against activation rows 0…5,
// Z6…Z11 of rows 16…31; Z12…Z17 and Z18…Z23 the float32 sums likewise; Z24, Z25 the
// weight codes; Z26, Z27 the weight scales; Z28, Z29 scratch; Z30, Z31 the weight mins.
// SI: activation rows 0…2 (row c at SI + c·BX), DI: rows 3…5; R8: the group's
// metadata (6 int32 starting sums, 6 float32 scales, for a min 6 float32 min terms);
// R9: the panel's codes; R10: its scales; R12: its mins; CX: groups left.

// STEP(s): values 4s…4s+3 of the group; each activation row's 4 codes are broadcast
// into a register (Z28, Z29) once for both weight halves.
#define STEP(s) \
	VMOVDQU32    (s*128)(R9), Z24; \
	VMOVDQU32    (s*128+64)(R9), Z25; \
	VPBROADCASTD (s*4)(SI), Z28; \
	VPDPBUSD     Z28, Z24, Z0; \
	VPDPBUSD     Z28, Z25, Z6; \
	VPBROADCASTD (s*4)(SI)(BX*1), Z29; \
	VPDPBUSD     Z29, Z24, Z1; \
	VPDPBUSD     Z29, Z25, Z7; \
	VPBROADCASTD (s*4)(SI)(BX*2), Z28; \
	VPDPBUSD     Z28, Z24, Z2; \
	VPDPBUSD     Z28, Z25, Z8; \
	VPBROADCASTD (s*4)(DI), Z29; \
	VPDPBUSD     Z29, Z24, Z3; \
	VPDPBUSD     Z29, Z25, Z9; \
	VPBROADCASTD (s*4)(DI)(BX*1), Z28; \
	VPDPBUSD     Z28, Z24, Z4; \
	VPDPBUSD     Z28, Z25, Z10; \
	VPBROADCASTD (s*4)(DI)(BX*2), Z29; \
	VPDPBUSD     Z29, Z24, Z5; \
	VPDPBUSD     Z29, Z25, Z11

// START(c): activation row c's starting sum (the codes' offset times its code sum,
// negated) in both its int32 accumulators.
#define START(c, lo, hi) \
	VPBROADCASTD (c*4)(R8), lo; \
	VMOVDQA32    lo, hi

// SCALE(c): activation row c's sums of the group into its float32 accumulators.
#define SCALE(c, ilo, ihi, flo, fhi, da) \
	VMULPS.BCST (da+c*4)(R8), Z26, Z28; \
	VMULPS.BCST (da+c*4)(R8), Z27, Z29; \
	VCVTDQ2PS   ilo, ilo; \
	VCVTDQ2PS   ihi, ihi; \
	VFMADD231PS Z28, ilo, flo; \
	VFMADD231PS Z29, ihi, fhi

// ZEROF clears the float32 sums.
#define ZEROF \
	VPXORD Z12, Z12, Z12; \
	VPXORD Z13, Z13, Z13; \
	VPXORD Z14, Z14, Z14; \
	VPXORD Z15, Z15, Z15; \
	VPXORD Z16, Z16, Z16; \
	VPXORD Z17, Z17, Z17; \
	VPXORD Z18, Z18, Z18; \
	VPXORD Z19, Z19, Z19; \
	VPXORD Z20, Z20, Z20; \
	VPXORD Z21, Z21, Z21; \
	VPXORD Z22, Z22, Z22; \
	VPXORD Z23, Z23, Z23

// ARGS loads the kernels' common arguments.
#define ARGS \
	MOVQ a+0(FP), SI; \
	MOVQ lda+8(FP), BX; \
	MOVQ meta+16(FP), R8; \
	MOVQ codes+24(FP), R9; \
	MOVQ scales+32(FP), R10; \
	MOVQ groups+40(FP), CX; \
	LEAQ (SI)(BX*2), DI; \
	ADDQ BX, DI

// STARTS: every activation row's starting sums.
#define STARTS \
	START(0, Z0, Z6); \
	START(1, Z1, Z7); \
	START(2, Z2, Z8); \
	START(3, Z3, Z9); \
	START(4, Z4, Z10); \
	START(5, Z5, Z11)

// SCALES(da): the group's int32 sums into the float32 sums; the activation scales are
// at da(R8).
#define SCALES(da) \
	VMOVUPS (R10), Z26; \
	VMOVUPS 64(R10), Z27; \
	SCALE(0, Z0, Z6, Z12, Z18, da); \
	SCALE(1, Z1, Z7, Z13, Z19, da); \
	SCALE(2, Z2, Z8, Z14, Z20, da); \
	SCALE(3, Z3, Z9, Z15, Z21, da); \
	SCALE(4, Z4, Z10, Z16, Z22, da); \
	SCALE(5, Z5, Z11, Z17, Z23, da)

// STORE writes the float32 sums to dst (row c at dst + c·ldc floats).
#define STORE \
	MOVQ    dst+48(FP), DX; \
	MOVQ    ldc+56(FP), R11; \
	SHLQ    $2, R11; \
	LEAQ    (DX)(R11*2), AX; \
	ADDQ    R11, AX; \
	VMOVUPS Z12, (DX); \
	VMOVUPS Z18, 64(DX); \
	VMOVUPS Z13, (DX)(R11*1); \
	VMOVUPS Z19, 64(DX)(R11*1); \
	VMOVUPS Z14, (DX)(R11*2); \
	VMOVUPS Z20, 64(DX)(R11*2); \
	VMOVUPS Z15, (AX); \
	VMOVUPS Z21, 64(AX); \
	VMOVUPS Z16, (AX)(R11*1); \
	VMOVUPS Z22, 64(AX)(R11*1); \
	VMOVUPS Z17, (AX)(R11*2); \
	VMOVUPS Z23, 64(AX)(R11*2); \
	VZEROUPPER

// func gemmQ8VNNI(a *int8, lda int, meta *uint32, codes *byte, scales *float32, groups int, dst *float32, ldc int)
//
// Groups of 32 values; metadata 6 starting sums and 6 scales a group.
TEXT ·gemmQ8VNNI(SB), NOSPLIT, $0-64
	ARGS
	ZEROF
	TESTQ CX, CX
	JZ    store8

group8:
	STARTS
	STEP(0)
	STEP(1)
	STEP(2)
	STEP(3)
	STEP(4)
	STEP(5)
	STEP(6)
	STEP(7)
	SCALES(24)
	ADDQ $32, SI
	ADDQ $32, DI
	ADDQ $48, R8
	ADDQ $1024, R9
	ADDQ $128, R10
	DECQ CX
	JNZ  group8

store8:
	STORE
	RET

// func gemmQ6VNNI(a *int8, lda int, meta *uint32, codes *byte, scales *float32, groups int, dst *float32, ldc int)
//
// Groups of 16 values; metadata as gemmQ8VNNI's.
TEXT ·gemmQ6VNNI(SB), NOSPLIT, $0-64
	ARGS
	ZEROF
	TESTQ CX, CX
	JZ    store6

group6:
	STARTS
	STEP(0)
	STEP(1)
	STEP(2)
	STEP(3)
	SCALES(24)
	ADDQ $16, SI
	ADDQ $16, DI
	ADDQ $48, R8
	ADDQ $512, R9
	ADDQ $128, R10
	DECQ CX
	JNZ  group6

store6:
	STORE
	RET

// MINS(c): activation row c's min term of the group (at 48(R8)) times the weight rows'
// mins (Z30, Z31) into its float32 sums.
#define MINS(c, flo, fhi) \
	VFMADD231PS.BCST (48+c*4)(R8), Z30, flo; \
	VFMADD231PS.BCST (48+c*4)(R8), Z31, fhi

// func gemmQ4KVNNI(a *int8, lda int, meta *uint32, codes *byte, scales *float32, groups int, dst *float32, ldc int)
//
// Groups of 32 values whose weights have a min: metadata 6 starting sums, 6 scales and
// 6 min terms a group; the panel's mins follow its scales, groups·32 floats on.
TEXT ·gemmQ4KVNNI(SB), NOSPLIT, $0-64
	ARGS
	ZEROF
	MOVQ  CX, R12
	SHLQ  $7, R12
	ADDQ  R10, R12
	TESTQ CX, CX
	JZ    store4

group4:
	STARTS
	STEP(0)
	STEP(1)
	STEP(2)
	STEP(3)
	STEP(4)
	STEP(5)
	STEP(6)
	STEP(7)
	SCALES(24)
	VMOVUPS (R12), Z30
	VMOVUPS 64(R12), Z31
	MINS(0, Z12, Z18)
	MINS(1, Z13, Z19)
	MINS(2, Z14, Z20)
	MINS(3, Z15, Z21)
	MINS(4, Z16, Z22)
	MINS(5, Z17, Z23)
	ADDQ $32, SI
	ADDQ $32, DI
	ADDQ $72, R8
	ADDQ $1024, R9
	ADDQ $128, R10
	ADDQ $128, R12
	DECQ CX
	JNZ  group4

store4:
	STORE
	RET

// The panels' repacking: 16 rows' 32 bytes at the same place of each are loaded (row r
// in the low half of a zmm, row r+8 in the high half) and transposed as dwords, so that
// output d (Z8, Z10, Z12, Z14, Z9, Z11, Z13, Z15 for d = 0…7) holds dword d of rows 0…15.
// AX points at the 32 rows' byte offsets from SI (int64); Z26, Z27 hold the VPERMI2Q
// indices of the last step.

// ROW(r, off, half, z): row r of the half's 16: 32 bytes at off into z's low or high half.
#define ROWLO(r, off, half, y) \
	MOVQ    (8*(16*half+r))(AX), R11; \
	VMOVDQU off(SI)(R11*1), y
#define ROWHI(r, off, half, z) \
	MOVQ         (8*(16*half+r+8))(AX), R11; \
	VINSERTI64X4 $1, off(SI)(R11*1), z, z

// TRANS(off, half): the transposed dwords of the half's rows at off.
#define TRANS(off, half) \
	ROWLO(0, off, half, Y0); ROWHI(0, off, half, Z0); \
	ROWLO(1, off, half, Y1); ROWHI(1, off, half, Z1); \
	ROWLO(2, off, half, Y2); ROWHI(2, off, half, Z2); \
	ROWLO(3, off, half, Y3); ROWHI(3, off, half, Z3); \
	ROWLO(4, off, half, Y4); ROWHI(4, off, half, Z4); \
	ROWLO(5, off, half, Y5); ROWHI(5, off, half, Z5); \
	ROWLO(6, off, half, Y6); ROWHI(6, off, half, Z6); \
	ROWLO(7, off, half, Y7); ROWHI(7, off, half, Z7); \
	VPUNPCKLDQ  Z1, Z0, Z8; \
	VPUNPCKHDQ  Z1, Z0, Z9; \
	VPUNPCKLDQ  Z3, Z2, Z10; \
	VPUNPCKHDQ  Z3, Z2, Z11; \
	VPUNPCKLDQ  Z5, Z4, Z12; \
	VPUNPCKHDQ  Z5, Z4, Z13; \
	VPUNPCKLDQ  Z7, Z6, Z14; \
	VPUNPCKHDQ  Z7, Z6, Z15; \
	VPUNPCKLQDQ Z10, Z8, Z0; \
	VPUNPCKHQDQ Z10, Z8, Z1; \
	VPUNPCKLQDQ Z11, Z9, Z2; \
	VPUNPCKHQDQ Z11, Z9, Z3; \
	VPUNPCKLQDQ Z14, Z12, Z4; \
	VPUNPCKHQDQ Z14, Z12, Z5; \
	VPUNPCKLQDQ Z15, Z13, Z6; \
	VPUNPCKHQDQ Z15, Z13, Z7; \
	VMOVDQA64   Z26, Z8; \
	VPERMI2Q    Z4, Z0, Z8; \
	VMOVDQA64   Z27, Z9; \
	VPERMI2Q    Z4, Z0, Z9; \
	VMOVDQA64   Z26, Z10; \
	VPERMI2Q    Z5, Z1, Z10; \
	VMOVDQA64   Z27, Z11; \
	VPERMI2Q    Z5, Z1, Z11; \
	VMOVDQA64   Z26, Z12; \
	VPERMI2Q    Z6, Z2, Z12; \
	VMOVDQA64   Z27, Z13; \
	VPERMI2Q    Z6, Z2, Z13; \
	VMOVDQA64   Z26, Z14; \
	VPERMI2Q    Z7, Z3, Z14; \
	VMOVDQA64   Z27, Z15; \
	VPERMI2Q    Z7, Z3, Z15

// TRANSIDX loads TRANS's indices.
#define TRANSIDX \
	VPMOVZXBQ transLo<>(SB), Z26; \
	VPMOVZXBQ transHi<>(SB), Z27

DATA transLo<>+0(SB)/8, $0x0d0c050409080100
GLOBL transLo<>(SB), RODATA|NOPTR, $8
DATA transHi<>+0(SB)/8, $0x0f0e07060b0a0302
GLOBL transHi<>(SB), RODATA|NOPTR, $8

// Q8_0's panel: per block of 32 values, 8 steps of 32 rows' 4 codes offset by 128 to
// unsigned, then the 32 rows' scales (gathered) widened from half precision.

// GATHER(off, idx, dst): the dwords at SI+off+idx[r] for the 16 rows r.
#define GATHER(off, idx, dst) \
	KXNORW     K1, K1, K1; \
	VPGATHERDD off(SI)(idx*1), K1, dst

// Q8HALF(half): one half's codes of the block at SI into the panel at DI.
#define Q8HALF(half) \
	TRANS(2, half); \
	VPXORD Z29, Z8, Z8; VMOVDQU32 Z8, (0*128+64*half)(DI); \
	VPXORD Z29, Z10, Z10; VMOVDQU32 Z10, (1*128+64*half)(DI); \
	VPXORD Z29, Z12, Z12; VMOVDQU32 Z12, (2*128+64*half)(DI); \
	VPXORD Z29, Z14, Z14; VMOVDQU32 Z14, (3*128+64*half)(DI); \
	VPXORD Z29, Z9, Z9; VMOVDQU32 Z9, (4*128+64*half)(DI); \
	VPXORD Z29, Z11, Z11; VMOVDQU32 Z11, (5*128+64*half)(DI); \
	VPXORD Z29, Z13, Z13; VMOVDQU32 Z13, (6*128+64*half)(DI); \
	VPXORD Z29, Z15, Z15; VMOVDQU32 Z15, (7*128+64*half)(DI)

// func repackQ8_0VNNI(src *byte, offs *int32, offs64 *int64, nb int, codes *byte, scales *float32)
TEXT ·repackQ8_0VNNI(SB), NOSPLIT, $0-48
	MOVQ      src+0(FP), SI
	MOVQ      offs+8(FP), AX
	VMOVDQU32 (AX), Z30
	VMOVDQU32 64(AX), Z31
	MOVQ      offs64+16(FP), AX
	MOVQ      nb+24(FP), CX
	MOVQ      codes+32(FP), DI
	MOVQ      scales+40(FP), R10
	MOVL      $0x80808080, DX
	VPBROADCASTD DX, Z29
	TRANSIDX
	TESTQ     CX, CX
	JZ        rdone

rblock:
	Q8HALF(0)
	Q8HALF(1)
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

// Q4_K's panel codes: per super-block of 256 values, per 64 (j < 4) the transposed
// dwords of each row's 32 bytes at 16+32j: the low nibbles of dword s are step s of
// group 2j, the high nibbles of group 2j+1. Z28 holds 0x0f bytes.

// Q4OUT(j, s, z, half): one transposed dword's two steps.
#define Q4OUT(j, s, z, half) \
	VPANDD    Z28, z, Z0; \
	VMOVDQU32 Z0, ((2*j*8+s)*128+64*half)(DI); \
	VPSRLD    $4, z, z; \
	VPANDD    Z28, z, z; \
	VMOVDQU32 z, (((2*j+1)*8+s)*128+64*half)(DI)

// Q4HALF(j, half): one half's rows.
#define Q4HALF(j, half) \
	TRANS(16+32*j, half); \
	Q4OUT(j, 0, Z8, half); \
	Q4OUT(j, 1, Z10, half); \
	Q4OUT(j, 2, Z12, half); \
	Q4OUT(j, 3, Z14, half); \
	Q4OUT(j, 4, Z9, half); \
	Q4OUT(j, 5, Z11, half); \
	Q4OUT(j, 6, Z13, half); \
	Q4OUT(j, 7, Z15, half)

// Q4SCALES(idx, half): the half's rows' d·sc and dmin·m of the super-block's 8
// sub-blocks (wkscales.go's scaleMinK4: sub-blocks 0…3 from the low 6 bits of bytes
// 4…7 and 8…11; 4…7 from the nibbles of bytes 12…15 below the top 2 bits of bytes 4…7
// and 8…11), gathered, into the scales at R10 and the mins at R12. Z22, Z23, Z24 hold
// 63, 15 and 3.
#define Q4SCALES(idx, half) \
	GATHER(0, idx, Z16); \
	GATHER(4, idx, Z17); \
	GATHER(8, idx, Z18); \
	GATHER(12, idx, Z19); \
	VPMOVDW   Z16, Y20; \
	VCVTPH2PS Y20, Z20; \
	VPSRLD    $16, Z16, Z21; \
	VPMOVDW   Z21, Y21; \
	VCVTPH2PS Y21, Z21; \
	VPSRLD $(0), Z17, Z0; \
	VPANDD Z22, Z0, Z0; \
	VCVTDQ2PS Z0, Z0; \
	VMULPS Z20, Z0, Z0; \
	VMOVUPS Z0, (0*128+64*half)(R10); \
	VPSRLD $(0), Z18, Z0; \
	VPANDD Z22, Z0, Z0; \
	VCVTDQ2PS Z0, Z0; \
	VMULPS Z21, Z0, Z0; \
	VMOVUPS Z0, (0*128+64*half)(R12); \
	VPSRLD $(8), Z17, Z0; \
	VPANDD Z22, Z0, Z0; \
	VCVTDQ2PS Z0, Z0; \
	VMULPS Z20, Z0, Z0; \
	VMOVUPS Z0, (1*128+64*half)(R10); \
	VPSRLD $(8), Z18, Z0; \
	VPANDD Z22, Z0, Z0; \
	VCVTDQ2PS Z0, Z0; \
	VMULPS Z21, Z0, Z0; \
	VMOVUPS Z0, (1*128+64*half)(R12); \
	VPSRLD $(16), Z17, Z0; \
	VPANDD Z22, Z0, Z0; \
	VCVTDQ2PS Z0, Z0; \
	VMULPS Z20, Z0, Z0; \
	VMOVUPS Z0, (2*128+64*half)(R10); \
	VPSRLD $(16), Z18, Z0; \
	VPANDD Z22, Z0, Z0; \
	VCVTDQ2PS Z0, Z0; \
	VMULPS Z21, Z0, Z0; \
	VMOVUPS Z0, (2*128+64*half)(R12); \
	VPSRLD $(24), Z17, Z0; \
	VPANDD Z22, Z0, Z0; \
	VCVTDQ2PS Z0, Z0; \
	VMULPS Z20, Z0, Z0; \
	VMOVUPS Z0, (3*128+64*half)(R10); \
	VPSRLD $(24), Z18, Z0; \
	VPANDD Z22, Z0, Z0; \
	VCVTDQ2PS Z0, Z0; \
	VMULPS Z21, Z0, Z0; \
	VMOVUPS Z0, (3*128+64*half)(R12); \
	VPSRLD $(0), Z19, Z0; \
	VPANDD Z23, Z0, Z0; \
	VPSRLD $(6), Z17, Z1; \
	VPANDD Z24, Z1, Z1; \
	VPSLLD $4, Z1, Z1; \
	VPORD Z1, Z0, Z0; \
	VCVTDQ2PS Z0, Z0; \
	VMULPS Z20, Z0, Z0; \
	VMOVUPS Z0, (4*128+64*half)(R10); \
	VPSRLD $(4), Z19, Z0; \
	VPANDD Z23, Z0, Z0; \
	VPSRLD $(6), Z18, Z1; \
	VPANDD Z24, Z1, Z1; \
	VPSLLD $4, Z1, Z1; \
	VPORD Z1, Z0, Z0; \
	VCVTDQ2PS Z0, Z0; \
	VMULPS Z21, Z0, Z0; \
	VMOVUPS Z0, (4*128+64*half)(R12); \
	VPSRLD $(8), Z19, Z0; \
	VPANDD Z23, Z0, Z0; \
	VPSRLD $(14), Z17, Z1; \
	VPANDD Z24, Z1, Z1; \
	VPSLLD $4, Z1, Z1; \
	VPORD Z1, Z0, Z0; \
	VCVTDQ2PS Z0, Z0; \
	VMULPS Z20, Z0, Z0; \
	VMOVUPS Z0, (5*128+64*half)(R10); \
	VPSRLD $(12), Z19, Z0; \
	VPANDD Z23, Z0, Z0; \
	VPSRLD $(14), Z18, Z1; \
	VPANDD Z24, Z1, Z1; \
	VPSLLD $4, Z1, Z1; \
	VPORD Z1, Z0, Z0; \
	VCVTDQ2PS Z0, Z0; \
	VMULPS Z21, Z0, Z0; \
	VMOVUPS Z0, (5*128+64*half)(R12); \
	VPSRLD $(16), Z19, Z0; \
	VPANDD Z23, Z0, Z0; \
	VPSRLD $(22), Z17, Z1; \
	VPANDD Z24, Z1, Z1; \
	VPSLLD $4, Z1, Z1; \
	VPORD Z1, Z0, Z0; \
	VCVTDQ2PS Z0, Z0; \
	VMULPS Z20, Z0, Z0; \
	VMOVUPS Z0, (6*128+64*half)(R10); \
	VPSRLD $(20), Z19, Z0; \
	VPANDD Z23, Z0, Z0; \
	VPSRLD $(22), Z18, Z1; \
	VPANDD Z24, Z1, Z1; \
	VPSLLD $4, Z1, Z1; \
	VPORD Z1, Z0, Z0; \
	VCVTDQ2PS Z0, Z0; \
	VMULPS Z21, Z0, Z0; \
	VMOVUPS Z0, (6*128+64*half)(R12); \
	VPSRLD $(24), Z19, Z0; \
	VPANDD Z23, Z0, Z0; \
	VPSRLD $(30), Z17, Z1; \
	VPANDD Z24, Z1, Z1; \
	VPSLLD $4, Z1, Z1; \
	VPORD Z1, Z0, Z0; \
	VCVTDQ2PS Z0, Z0; \
	VMULPS Z20, Z0, Z0; \
	VMOVUPS Z0, (7*128+64*half)(R10); \
	VPSRLD $(28), Z19, Z0; \
	VPANDD Z23, Z0, Z0; \
	VPSRLD $(30), Z18, Z1; \
	VPANDD Z24, Z1, Z1; \
	VPSLLD $4, Z1, Z1; \
	VPORD Z1, Z0, Z0; \
	VCVTDQ2PS Z0, Z0; \
	VMULPS Z21, Z0, Z0; \
	VMOVUPS Z0, (7*128+64*half)(R12)

// func repackQ4_KVNNI(src *byte, offs *int32, offs64 *int64, nb int, codes *byte, scales, mins *float32)
TEXT ·repackQ4_KVNNI(SB), NOSPLIT, $0-56
	MOVQ      src+0(FP), SI
	MOVQ      offs+8(FP), AX
	VMOVDQU32 (AX), Z30
	VMOVDQU32 64(AX), Z31
	MOVQ      offs64+16(FP), AX
	MOVQ      nb+24(FP), CX
	MOVQ      codes+32(FP), DI
	MOVQ      scales+40(FP), R10
	MOVQ      mins+48(FP), R12
	MOVL      $0x0f0f0f0f, DX
	VPBROADCASTD DX, Z28
	MOVL      $63, DX
	VPBROADCASTD DX, Z22
	MOVL      $15, DX
	VPBROADCASTD DX, Z23
	MOVL      $3, DX
	VPBROADCASTD DX, Z24
	TRANSIDX
	TESTQ     CX, CX
	JZ        q4done

q4block:
	Q4HALF(0, 0)
	Q4HALF(0, 1)
	Q4HALF(1, 0)
	Q4HALF(1, 1)
	Q4HALF(2, 0)
	Q4HALF(2, 1)
	Q4HALF(3, 0)
	Q4HALF(3, 1)
	Q4SCALES(Z30, 0)
	Q4SCALES(Z31, 1)
	ADDQ $144, SI
	ADDQ $8192, DI
	ADDQ $1024, R10
	ADDQ $1024, R12
	DECQ CX
	JNZ  q4block

q4done:
	VZEROUPPER
	RET

// Q6_K's panel codes: per super-block of 256 values, per half h < 2 the transposed
// dwords (lq < 8) of each row's 32 bytes A at ql 64h, B at ql 64h+32 and H at qh
// 128+32h give values 128h+32kk+4lq…+3 for kk < 4: the low nibbles of A (kk 0), B (1),
// the high nibbles of A (2), B (3), each below the bits 2kk, 2kk+1 of H; that is step
// lq%4 of group 8h+2kk+lq/4 of 16 values. Z28 holds 0x0f bytes, Z29 0x30 bytes; H's
// dwords wait in Z16…Z23.

// Q6LEVELS(lo, hsh, g, s, half): the levels of one kk from the nibbles lo (masked here)
// and the high bits shifted to bits 4, 5 in hsh (masked here).
#define Q6LEVELS(lo, hsh, g, s, half) \
	VPANDD    Z28, lo, Z0; \
	VPANDD    Z29, hsh, Z1; \
	VPORD     Z1, Z0, Z0; \
	VMOVDQU32 Z0, (((g)*4+(s))*128+64*(half))(DI)

// Q6A(h, lq, a, hb, half): kk 0 and 2 of dword lq from A's a and H's hb.
#define Q6A(h, lq, a, hb, half) \
	VPSLLD $4, hb, Z2; \
	Q6LEVELS(a, Z2, 8*h+lq/4, lq%4, half); \
	VPSRLD $4, a, a; \
	Q6LEVELS(a, hb, 8*h+4+lq/4, lq%4, half)

// Q6B(h, lq, b, hb, half): kk 1 and 3 of dword lq from B's b and H's hb.
#define Q6B(h, lq, b, hb, half) \
	VPSLLD $2, hb, Z2; \
	Q6LEVELS(b, Z2, 8*h+2+lq/4, lq%4, half); \
	VPSRLD $4, b, b; \
	VPSRLD $2, hb, Z2; \
	Q6LEVELS(b, Z2, 8*h+6+lq/4, lq%4, half)

// Q6HALF(h, half): one half's rows.
#define Q6HALF(h, half) \
	TRANS(128+32*h, half); \
	VMOVDQA64 Z8, Z16; \
	VMOVDQA64 Z10, Z17; \
	VMOVDQA64 Z12, Z18; \
	VMOVDQA64 Z14, Z19; \
	VMOVDQA64 Z9, Z20; \
	VMOVDQA64 Z11, Z21; \
	VMOVDQA64 Z13, Z22; \
	VMOVDQA64 Z15, Z23; \
	TRANS(64*h, half); \
	Q6A(h, 0, Z8, Z16, half); \
	Q6A(h, 1, Z10, Z17, half); \
	Q6A(h, 2, Z12, Z18, half); \
	Q6A(h, 3, Z14, Z19, half); \
	Q6A(h, 4, Z9, Z20, half); \
	Q6A(h, 5, Z11, Z21, half); \
	Q6A(h, 6, Z13, Z22, half); \
	Q6A(h, 7, Z15, Z23, half); \
	TRANS(64*h+32, half); \
	Q6B(h, 0, Z8, Z16, half); \
	Q6B(h, 1, Z10, Z17, half); \
	Q6B(h, 2, Z12, Z18, half); \
	Q6B(h, 3, Z14, Z19, half); \
	Q6B(h, 4, Z9, Z20, half); \
	Q6B(h, 5, Z11, Z21, half); \
	Q6B(h, 6, Z13, Z22, half); \
	Q6B(h, 7, Z15, Z23, half)

// Q6SCALES(idx, half): the half's rows' d·sc of the super-block's 16 sub-blocks
// (int8 scales at 192, d in the high half of the dword at 206), gathered, into the
// scales at R10.
#define Q6SCALES(idx, half) \
	GATHER(192, idx, Z16); \
	GATHER(196, idx, Z17); \
	GATHER(200, idx, Z18); \
	GATHER(204, idx, Z19); \
	GATHER(206, idx, Z20); \
	VPSRLD    $16, Z20, Z20; \
	VPMOVDW   Z20, Y20; \
	VCVTPH2PS Y20, Z20; \
	VPSLLD $(24), Z16, Z0; \
	VPSRAD $24, Z0, Z0; \
	VCVTDQ2PS Z0, Z0; \
	VMULPS Z20, Z0, Z0; \
	VMOVUPS Z0, (0*128+64*half)(R10); \
	VPSLLD $(16), Z16, Z0; \
	VPSRAD $24, Z0, Z0; \
	VCVTDQ2PS Z0, Z0; \
	VMULPS Z20, Z0, Z0; \
	VMOVUPS Z0, (1*128+64*half)(R10); \
	VPSLLD $(8), Z16, Z0; \
	VPSRAD $24, Z0, Z0; \
	VCVTDQ2PS Z0, Z0; \
	VMULPS Z20, Z0, Z0; \
	VMOVUPS Z0, (2*128+64*half)(R10); \
	VPSLLD $(0), Z16, Z0; \
	VPSRAD $24, Z0, Z0; \
	VCVTDQ2PS Z0, Z0; \
	VMULPS Z20, Z0, Z0; \
	VMOVUPS Z0, (3*128+64*half)(R10); \
	VPSLLD $(24), Z17, Z0; \
	VPSRAD $24, Z0, Z0; \
	VCVTDQ2PS Z0, Z0; \
	VMULPS Z20, Z0, Z0; \
	VMOVUPS Z0, (4*128+64*half)(R10); \
	VPSLLD $(16), Z17, Z0; \
	VPSRAD $24, Z0, Z0; \
	VCVTDQ2PS Z0, Z0; \
	VMULPS Z20, Z0, Z0; \
	VMOVUPS Z0, (5*128+64*half)(R10); \
	VPSLLD $(8), Z17, Z0; \
	VPSRAD $24, Z0, Z0; \
	VCVTDQ2PS Z0, Z0; \
	VMULPS Z20, Z0, Z0; \
	VMOVUPS Z0, (6*128+64*half)(R10); \
	VPSLLD $(0), Z17, Z0; \
	VPSRAD $24, Z0, Z0; \
	VCVTDQ2PS Z0, Z0; \
	VMULPS Z20, Z0, Z0; \
	VMOVUPS Z0, (7*128+64*half)(R10); \
	VPSLLD $(24), Z18, Z0; \
	VPSRAD $24, Z0, Z0; \
	VCVTDQ2PS Z0, Z0; \
	VMULPS Z20, Z0, Z0; \
	VMOVUPS Z0, (8*128+64*half)(R10); \
	VPSLLD $(16), Z18, Z0; \
	VPSRAD $24, Z0, Z0; \
	VCVTDQ2PS Z0, Z0; \
	VMULPS Z20, Z0, Z0; \
	VMOVUPS Z0, (9*128+64*half)(R10); \
	VPSLLD $(8), Z18, Z0; \
	VPSRAD $24, Z0, Z0; \
	VCVTDQ2PS Z0, Z0; \
	VMULPS Z20, Z0, Z0; \
	VMOVUPS Z0, (10*128+64*half)(R10); \
	VPSLLD $(0), Z18, Z0; \
	VPSRAD $24, Z0, Z0; \
	VCVTDQ2PS Z0, Z0; \
	VMULPS Z20, Z0, Z0; \
	VMOVUPS Z0, (11*128+64*half)(R10); \
	VPSLLD $(24), Z19, Z0; \
	VPSRAD $24, Z0, Z0; \
	VCVTDQ2PS Z0, Z0; \
	VMULPS Z20, Z0, Z0; \
	VMOVUPS Z0, (12*128+64*half)(R10); \
	VPSLLD $(16), Z19, Z0; \
	VPSRAD $24, Z0, Z0; \
	VCVTDQ2PS Z0, Z0; \
	VMULPS Z20, Z0, Z0; \
	VMOVUPS Z0, (13*128+64*half)(R10); \
	VPSLLD $(8), Z19, Z0; \
	VPSRAD $24, Z0, Z0; \
	VCVTDQ2PS Z0, Z0; \
	VMULPS Z20, Z0, Z0; \
	VMOVUPS Z0, (14*128+64*half)(R10); \
	VPSLLD $(0), Z19, Z0; \
	VPSRAD $24, Z0, Z0; \
	VCVTDQ2PS Z0, Z0; \
	VMULPS Z20, Z0, Z0; \
	VMOVUPS Z0, (15*128+64*half)(R10)

// func repackQ6_KVNNI(src *byte, offs *int32, offs64 *int64, nb int, codes *byte, scales *float32)
TEXT ·repackQ6_KVNNI(SB), NOSPLIT, $0-48
	MOVQ      src+0(FP), SI
	MOVQ      offs+8(FP), AX
	VMOVDQU32 (AX), Z30
	VMOVDQU32 64(AX), Z31
	MOVQ      offs64+16(FP), AX
	MOVQ      nb+24(FP), CX
	MOVQ      codes+32(FP), DI
	MOVQ      scales+40(FP), R10
	MOVL      $0x0f0f0f0f, DX
	VPBROADCASTD DX, Z28
	MOVL      $0x30303030, DX
	VPBROADCASTD DX, Z29
	TRANSIDX
	TESTQ     CX, CX
	JZ        q6done

q6block:
	Q6HALF(0, 0)
	Q6HALF(0, 1)
	Q6HALF(1, 0)
	Q6HALF(1, 1)
	Q6SCALES(Z30, 0)
	Q6SCALES(Z31, 1)
	ADDQ $210, SI
	ADDQ $8192, DI
	ADDQ $2048, R10
	DECQ CX
	JNZ  q6block

q6done:
	VZEROUPPER
	RET

// func startSumsQ8(qs *int8, meta *uint32, nb int)
//
// Q8_0's starting sums: for each block of 32 codes, −128·Σq at meta, 12 uint32 apart.
// Each code plus 128 is a byte VPSADBW adds in eights; the four sums, less 32·128.
TEXT ·startSumsQ8(SB), NOSPLIT, $0-24
	MOVQ         qs+0(FP), SI
	MOVQ         meta+8(FP), DI
	MOVQ         nb+16(FP), CX
	MOVL         $0x80808080, AX
	VPBROADCASTD AX, Y2
	VPXOR        Y3, Y3, Y3
	TESTQ        CX, CX
	JZ           sdone

sblock:
	VPXOR        (SI), Y2, Y0
	VPSADBW      Y3, Y0, Y0
	VEXTRACTI128 $1, Y0, X1
	VPADDQ       X1, X0, X0
	VPSHUFD      $0x4e, X0, X1
	VPADDQ       X1, X0, X0
	VMOVD        X0, AX
	SUBL         $4096, AX
	IMULL        $-128, AX
	MOVL         AX, (DI)
	ADDQ         $32, SI
	ADDQ         $48, DI
	DECQ         CX
	JNZ          sblock

sdone:
	VZEROUPPER
	RET
