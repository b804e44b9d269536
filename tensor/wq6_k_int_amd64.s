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
	// The row a few blocks on, into L1, as dotQ4_KQ8VNNI does.
	PREFETCHT0 1024(SI)
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

// The same with AVX-512 VNNI: a zmm holds two groups of 32 levels, (0, 1) or (2, 3)
// of a half, built from the half's 64 ql bytes and its 32 qh bytes (in both halves of
// a zmm, shifted per half by VPSLLVW/VPSRLVW); their 64 activation codes are
// contiguous, and so are the four 16-value sub-blocks whose scales VPERMW spreads
// over the words for VPDPWSSD.

// Pair p of half h: ql nibbles in Z8 (masked), qh bits shifted into place in Z9.
#define Q6KIPAIR512(h, p, idx) \
	VPANDD     Z12, Z9, Z9; \
	VPORD      Z9, Z8, Z8; \
	VPMADDUBSW (128*h+64*p)(DI), Z8, Z8; \
	VPERMW     Z2, idx, Z10; \
	VPDPWSSD   Z10, Z8, Z0

#define Q6KIHALF512(h, idx0, idx1) \
	VMOVDQU64      (64*h)(SI), Z4; \
	VBROADCASTI64X4 (128+32*h)(SI), Z6; \
	VPANDD         Z13, Z4, Z8; \
	VPSLLVW        Z16, Z6, Z9; \
	Q6KIPAIR512(h, 0, idx0); \
	VPSRLW         $4, Z4, Z8; \
	VPANDD         Z13, Z8, Z8; \
	VPSRLVW        Z17, Z6, Z9; \
	Q6KIPAIR512(h, 1, idx1)

// func dotQ6_KQ8VNNI(row *byte, qs *int8, d *float32, sums *int16, nb int) float32
TEXT ·dotQ6_KQ8VNNI(SB), NOSPLIT, $0-44
	MOVQ         row+0(FP), SI
	MOVQ         qs+8(FP), DI
	MOVQ         d+16(FP), R11
	MOVQ         sums+24(FP), R12
	MOVQ         nb+32(FP), CX
	VXORPS       X14, X14, X14
	MOVL         $0x0f0f0f0f, AX
	VPBROADCASTD AX, Z13
	MOVL         $0x30303030, AX
	VPBROADCASTD AX, Z12
	VPMOVZXBW    q6Shifts<>+0(SB), Z16
	VPMOVZXBW    q6Shifts<>+32(SB), Z17
	VPMOVZXBW    q6ScaleIdx<>+0(SB), Z20
	VPMOVZXBW    q6ScaleIdx<>+32(SB), Z21
	VPMOVZXBW    q6ScaleIdx<>+64(SB), Z22
	VPMOVZXBW    q6ScaleIdx<>+96(SB), Z23
	TESTQ        CX, CX
	JZ           done512

loop512:
	// The row a few blocks on, into L1, as dotQ4_KQ8VNNI does.
	PREFETCHT0 1024(SI)
	PREFETCHT0 1088(SI)
	PREFETCHT0 1152(SI)
	PREFETCHT0 1216(SI)
	// the 16 scales as int16 (Z2's upper lanes clear), and 32·Σ scale·sum in Y5
	VPMOVSXBW 192(SI), Y2
	VPMADDWD  (R12), Y2, Y5
	VPSLLD    $5, Y5, Y5
	VPXORD    Z0, Z0, Z0

	Q6KIHALF512(0, Z20, Z21)
	Q6KIHALF512(1, Z22, Z23)

	VPSUBD        Z5, Z0, Z0
	VEXTRACTI64X4 $1, Z0, Y1
	VPADDD        Y1, Y0, Y0
	VEXTRACTI128  $1, Y0, X1
	VPADDD        X1, X0, X0
	VPSHUFD       $0x4e, X0, X1
	VPADDD        X1, X0, X0
	VPSHUFD       $0xb1, X0, X1
	VPADDD        X1, X0, X0
	VCVTDQ2PS     X0, X0
	MOVWLZX       208(SI), AX
	VMOVD         AX, X3
	VCVTPH2PS     X3, X3
	VMULSS        (R11), X3, X3
	VMULSS        X0, X3, X3
	VADDSS        X3, X14, X14

	ADDQ $210, SI
	ADDQ $256, DI
	ADDQ $4, R11
	ADDQ $32, R12
	DECQ CX
	JNZ  loop512

done512:
	VZEROUPPER
	MOVSS X14, ret+40(FP)
	RET

// q6Shifts: word shift counts (as bytes) putting qh's bit pairs at bits 4-5: groups
// 0 and 1 (left by 4 and 2), then 2 and 3 (right by 0 and 2).
DATA q6Shifts<>+0(SB)/8, $0x0404040404040404
DATA q6Shifts<>+8(SB)/8, $0x0404040404040404
DATA q6Shifts<>+16(SB)/8, $0x0202020202020202
DATA q6Shifts<>+24(SB)/8, $0x0202020202020202
DATA q6Shifts<>+32(SB)/8, $0
DATA q6Shifts<>+40(SB)/8, $0
DATA q6Shifts<>+48(SB)/8, $0x0202020202020202
DATA q6Shifts<>+56(SB)/8, $0x0202020202020202
GLOBL q6Shifts<>(SB), RODATA|NOPTR, $64

// q6ScaleIdx: for the pair of groups (2p, 2p+1) of half h, 8 words each of scales
// 8h+4p … 8h+4p+3 (VPERMW indices, as bytes).
DATA q6ScaleIdx<>+0(SB)/8, $0x0000000000000000
DATA q6ScaleIdx<>+8(SB)/8, $0x0101010101010101
DATA q6ScaleIdx<>+16(SB)/8, $0x0202020202020202
DATA q6ScaleIdx<>+24(SB)/8, $0x0303030303030303
DATA q6ScaleIdx<>+32(SB)/8, $0x0404040404040404
DATA q6ScaleIdx<>+40(SB)/8, $0x0505050505050505
DATA q6ScaleIdx<>+48(SB)/8, $0x0606060606060606
DATA q6ScaleIdx<>+56(SB)/8, $0x0707070707070707
DATA q6ScaleIdx<>+64(SB)/8, $0x0808080808080808
DATA q6ScaleIdx<>+72(SB)/8, $0x0909090909090909
DATA q6ScaleIdx<>+80(SB)/8, $0x0a0a0a0a0a0a0a0a
DATA q6ScaleIdx<>+88(SB)/8, $0x0b0b0b0b0b0b0b0b
DATA q6ScaleIdx<>+96(SB)/8, $0x0c0c0c0c0c0c0c0c
DATA q6ScaleIdx<>+104(SB)/8, $0x0d0d0d0d0d0d0d0d
DATA q6ScaleIdx<>+112(SB)/8, $0x0e0e0e0e0e0e0e0e
DATA q6ScaleIdx<>+120(SB)/8, $0x0f0f0f0f0f0f0f0f
GLOBL q6ScaleIdx<>(SB), RODATA|NOPTR, $128
