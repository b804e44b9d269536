//go:build amd64 && !purego

#include "textflag.h"
#include "wdot_amd64.h"

// Hand-written: Q5_K's dot on the blocks (wq5_k.go's DotQ5_K), Q4_K's kernel
// (wq4_k_amd64.s) with a fifth bit: sub-block j's is bit j of the qh byte of the
// value's position, zero-extended and moved to bit 4 (one shift, AND 16) and ORed
// into the nibble before the conversion.

#define LOW VPAND Y15, Y8, Y8
#define HIGH VPSRLD $4, Y8, Y8
#define H0 VPSLLD $4, Y9, Y9; VPAND Y14, Y9, Y9
#define H1 VPSLLD $3, Y9, Y9; VPAND Y14, Y9, Y9
#define H2 VPSLLD $2, Y9, Y9; VPAND Y14, Y9, Y9
#define H3 VPSLLD $1, Y9, Y9; VPAND Y14, Y9, Y9
#define H4 VPAND Y14, Y9, Y9
#define H5 VPSRLD $1, Y9, Y9; VPAND Y14, Y9, Y9
#define H6 VPSRLD $2, Y9, Y9; VPAND Y14, Y9, Y9
#define H7 VPSRLD $3, Y9, Y9; VPAND Y14, Y9, Y9

// 8 values: nibbles at qoff(SI) (NIB picks one), fifth bits at hoff(SI) (HB moves
// sub-block j's to bit 4), w = d·sc·q − dmin·m with d·sc in Y6 and dmin·m in Y7,
// acc += w·x at xoff(DI).
#define Q5KSTEP(qoff, hoff, xoff, NIB, HB, acc) \
	VPMOVZXBD   qoff(SI), Y8; \
	NIB; \
	VPMOVZXBD   hoff(SI), Y9; \
	HB; \
	VPOR        Y9, Y8, Y8; \
	VCVTDQ2PS   Y8, Y8; \
	VFMSUB213PS Y7, Y6, Y8; \
	VFMADD231PS xoff(DI), Y8, acc

// func dotQ5_KAVX2(row *byte, x *float32, nb int) float32
TEXT ·dotQ5_KAVX2(SB), NOSPLIT, $64-28
	MOVQ         row+0(FP), SI
	MOVQ         x+8(FP), DI
	MOVQ         nb+16(FP), CX
	VXORPS       Y0, Y0, Y0
	VXORPS       Y1, Y1, Y1
	VXORPS       Y10, Y10, Y10
	VXORPS       Y11, Y11, Y11
	MOVL         $15, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15
	MOVL         $16, AX
	VMOVD        AX, X14
	VPBROADCASTD X14, Y14
	TESTQ        CX, CX
	JZ           done

