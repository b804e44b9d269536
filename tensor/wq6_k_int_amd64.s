//go:build amd64 && !purego

#include "textflag.h"

// Hand-written: Q6_K's integer dot (wq6_k_int.go's dotQ6_KQ8) with AVX2. The 6-bit
// levels are taken unsigned (0…63) so that VPMADDUBSW multiplies them with the
// activation codes (pairs fit in int16); VPMADDWD applies the 16-value sub-blocks'
// scales, two per 32 values. The offset 32 comes off once per super-block as
// 32·Σ scale·(sum of 16 codes), from the row's sums. The integer sum is exact and
// reduced to a scalar; the float part is dotQ6_KQ8's, so the result has its bits.

// Value group k (32 values) of half h: level bits in Y8, its activations at
// 128h+32k(DI), scales 8h+2k and 8h+2k+1 as int16 at 2(8h+2k)(SP).
#define Q6KIGROUP(h, k) \
	VPMADDUBSW   (128*h+32*k)(DI), Y8, Y8; \
	VPBROADCASTW (16*h+4*k)(SP), X10; \
	VPBROADCASTW (16*h+4*k+2)(SP), X11; \
	VINSERTI128  $1, X11, Y10, Y10; \
	VPMADDWD     Y10, Y8, Y8; \
	VPADDD       Y8, Y0, Y0

// Half h: ql[64h:64h+64] in Y4 (low 32) and Y5, qh[32h:32h+32] in Y6. Y13 holds
// bytes 0x0f, Y12 bytes 0x30.
#define Q6KIHALF(h) \
	VMOVDQU     (64*h)(SI), Y4; \
	VMOVDQU     (64*h+32)(SI), Y5; \
	VMOVDQU     (128+32*h)(SI), Y6; \
	VPAND       Y13, Y4, Y8; \
	VPSLLW      $4, Y6, Y9; \
	VPAND       Y12, Y9, Y9; \
	VPOR        Y9, Y8, Y8; \
	Q6KIGROUP(h, 0); \
	VPAND       Y13, Y5, Y8; \
	VPSLLW      $2, Y6, Y9; \
	VPAND       Y12, Y9, Y9; \
	VPOR        Y9, Y8, Y8; \
	Q6KIGROUP(h, 1); \
	VPSRLW      $4, Y4, Y8; \
	VPAND       Y13, Y8, Y8; \
	VPAND       Y12, Y6, Y9; \
	VPOR        Y9, Y8, Y8; \
	Q6KIGROUP(h, 2); \
	VPSRLW      $4, Y5, Y8; \
	VPAND       Y13, Y8, Y8; \
	VPSRLW      $2, Y6, Y9; \
	VPAND       Y12, Y9, Y9; \
	VPOR        Y9, Y8, Y8; \
	Q6KIGROUP(h, 3)

// func dotQ6_KQ8AVX2(row *byte, qs *int8, d *float32, sums *int16, nb int) float32
TEXT ·dotQ6_KQ8AVX2(SB), NOSPLIT, $32-44
	MOVQ         row+0(FP), SI
	MOVQ         qs+8(FP), DI
	MOVQ         d+16(FP), R11
	MOVQ         sums+24(FP), R12
	MOVQ         nb+32(FP), CX
	VXORPS       X14, X14, X14
	MOVL         $0x0f0f0f0f, AX
	VMOVD        AX, X13
	VPBROADCASTD X13, Y13
	MOVL         $0x30303030, AX
	VMOVD        AX, X12
	VPBROADCASTD X12, Y12
	TESTQ        CX, CX
	JZ           done

loop:
	// the 16 scales as int16, and 32·Σ scale·sum into Y0 (negated)
	VPMOVSXBW 192(SI), Y2
	VMOVDQU   Y2, 0(SP)
	VPMADDWD  (R12), Y2, Y2
	VPSLLD    $5, Y2, Y2
	VPXOR     Y0, Y0, Y0
	VPSUBD    Y2, Y0, Y0

	Q6KIHALF(0)
	Q6KIHALF(1)

	VEXTRACTI128 $1, Y0, X1
	VPADDD       X1, X0, X0
	VPSHUFD      $0x4e, X0, X1
	VPADDD       X1, X0, X0
	VPSHUFD      $0xb1, X0, X1
	VPADDD       X1, X0, X0
	VCVTDQ2PS    X0, X0
	MOVWLZX      208(SI), AX
	VMOVD        AX, X2
	VCVTPH2PS    X2, X2
	VMULSS       (R11), X2, X2
	VMULSS       X0, X2, X2
	VADDSS       X2, X14, X14

	ADDQ $210, SI
	ADDQ $256, DI
	ADDQ $4, R11
	ADDQ $32, R12
	DECQ CX
	JNZ  loop

done:
	VZEROUPPER
	MOVSS X14, ret+40(FP)
	RET
