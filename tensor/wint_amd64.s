//go:build amd64 && !purego

#include "textflag.h"

// Hand-written: the activation quantizers of wint.go with AVX-512, writing the same
// codes, scales and sums as the portable ones: the same float32 divisions and
// products, VCVTPS2DQ's rounding (to nearest, ties to even, as nearestInt32) and the
// same clamps.

// AMAX16(src, acc): acc = max(acc, |16 floats at src|); Z31 holds the abs mask.
#define AMAX16(src, acc) \
	VANDPS src, Z31, Z1; \
	VMAXPS Z1, acc, acc

// HMAXZ0 reduces Z0's 16 floats to their max in X0's low lane.
#define HMAXZ0 \
	VEXTRACTF32X8 $1, Z0, Y1; \
	VMAXPS        Y1, Y0, Y0; \
	VEXTRACTF128  $1, Y0, X1; \
	VMAXPS        X1, X0, X0; \
	VPERMILPS     $0x4e, X0, X1; \
	VMAXPS        X1, X0, X0; \
	VPERMILPS     $0xb1, X0, X1; \
	VMAXPS        X1, X0, X0

// CODES16(src, dst): 16 codes of the floats at src times Z2 into the bytes at dst;
// Z29 holds 127s, Z30 −127s (int32).
#define CODES16(src, dst) \
	VMULPS    src, Z2, Z1; \
	VCVTPS2DQ Z1, Z1; \
	VPMINSD   Z29, Z1, Z1; \
	VPMAXSD   Z30, Z1, Z1; \
	VPMOVSDB  Z1, dst

// func quantizeActQ8_KAVX512(x *float32, qs *int8, d *float32, sums *int16, nb int)
TEXT ·quantizeActQ8_KAVX512(SB), NOSPLIT, $0-40
	MOVQ         x+0(FP), SI
	MOVQ         qs+8(FP), DI
	MOVQ         d+16(FP), R11
	MOVQ         sums+24(FP), R12
	MOVQ         nb+32(FP), CX
	MOVL         $0x7fffffff, AX
	VPBROADCASTD AX, Z31
	MOVL         $127, AX
	VPBROADCASTD AX, Z29
	MOVL         $-127, AX
	VPBROADCASTD AX, Z30
	MOVL         $0x80808080, AX
	VPBROADCASTD AX, Z28
	MOVL         $0x08000800, AX // 2048 as int16 pairs: 16 codes + 128 each
	VPBROADCASTD AX, Y27
	VPXORD       Z26, Z26, Z26
	TESTQ        CX, CX
	JZ           kdone

kblock:
	VPXORD Z0, Z0, Z0
	MOVQ   $0, AX

kamax:
	AMAX16((SI)(AX*4), Z0)
	ADDQ $16, AX
	CMPQ AX, $256
	JLT  kamax
	HMAXZ0
	VXORPS  X3, X3, X3
	VUCOMISS X3, X0
	JEQ     kzero

	// the first value of largest magnitude: its sign sets the scale's
	VBROADCASTSS X0, Z3
	MOVQ         $0, AX

kfind:
	VANDPS    (SI)(AX*4), Z31, Z1
	VCMPPS    $0, Z3, Z1, K1
	KMOVW     K1, BX
	TESTL     BX, BX
	JNZ       kfound
	ADDQ      $16, AX
	CMPQ      AX, $256
	JLT       kfind
	JMP       kzero // none equal: a NaN went into the max

kfound:
	TZCNTL BX, BX
	ADDQ   BX, AX
	MOVL   $0xc2fe0000, BX // −127.0
	VMOVD  BX, X4
	VDIVSS (SI)(AX*4), X4, X4 // iscale = −127/max
	VBROADCASTSS X4, Z2
	MOVL   $0x3f800000, BX // 1.0
	VMOVD  BX, X5
	VDIVSS X4, X5, X5
	VMOVSS X5, (R11)

	MOVQ $0, AX
	MOVQ $0, BX

kcodes:
	CODES16((SI)(AX*4), (DI)(BX*1))
	ADDQ $16, AX
	ADDQ $16, BX
	CMPQ AX, $256
	JLT  kcodes

	// Sums of 16: each code plus 128 is a byte VPSADBW adds in eights; pairs of
	// eights by VPHADDW, less 2048.
	MOVQ $0, AX

ksums:
	VPXORD    (DI)(AX*1), Z28, Z1
	VPSADBW   Z26, Z1, Z1
	VPMOVQW   Z1, X1
	VPXORD    64(DI)(AX*1), Z28, Z2
	VPSADBW   Z26, Z2, Z2
	VPMOVQW   Z2, X2
	VPHADDW   X2, X1, X1
	VPSUBW    X27, X1, X1
	VMOVDQU   X1, (R12)
	ADDQ      $16, R12
	ADDQ      $128, AX
	CMPQ      AX, $256
	JLT       ksums
	JMP       knext

kzero:
	MOVL    $0, (R11)
	VMOVDQU64 Z26, (DI)
	VMOVDQU64 Z26, 64(DI)
	VMOVDQU64 Z26, 128(DI)
	VMOVDQU64 Z26, 192(DI)
	VMOVDQU64 Y26, (R12)
	ADDQ      $32, R12

knext:
	ADDQ $1024, SI
	ADDQ $256, DI
	ADDQ $4, R11
	DECQ CX
	JNZ  kblock

kdone:
	VZEROUPPER
	RET

// func quantizeActQ8_0AVX512(x *float32, qs *int8, d *float32, nb int)
TEXT ·quantizeActQ8_0AVX512(SB), NOSPLIT, $0-32
	MOVQ         x+0(FP), SI
	MOVQ         qs+8(FP), DI
	MOVQ         d+16(FP), R11
	MOVQ         nb+24(FP), CX
	MOVL         $0x7fffffff, AX
	VPBROADCASTD AX, Z31
	MOVL         $127, AX
	VPBROADCASTD AX, Z29
	MOVL         $-127, AX
	VPBROADCASTD AX, Z30
	MOVL         $0x42fe0000, AX // 127.0
	VMOVD        AX, X6
	VXORPS       X7, X7, X7
	TESTQ        CX, CX
	JZ           done0

block0:
	VANDPS    (SI), Z31, Z0
	VANDPS    64(SI), Z31, Z1
	VMAXPS    Z1, Z0, Z0
	HMAXZ0
	// the scale max/127 rounded to half precision
	VDIVSS    X6, X0, X1
	VCVTPS2PH $0, X1, X1
	VCVTPH2PS X1, X1
	VMOVSS    X1, (R11)
	// id = 127/max, or 0
	VXORPS    X2, X2, X2
	VUCOMISS  X7, X0
	JEQ       zero0
	VDIVSS    X0, X6, X2

zero0:
	VBROADCASTSS X2, Z2
	CODES16((SI), (DI))
	CODES16(64(SI), 16(DI))
	ADDQ $128, SI
	ADDQ $32, DI
	ADDQ $4, R11
	DECQ CX
	JNZ  block0

done0:
	VZEROUPPER
	RET