loop:
	MOVWLZX      (SI), AX
	VMOVD        AX, X2
	VCVTPH2PS    X2, X2
	VBROADCASTSS X2, Y2 // d
	MOVWLZX      2(SI), AX
	VMOVD        AX, X3
	VCVTPH2PS    X3, X3
	VBROADCASTSS X3, Y3 // dmin

	// Scales of sub-blocks 0-3: low 6 bits of bytes 4-7; mins: of bytes 8-11.
	// Sub-blocks 4-7: low nibbles of bytes 12-15 (mins: high nibbles) below the
	// top 2 bits of bytes 4-7 (mins: of bytes 8-11).
	MOVL  4(SI), AX
	MOVL  8(SI), BX
	MOVL  12(SI), DX
	MOVL  AX, R8
	ANDL  $0x3f3f3f3f, R8
	MOVL  BX, R9
	ANDL  $0x3f3f3f3f, R9
	MOVL  DX, R10
	ANDL  $0x0f0f0f0f, R10
	SHRL  $6, AX
	ANDL  $0x03030303, AX
	SHLL  $4, AX
	ORL   AX, R10
	SHRL  $4, DX
	ANDL  $0x0f0f0f0f, DX
	SHRL  $6, BX
	ANDL  $0x03030303, BX
	SHLL  $4, BX
	ORL   BX, DX
	SHLQ  $32, R10
	ORQ   R10, R8 // the 8 scales, a byte each
	SHLQ  $32, DX
	ORQ   DX, R9  // the 8 mins
	VMOVQ R8, X4
	VMOVQ R9, X5
	VPMOVZXBD X4, Y4
	VPMOVZXBD X5, Y5
	VCVTDQ2PS Y4, Y4
	VCVTDQ2PS Y5, Y5
	VMULPS    Y2, Y4, Y4
	VMULPS    Y3, Y5, Y5
	VMOVUPS   Y4, 0(SP)
	VMOVUPS   Y5, 32(SP)

	VBROADCASTSS 0(SP), Y6
	VBROADCASTSS 32(SP), Y7
	Q5KSTEP(48, 16, 0, LOW, H0, Y0)
	Q5KSTEP(56, 24, 32, LOW, H0, Y1)
	Q5KSTEP(64, 32, 64, LOW, H0, Y10)
	Q5KSTEP(72, 40, 96, LOW, H0, Y11)
	VBROADCASTSS 4(SP), Y6
	VBROADCASTSS 36(SP), Y7
	Q5KSTEP(48, 16, 128, HIGH, H1, Y0)
	Q5KSTEP(56, 24, 160, HIGH, H1, Y1)
	Q5KSTEP(64, 32, 192, HIGH, H1, Y10)
	Q5KSTEP(72, 40, 224, HIGH, H1, Y11)
	VBROADCASTSS 8(SP), Y6
	VBROADCASTSS 40(SP), Y7
	Q5KSTEP(80, 16, 256, LOW, H2, Y0)
	Q5KSTEP(88, 24, 288, LOW, H2, Y1)
	Q5KSTEP(96, 32, 320, LOW, H2, Y10)
	Q5KSTEP(104, 40, 352, LOW, H2, Y11)
	VBROADCASTSS 12(SP), Y6
	VBROADCASTSS 44(SP), Y7
	Q5KSTEP(80, 16, 384, HIGH, H3, Y0)
	Q5KSTEP(88, 24, 416, HIGH, H3, Y1)
	Q5KSTEP(96, 32, 448, HIGH, H3, Y10)
	Q5KSTEP(104, 40, 480, HIGH, H3, Y11)
	VBROADCASTSS 16(SP), Y6
	VBROADCASTSS 48(SP), Y7
	Q5KSTEP(112, 16, 512, LOW, H4, Y0)
	Q5KSTEP(120, 24, 544, LOW, H4, Y1)
	Q5KSTEP(128, 32, 576, LOW, H4, Y10)
	Q5KSTEP(136, 40, 608, LOW, H4, Y11)
	VBROADCASTSS 20(SP), Y6
	VBROADCASTSS 52(SP), Y7
	Q5KSTEP(112, 16, 640, HIGH, H5, Y0)
	Q5KSTEP(120, 24, 672, HIGH, H5, Y1)
	Q5KSTEP(128, 32, 704, HIGH, H5, Y10)
	Q5KSTEP(136, 40, 736, HIGH, H5, Y11)
	VBROADCASTSS 24(SP), Y6
	VBROADCASTSS 56(SP), Y7
	Q5KSTEP(144, 16, 768, LOW, H6, Y0)
	Q5KSTEP(152, 24, 800, LOW, H6, Y1)
	Q5KSTEP(160, 32, 832, LOW, H6, Y10)
	Q5KSTEP(168, 40, 864, LOW, H6, Y11)
	VBROADCASTSS 28(SP), Y6
	VBROADCASTSS 60(SP), Y7
	Q5KSTEP(144, 16, 896, HIGH, H7, Y0)
	Q5KSTEP(152, 24, 928, HIGH, H7, Y1)
	Q5KSTEP(160, 32, 960, HIGH, H7, Y10)
	Q5KSTEP(168, 40, 992, HIGH, H7, Y11)

	ADDQ $176, SI
	ADDQ $1024, DI
	DECQ CX
	JNZ  loop

done:
	VADDPS       Y1, Y0, Y0
	VADDPS       Y11, Y10, Y10
	VADDPS       Y10, Y0, Y0
	SUMY0
	MOVSS X0, ret+24(FP)
	RET

// The same with AVX-512: 16 values a step, two steps a sub-block.
#define LOWZ VPANDD Z15, Z8, Z8
#define HIGHZ VPSRLD $4, Z8, Z8
#define H0Z VPSLLD $4, Z9, Z9; VPANDD Z14, Z9, Z9
#define H1Z VPSLLD $3, Z9, Z9; VPANDD Z14, Z9, Z9
#define H2Z VPSLLD $2, Z9, Z9; VPANDD Z14, Z9, Z9
#define H3Z VPSLLD $1, Z9, Z9; VPANDD Z14, Z9, Z9
#define H4Z VPANDD Z14, Z9, Z9
#define H5Z VPSRLD $1, Z9, Z9; VPANDD Z14, Z9, Z9
#define H6Z VPSRLD $2, Z9, Z9; VPANDD Z14, Z9, Z9
#define H7Z VPSRLD $3, Z9, Z9; VPANDD Z14, Z9, Z9

#define Q5KSTEP512(qoff, hoff, xoff, NIB, HB, acc) \
	VPMOVZXBD   qoff(SI), Z8; \
	NIB; \
	VPMOVZXBD   hoff(SI), Z9; \
	HB; \
	VPORD       Z9, Z8, Z8; \
	VCVTDQ2PS   Z8, Z8; \
	VFMSUB213PS Z7, Z6, Z8; \
	VFMADD231PS xoff(DI), Z8, acc

