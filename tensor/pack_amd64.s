//go:build amd64 && !purego

#include "textflag.h"

// The GEMM's panels (pack in gemm.go) of rows with contiguous k: dst[p*stride+i] =
// src[i*ld+p] for the rows i of the panel and p < kc (a positive multiple of 16).
// Each 16x16 block is loaded as 16 row vectors (bf16 widened to float32) and
// transposed in registers: UNPACK2 pairs rows (VUNPCKLPS/HPS) and then pairs of pairs
// (VUNPCKLPD/HPD), which leaves, for column group c, Z(c), Z(4+c), Z(8+c) and Z(12+c)
// holding in 128-bit lane L column 4L+c of rows 0-3, 4-7, 8-11 and 12-15; LANES gathers
// those lanes (VSHUFF32X4) into output rows c, 4+c, 8+c and 12+c, left in the same
// four registers. The macros keep the three kernels one piece of logic.

#define UNPACK2 \
	VUNPCKLPS Z1, Z0, Z16; \
	VUNPCKHPS Z1, Z0, Z17; \
	VUNPCKLPS Z3, Z2, Z18; \
	VUNPCKHPS Z3, Z2, Z19; \
	VUNPCKLPS Z5, Z4, Z20; \
	VUNPCKHPS Z5, Z4, Z21; \
	VUNPCKLPS Z7, Z6, Z22; \
	VUNPCKHPS Z7, Z6, Z23; \
	VUNPCKLPS Z9, Z8, Z24; \
	VUNPCKHPS Z9, Z8, Z25; \
	VUNPCKLPS Z11, Z10, Z26; \
	VUNPCKHPS Z11, Z10, Z27; \
	VUNPCKLPS Z13, Z12, Z28; \
	VUNPCKHPS Z13, Z12, Z29; \
	VUNPCKLPS Z15, Z14, Z30; \
	VUNPCKHPS Z15, Z14, Z31; \
	VUNPCKLPD Z18, Z16, Z0; \
	VUNPCKHPD Z18, Z16, Z1; \
	VUNPCKLPD Z19, Z17, Z2; \
	VUNPCKHPD Z19, Z17, Z3; \
	VUNPCKLPD Z22, Z20, Z4; \
	VUNPCKHPD Z22, Z20, Z5; \
	VUNPCKLPD Z23, Z21, Z6; \
	VUNPCKHPD Z23, Z21, Z7; \
	VUNPCKLPD Z26, Z24, Z8; \
	VUNPCKHPD Z26, Z24, Z9; \
	VUNPCKLPD Z27, Z25, Z10; \
	VUNPCKHPD Z27, Z25, Z11; \
	VUNPCKLPD Z30, Z28, Z12; \
	VUNPCKHPD Z30, Z28, Z13; \
	VUNPCKLPD Z31, Z29, Z14; \
	VUNPCKHPD Z31, Z29, Z15

#define LANES(u, v, w, x, p, q, r, s) \
	VSHUFF32X4 $0x44, v, u, p; \
	VSHUFF32X4 $0xEE, v, u, q; \
	VSHUFF32X4 $0x44, x, w, r; \
	VSHUFF32X4 $0xEE, x, w, s; \
	VSHUFF32X4 $0x88, r, p, u; \
	VSHUFF32X4 $0xDD, r, p, v; \
	VSHUFF32X4 $0x88, s, q, w; \
	VSHUFF32X4 $0xDD, s, q, x

