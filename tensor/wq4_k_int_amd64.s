//go:build amd64 && !purego

#include "textflag.h"
#include "wdot_amd64.h"

// Hand-written: Q4_K's integer dot (wq4_k_int.go's dotQ4_KQ8) with AVX2. Per super-
// block: the scales and mins unpacked as in wq4_k_amd64.s; each 32 code bytes give
// the low and the high nibbles, each multiplied with its 32 activation codes by
// VPMADDUBSW (unsigned 0…15 times signed: pairs fit in int16) and by the sub-block's
// scale with VPMADDWD into int32; the mins times the pairwise sums of the row's
// sums of 16. Both integer sums are exact and reduced to scalars; the float part is
// dotQ4_KQ8's, operation by operation (scalar, no fused multiply-add), so the result
// has its bits.

// Chunk c: codes at 16+32c(SI), activations at 64c(DI); scales 2c and 2c+1 as int16
// at 4c(SP) and 4c+2(SP).
#define Q4KICHUNK(c) \
	VMOVDQU      (16+32*c)(SI), Y8; \
	VPSRLW       $4, Y8, Y9; \
	VPAND        Y15, Y8, Y8; \
	VPAND        Y15, Y9, Y9; \
	VPMADDUBSW   (64*c)(DI), Y8, Y8; \
	VPMADDUBSW   (64*c+32)(DI), Y9, Y9; \
	VPBROADCASTW (4*c)(SP), Y10; \
	VPBROADCASTW (4*c+2)(SP), Y11; \
	VPMADDWD     Y10, Y8, Y8; \
	VPMADDWD     Y11, Y9, Y9; \
	VPADDD       Y8, Y0, Y0; \
	VPADDD       Y9, Y1, Y1

// func dotQ4_KQ8AVX2(row *byte, qs *int8, d *float32, sums *int16, nb int) float32
TEXT ·dotQ4_KQ8AVX2(SB), NOSPLIT, $16-44
	MOVQ         row+0(FP), SI
	MOVQ         qs+8(FP), DI
	MOVQ         d+16(FP), R11
	MOVQ         sums+24(FP), R12
	MOVQ         nb+32(FP), CX
	VXORPS       X14, X14, X14
	MOVL         $0x0f0f0f0f, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15
	TESTQ        CX, CX
	JZ           done

loop:
	// The row a few blocks on, into L1, as dotQ4_KQ8VNNI does.
	PREFETCHT0 1024(SI)
	KSCALES // the 8 scales in R8, the 8 mins in R9, a byte each
	VMOVQ R8, X4
	VPMOVZXBW X4, X4
	VMOVDQU   X4, 0(SP) // scales as int16

	// msum = Σ_j m_j·(sums[2j] + sums[2j+1])
	VMOVQ     R9, X5
	VPMOVZXBW X5, X5
	VMOVDQU   (R12), X6
	VMOVDQU   16(R12), X7
	VPHADDW   X7, X6, X6
	VPMADDWD  X6, X5, X5
	VPSHUFD   $0x4e, X5, X6
	VPADDD    X6, X5, X5
	VPSHUFD   $0xb1, X5, X6
	VPADDD    X6, X5, X5

	VPXOR Y0, Y0, Y0
	VPXOR Y1, Y1, Y1
	Q4KICHUNK(0)
	Q4KICHUNK(1)
	Q4KICHUNK(2)
	Q4KICHUNK(3)

	// isum, then (dₐ·d)·isum − (dₐ·dmin)·msum into the total
	VPADDD       Y1, Y0, Y0
	VEXTRACTI128 $1, Y0, X1
	VPADDD       X1, X0, X0
	VPSHUFD      $0x4e, X0, X1
	VPADDD       X1, X0, X0
	VPSHUFD      $0xb1, X0, X1
	VPADDD       X1, X0, X0
	VCVTDQ2PS    X0, X0
	VCVTDQ2PS    X5, X5
	MOVWLZX      (SI), AX
	VMOVD        AX, X2
	VCVTPH2PS    X2, X2
	MOVWLZX      2(SI), AX
	VMOVD        AX, X3
	VCVTPH2PS    X3, X3
	VMOVSS       (R11), X6
	VMULSS       X6, X2, X2
	VMULSS       X6, X3, X3
	VMULSS       X0, X2, X2
	VMULSS       X5, X3, X3
	VSUBSS       X3, X2, X2
	VADDSS       X2, X14, X14

	ADDQ $144, SI
	ADDQ $256, DI
	ADDQ $4, R11
	ADDQ $32, R12
	DECQ CX
	JNZ  loop

done:
	VZEROUPPER
	MOVSS X14, ret+40(FP)
	RET

// The same with AVX-512 VNNI: a zmm holds a chunk's 64 levels (low nibbles, then
// high nibbles: sub-blocks 2c and 2c+1), VPMADDUBSW multiplies them with the chunk's
// 64 activation codes, and VPDPWSSD applies the two scales (spread over their words by
// VPERMW) and accumulates, exactly as the AVX2 kernel's int32 sums.