// func dotQ5_KAVX512(row *byte, x *float32, nb int) float32
TEXT ·dotQ5_KAVX512(SB), NOSPLIT, $64-28
	MOVQ         row+0(FP), SI
	MOVQ         x+8(FP), DI
	MOVQ         nb+16(FP), CX
	VPXORD       Z0, Z0, Z0
	VPXORD       Z1, Z1, Z1
	VPXORD       Z10, Z10, Z10
	VPXORD       Z11, Z11, Z11
	MOVL         $15, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Z15
	MOVL         $16, AX
	VMOVD        AX, X14
	VPBROADCASTD X14, Z14
	TESTQ        CX, CX
	JZ           done512

loop512:
	MOVWLZX      (SI), AX
	VMOVD        AX, X2
	VCVTPH2PS    X2, X2
	VBROADCASTSS X2, Y2 // d
	MOVWLZX      2(SI), AX
	VMOVD        AX, X3
	VCVTPH2PS    X3, X3
	VBROADCASTSS X3, Y3 // dmin

	// Scales of sub-blocks 0-3: low 6 bits of bytes 4-7; mins: of bytes 8-11.
	// Sub-blocks 4-7: low nibbles of bytes 12-15 (mins: high nibbles) below the
	// top 2 bits of bytes 4-7 (mins: of bytes 8-11).
	MOVL  4(SI), AX
	MOVL  8(SI), BX
	MOVL  12(SI), DX
	MOVL  AX, R8
	ANDL  $0x3f3f3f3f, R8
	MOVL  BX, R9
	ANDL  $0x3f3f3f3f, R9
	MOVL  DX, R10
	ANDL  $0x0f0f0f0f, R10
	SHRL  $6, AX
	ANDL  $0x03030303, AX
	SHLL  $4, AX
	ORL   AX, R10
	SHRL  $4, DX
	ANDL  $0x0f0f0f0f, DX
	SHRL  $6, BX
	ANDL  $0x03030303, BX
	SHLL  $4, BX
	ORL   BX, DX
	SHLQ  $32, R10
	ORQ   R10, R8 // the 8 scales, a byte each
	SHLQ  $32, DX
	ORQ   DX, R9  // the 8 mins
	VMOVQ R8, X4
	VMOVQ R9, X5
	VPMOVZXBD X4, Y4
	VPMOVZXBD X5, Y5
	VCVTDQ2PS Y4, Y4
	VCVTDQ2PS Y5, Y5
	VMULPS    Y2, Y4, Y4
	VMULPS    Y3, Y5, Y5
	VMOVUPS   Y4, 0(SP)
	VMOVUPS   Y5, 32(SP)

	VBROADCASTSS 0(SP), Z6
	VBROADCASTSS 32(SP), Z7
	Q5KSTEP512(48, 16, 0, LOWZ, H0Z, Z0)
	Q5KSTEP512(64, 32, 64, LOWZ, H0Z, Z1)
	VBROADCASTSS 4(SP), Z6
	VBROADCASTSS 36(SP), Z7
	Q5KSTEP512(48, 16, 128, HIGHZ, H1Z, Z10)
	Q5KSTEP512(64, 32, 192, HIGHZ, H1Z, Z11)
	VBROADCASTSS 8(SP), Z6
	VBROADCASTSS 40(SP), Z7
	Q5KSTEP512(80, 16, 256, LOWZ, H2Z, Z0)
	Q5KSTEP512(96, 32, 320, LOWZ, H2Z, Z1)
	VBROADCASTSS 12(SP), Z6
	VBROADCASTSS 44(SP), Z7
	Q5KSTEP512(80, 16, 384, HIGHZ, H3Z, Z10)
	Q5KSTEP512(96, 32, 448, HIGHZ, H3Z, Z11)
	VBROADCASTSS 16(SP), Z6
	VBROADCASTSS 48(SP), Z7
	Q5KSTEP512(112, 16, 512, LOWZ, H4Z, Z0)
	Q5KSTEP512(128, 32, 576, LOWZ, H4Z, Z1)
	VBROADCASTSS 20(SP), Z6
	VBROADCASTSS 52(SP), Z7
	Q5KSTEP512(112, 16, 640, HIGHZ, H5Z, Z10)
	Q5KSTEP512(128, 32, 704, HIGHZ, H5Z, Z11)
	VBROADCASTSS 24(SP), Z6
	VBROADCASTSS 56(SP), Z7
	Q5KSTEP512(144, 16, 768, LOWZ, H6Z, Z0)
	Q5KSTEP512(160, 32, 832, LOWZ, H6Z, Z1)
	VBROADCASTSS 28(SP), Z6
	VBROADCASTSS 60(SP), Z7
	Q5KSTEP512(144, 16, 896, HIGHZ, H7Z, Z10)
	Q5KSTEP512(160, 32, 960, HIGHZ, H7Z, Z11)

	ADDQ $176, SI
	ADDQ $1024, DI
	DECQ CX
	JNZ  loop512

done512:
	VADDPS        Z1, Z0, Z0
	VADDPS        Z11, Z10, Z10
	VADDPS        Z10, Z0, Z0
	SUMZ0
	MOVSS X0, ret+24(FP)
	RET