// PANEL16 transposes the 16 rows in Z0-Z15 (UNPACK2, LANES) and stores them as 16 columns
// of a 32-row panel at DI (the 16x16 block's columns 128 bytes apart).
#define PANEL16 \
	UNPACK2; \
	LANES(Z0, Z4, Z8, Z12, Z16, Z17, Z18, Z19); LANES(Z1, Z5, Z9, Z13, Z20, Z21, Z22, Z23); \
	LANES(Z2, Z6, Z10, Z14, Z24, Z25, Z26, Z27); LANES(Z3, Z7, Z11, Z15, Z28, Z29, Z30, Z31); \
	VMOVUPS Z0, 0(DI); VMOVUPS Z4, 512(DI); VMOVUPS Z8, 1024(DI); VMOVUPS Z12, 1536(DI); \
	VMOVUPS Z1, 128(DI); VMOVUPS Z5, 640(DI); VMOVUPS Z9, 1152(DI); VMOVUPS Z13, 1664(DI); \
	VMOVUPS Z2, 256(DI); VMOVUPS Z6, 768(DI); VMOVUPS Z10, 1280(DI); VMOVUPS Z14, 1792(DI); \
	VMOVUPS Z3, 384(DI); VMOVUPS Z7, 896(DI); VMOVUPS Z11, 1408(DI); VMOVUPS Z15, 1920(DI)

// BF16ROW loads 16 bf16 values and widens them to float32 (the high halves).
#define BF16ROW(src, z) VPMOVZXWD src, z; VPSLLD $16, z, z

// F16ROW loads 16 IEEE half values and widens them to float32.
#define F16ROW(src, z) VCVTPH2PS src, z

// HALVES16 widens 16 values from each of the 16 rows at SI, SI+R8, …, R12+R9 (R8 the
// row stride in bytes, R9 = 3·R8, R10-R12 four rows on each) into Z0-Z15 with ROW.
#define HALVES16(ROW) \
	ROW((SI), Z0); ROW((SI)(R8*1), Z1); ROW((SI)(R8*2), Z2); ROW((SI)(R9*1), Z3); \
	ROW((R10), Z4); ROW((R10)(R8*1), Z5); ROW((R10)(R8*2), Z6); ROW((R10)(R9*1), Z7); \
	ROW((R11), Z8); ROW((R11)(R8*1), Z9); ROW((R11)(R8*2), Z10); ROW((R11)(R9*1), Z11); \
	ROW((R12), Z12); ROW((R12)(R8*1), Z13); ROW((R12)(R8*2), Z14); ROW((R12)(R9*1), Z15)