#define Q4KICHUNK512(c, idx) \
	VMOVDQU      (16+32*c)(SI), Y8; \
	VPSRLW       $4, Y8, Y9; \
	VINSERTI64X4 $1, Y9, Z8, Z8; \
	VPANDD       Z15, Z8, Z8; \
	VPMADDUBSW   (64*c)(DI), Z8, Z8; \
	VPERMW       Z4, idx, Z10; \
	VPDPWSSD     Z10, Z8, Z0

// func dotQ4_KQ8VNNI(row *byte, qs *int8, d *float32, sums *int16, nb int) float32
TEXT ·dotQ4_KQ8VNNI(SB), NOSPLIT, $0-44
	MOVQ         row+0(FP), SI
	MOVQ         qs+8(FP), DI
	MOVQ         d+16(FP), R11
	MOVQ         sums+24(FP), R12
	MOVQ         nb+32(FP), CX
	VXORPS       X14, X14, X14
	MOVL         $0x0f0f0f0f, AX
	VPBROADCASTD AX, Z15
	VPMOVZXBW    chunkScaleIdx<>+0(SB), Z20
	VPMOVZXBW    chunkScaleIdx<>+32(SB), Z21
	VPMOVZXBW    chunkScaleIdx<>+64(SB), Z22
	VPMOVZXBW    chunkScaleIdx<>+96(SB), Z23
	TESTQ        CX, CX
	JZ           done512

loop512:
	// The row a few blocks on, into L1: one core's few streams alone left this dot
	// waiting on memory at half the bandwidth (docs/PERFORMANCE.md).
	PREFETCHT0 1024(SI)
	PREFETCHT0 1088(SI)
	PREFETCHT0 1152(SI)
	KSCALES // the 8 scales in R8, the 8 mins in R9, a byte each
	VMOVQ     R8, X4
	VPMOVZXBW X4, X4 // the 8 scales as int16; Z4's upper lanes clear

	VMOVQ     R9, X5
	VPMOVZXBW X5, X5
	VMOVDQU   (R12), X6
	VMOVDQU   16(R12), X7
	VPHADDW   X7, X6, X6
	VPMADDWD  X6, X5, X5
	VPSHUFD   $0x4e, X5, X6
	VPADDD    X6, X5, X5
	VPSHUFD   $0xb1, X5, X6
	VPADDD    X6, X5, X5

	VPXORD Z0, Z0, Z0
	Q4KICHUNK512(0, Z20)
	Q4KICHUNK512(1, Z21)
	Q4KICHUNK512(2, Z22)
	Q4KICHUNK512(3, Z23)

	VEXTRACTI64X4 $1, Z0, Y1
	VPADDD        Y1, Y0, Y0
	VEXTRACTI128  $1, Y0, X1
	VPADDD        X1, X0, X0
	VPSHUFD       $0x4e, X0, X1
	VPADDD        X1, X0, X0
	VPSHUFD       $0xb1, X0, X1
	VPADDD        X1, X0, X0
	VCVTDQ2PS     X0, X0
	VCVTDQ2PS     X5, X5
	MOVWLZX       (SI), AX
	VMOVD         AX, X2
	VCVTPH2PS     X2, X2
	MOVWLZX       2(SI), AX
	VMOVD         AX, X3
	VCVTPH2PS     X3, X3
	VMOVSS        (R11), X6
	VMULSS        X6, X2, X2
	VMULSS        X6, X3, X3
	VMULSS        X0, X2, X2
	VMULSS        X5, X3, X3
	VSUBSS        X3, X2, X2
	VADDSS        X2, X14, X14

	ADDQ $144, SI
	ADDQ $256, DI
	ADDQ $4, R11
	ADDQ $32, R12
	DECQ CX
	JNZ  loop512

done512:
	VZEROUPPER
	MOVSS X14, ret+40(FP)
	RET

// chunkScaleIdx: for chunk c, 16 words of scale 2c then 16 of 2c+1 (VPERMW indices,
// as bytes).
DATA chunkScaleIdx<>+0(SB)/8, $0
DATA chunkScaleIdx<>+8(SB)/8, $0
DATA chunkScaleIdx<>+16(SB)/8, $0x0101010101010101
DATA chunkScaleIdx<>+24(SB)/8, $0x0101010101010101
DATA chunkScaleIdx<>+32(SB)/8, $0x0202020202020202
DATA chunkScaleIdx<>+40(SB)/8, $0x0202020202020202
DATA chunkScaleIdx<>+48(SB)/8, $0x0303030303030303
DATA chunkScaleIdx<>+56(SB)/8, $0x0303030303030303
DATA chunkScaleIdx<>+64(SB)/8, $0x0404040404040404
DATA chunkScaleIdx<>+72(SB)/8, $0x0404040404040404
DATA chunkScaleIdx<>+80(SB)/8, $0x0505050505050505
DATA chunkScaleIdx<>+88(SB)/8, $0x0505050505050505
DATA chunkScaleIdx<>+96(SB)/8, $0x0606060606060606
DATA chunkScaleIdx<>+104(SB)/8, $0x0606060606060606
DATA chunkScaleIdx<>+112(SB)/8, $0x0707070707070707
DATA chunkScaleIdx<>+120(SB)/8, $0x0707070707070707
GLOBL chunkScaleIdx<>(SB), RODATA|NOPTR, $128