// 16 rows of a 32-row weight panel (the other 16 are a second call at dst+16).
// func packT16F32AVX512(dst *float32, src *float32, ld, kc int)
TEXT ·packT16F32AVX512(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ld+16(FP), R8
	MOVQ kc+24(FP), CX
	SHLQ $2, R8
	LEAQ (R8)(R8*2), R9
	LEAQ (SI)(R8*4), R10
	LEAQ (R10)(R8*4), R11
	LEAQ (R11)(R8*4), R12
packT16F32AVX512loop:
	VMOVUPS (SI), Z0
	VMOVUPS (SI)(R8*1), Z1
	VMOVUPS (SI)(R8*2), Z2
	VMOVUPS (SI)(R9*1), Z3
	VMOVUPS (R10), Z4
	VMOVUPS (R10)(R8*1), Z5
	VMOVUPS (R10)(R8*2), Z6
	VMOVUPS (R10)(R9*1), Z7
	VMOVUPS (R11), Z8
	VMOVUPS (R11)(R8*1), Z9
	VMOVUPS (R11)(R8*2), Z10
	VMOVUPS (R11)(R9*1), Z11
	VMOVUPS (R12), Z12
	VMOVUPS (R12)(R8*1), Z13
	VMOVUPS (R12)(R8*2), Z14
	VMOVUPS (R12)(R9*1), Z15
	PANEL16
	ADDQ $64, SI
	ADDQ $64, R10
	ADDQ $64, R11
	ADDQ $64, R12
	ADDQ $2048, DI
	SUBQ $16, CX
	JNZ packT16F32AVX512loop
	VZEROUPPER
	RET

// The same from bf16 weights.
// func packT16BF16AVX512(dst *float32, src *uint16, ld, kc int)
TEXT ·packT16BF16AVX512(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ld+16(FP), R8
	MOVQ kc+24(FP), CX
	SHLQ $1, R8
	LEAQ (R8)(R8*2), R9
	LEAQ (SI)(R8*4), R10
	LEAQ (R10)(R8*4), R11
	LEAQ (R11)(R8*4), R12
packT16BF16AVX512loop:
	HALVES16(BF16ROW)
	PANEL16
	ADDQ $32, SI
	ADDQ $32, R10
	ADDQ $32, R11
	ADDQ $32, R12
	ADDQ $2048, DI
	SUBQ $16, CX
	JNZ packT16BF16AVX512loop
	VZEROUPPER
	RET

// The same from F16 (IEEE half) weights, widened exactly by VCVTPH2PS.
// func packT16F16AVX512(dst *float32, src *uint16, ld, kc int)
TEXT ·packT16F16AVX512(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ld+16(FP), R8
	MOVQ kc+24(FP), CX
	SHLQ $1, R8
	LEAQ (R8)(R8*2), R9
	LEAQ (SI)(R8*4), R10
	LEAQ (R10)(R8*4), R11
	LEAQ (R11)(R8*4), R12
packT16F16AVX512loop:
	HALVES16(F16ROW)
	PANEL16
	ADDQ $32, SI
	ADDQ $32, R10
	ADDQ $32, R11
	ADDQ $32, R12
	ADDQ $2048, DI
	SUBQ $16, CX
	JNZ packT16F16AVX512loop
	VZEROUPPER
	RET

// The 12 rows of an activation panel (the micro-tile's height): rows 12-15 are
// zeros, and the 12 lanes of each output row are stored under a mask.
// func packT12F32AVX512(dst *float32, src *float32, ld, kc int)
TEXT ·packT12F32AVX512(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ld+16(FP), R8
	MOVQ kc+24(FP), CX
	SHLQ $2, R8
	LEAQ (R8)(R8*2), R9
	LEAQ (SI)(R8*4), R10
	LEAQ (R10)(R8*4), R11
	MOVL $0xfff, AX
	KMOVW AX, K1
packT12F32AVX512loop:
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15
	VMOVUPS (SI), Z0
	VMOVUPS (SI)(R8*1), Z1
	VMOVUPS (SI)(R8*2), Z2
	VMOVUPS (SI)(R9*1), Z3
	VMOVUPS (R10), Z4
	VMOVUPS (R10)(R8*1), Z5
	VMOVUPS (R10)(R8*2), Z6
	VMOVUPS (R10)(R9*1), Z7
	VMOVUPS (R11), Z8
	VMOVUPS (R11)(R8*1), Z9
	VMOVUPS (R11)(R8*2), Z10
	VMOVUPS (R11)(R9*1), Z11
	UNPACK2
	LANES(Z0, Z4, Z8, Z12, Z16, Z17, Z18, Z19)
	LANES(Z1, Z5, Z9, Z13, Z20, Z21, Z22, Z23)
	LANES(Z2, Z6, Z10, Z14, Z24, Z25, Z26, Z27)
	LANES(Z3, Z7, Z11, Z15, Z28, Z29, Z30, Z31)
	VMOVUPS Z0, K1, 0(DI)
	VMOVUPS Z4, K1, 192(DI)
	VMOVUPS Z8, K1, 384(DI)
	VMOVUPS Z12, K1, 576(DI)
	VMOVUPS Z1, K1, 48(DI)
	VMOVUPS Z5, K1, 240(DI)
	VMOVUPS Z9, K1, 432(DI)
	VMOVUPS Z13, K1, 624(DI)
	VMOVUPS Z2, K1, 96(DI)
	VMOVUPS Z6, K1, 288(DI)
	VMOVUPS Z10, K1, 480(DI)
	VMOVUPS Z14, K1, 672(DI)
	VMOVUPS Z3, K1, 144(DI)
	VMOVUPS Z7, K1, 336(DI)
	VMOVUPS Z11, K1, 528(DI)
	VMOVUPS Z15, K1, 720(DI)
	ADDQ $64, SI
	ADDQ $64, R10
	ADDQ $64, R11
	ADDQ $768, DI
	SUBQ $16, CX
	JNZ packT12F32AVX512loop
	VZEROUPPER
	RET
