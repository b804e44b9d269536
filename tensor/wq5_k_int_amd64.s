//go:build amd64 && !purego

#include "textflag.h"
#include "wdot_amd64.h"

// Hand-written: Q5_K's integer dot (wq5_k_int.go's dotQ5_KQ8) with AVX2, as
// wq4_k_int_amd64.s's Q4_K with each nibble's fifth bit from qh (bits 2c and 2c+1 of
// qh[l] for chunk c): levels 0…31, whose VPMADDUBSW pairs still fit in int16. The
// integer sums are exact, the float part is dotQ5_KQ8's operation by operation, so
// the result has its bits.

// Chunk c: codes at 48+32c(SI), qh in Y7, bytes 0x10 in Y4, activations at 64c(DI);
// scales 2c and 2c+1 as int16 at 4c(SP) and 4c+2(SP).
#define Q5KICHUNK(c) \
	VMOVDQU      (48+32*c)(SI), Y8; \
	VPSRLW       $4, Y8, Y9; \
	VPAND        Y15, Y8, Y8; \
	VPAND        Y15, Y9, Y9; \
	VPSRLW       $(2*c), Y7, Y12; \
	VPSLLW       $4, Y12, Y13; \
	VPAND        Y4, Y13, Y13; \
	VPOR         Y13, Y8, Y8; \
	VPSLLW       $3, Y12, Y13; \
	VPAND        Y4, Y13, Y13; \
	VPOR         Y13, Y9, Y9; \
	VPMADDUBSW   (64*c)(DI), Y8, Y8; \
	VPMADDUBSW   (64*c+32)(DI), Y9, Y9; \
	VPBROADCASTW (4*c)(SP), Y10; \
	VPBROADCASTW (4*c+2)(SP), Y11; \
	VPMADDWD     Y10, Y8, Y8; \
	VPMADDWD     Y11, Y9, Y9; \
	VPADDD       Y8, Y0, Y0; \
	VPADDD       Y9, Y1, Y1

// func dotQ5_KQ8AVX2(row *byte, qs *int8, d *float32, sums *int16, nb int) float32
TEXT ·dotQ5_KQ8AVX2(SB), NOSPLIT, $16-44
	MOVQ         row+0(FP), SI
	MOVQ         qs+8(FP), DI
	MOVQ         d+16(FP), R11
	MOVQ         sums+24(FP), R12
	MOVQ         nb+32(FP), CX
	VXORPS       X14, X14, X14
	MOVL         $0x0f0f0f0f, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15
	MOVL         $0x10101010, AX
	VMOVD        AX, X4
	VPBROADCASTD X4, Y4
	TESTQ        CX, CX
	JZ           done

loop:
	// The row a few blocks on, into L1, as dotQ4_KQ8VNNI does.
	PREFETCHT0 1024(SI)
	KSCALES // the 8 scales in R8, the 8 mins in R9, a byte each
	VMOVQ R8, X2
	VPMOVZXBW X2, X2
	VMOVDQU   X2, 0(SP) // scales as int16

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

	VPXOR   Y0, Y0, Y0
	VPXOR   Y1, Y1, Y1
	VMOVDQU 16(SI), Y7
	Q5KICHUNK(0)
	Q5KICHUNK(1)
	Q5KICHUNK(2)
	Q5KICHUNK(3)

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

	ADDQ $176, SI
	ADDQ $256, DI
	ADDQ $4, R11
	ADDQ $32, R12
	DECQ CX
	JNZ  loop

done:
	VZEROUPPER
	MOVSS X14, ret+40(FP)
	RET

// The same with AVX-512 VNNI, as wq4_k_int_amd64.s's dotQ4_KQ8VNNI: a chunk's 64
// levels in a zmm (low nibbles with bit 2c of qh, then high nibbles with bit 2c+1),
// VPMADDUBSW, then VPDPWSSD with the two scales spread by VPERMW.

// Chunk c; Z7 holds qh in both halves, Z16 the shift counts 2c / 2c+1 … (per chunk,
// idx), Z4 the 8 scales as int16, Z15 bytes 0x0f, Z17 bytes 0x10.
#define Q5KICHUNK512(c, sidx, shifts) \
	VMOVDQU      (48+32*c)(SI), Y8; \
	VPSRLW       $4, Y8, Y9; \
	VINSERTI64X4 $1, Y9, Z8, Z8; \
	VPANDD       Z15, Z8, Z8; \
	VPSRLVW      shifts, Z7, Z9; \
	VPSLLW       $4, Z9, Z9; \
	VPANDD       Z17, Z9, Z9; \
	VPORD        Z9, Z8, Z8; \
	VPMADDUBSW   (64*c)(DI), Z8, Z8; \
	VPERMW       Z4, sidx, Z10; \
	VPDPWSSD     Z10, Z8, Z0

// func dotQ5_KQ8VNNI(row *byte, qs *int8, d *float32, sums *int16, nb int) float32
TEXT ·dotQ5_KQ8VNNI(SB), NOSPLIT, $0-44
	MOVQ         row+0(FP), SI
	MOVQ         qs+8(FP), DI
	MOVQ         d+16(FP), R11
	MOVQ         sums+24(FP), R12
	MOVQ         nb+32(FP), CX
	VXORPS       X14, X14, X14
	MOVL         $0x0f0f0f0f, AX
	VPBROADCASTD AX, Z15
	MOVL         $0x10101010, AX
	VPBROADCASTD AX, Z17
	VPMOVZXBW    q5ChunkScaleIdx<>+0(SB), Z20
	VPMOVZXBW    q5ChunkScaleIdx<>+32(SB), Z21
	VPMOVZXBW    q5ChunkScaleIdx<>+64(SB), Z22
	VPMOVZXBW    q5ChunkScaleIdx<>+96(SB), Z23
	VPMOVZXBW    q5Shifts<>+0(SB), Z24
	VPMOVZXBW    q5Shifts<>+32(SB), Z25
	VPMOVZXBW    q5Shifts<>+64(SB), Z26
	VPMOVZXBW    q5Shifts<>+96(SB), Z27
	TESTQ        CX, CX
	JZ           done512

loop512:
	// The row a few blocks on, into L1, as dotQ4_KQ8VNNI does.
	PREFETCHT0 1024(SI)
	KSCALES // the 8 scales in R8, the 8 mins in R9, a byte each
	VMOVQ     R8, X4
	VPMOVZXBW X4, X4

	VMOVQ     R9, X5
	VPMOVZXBW X5, X5
	VMOVDQU   (R12), X6
	VMOVDQU   16(R12), X3
	VPHADDW   X3, X6, X6
	VPMADDWD  X6, X5, X5
	VPSHUFD   $0x4e, X5, X6
	VPADDD    X6, X5, X5
	VPSHUFD   $0xb1, X5, X6
	VPADDD    X6, X5, X5

	VBROADCASTI64X4 16(SI), Z7
	VPXORD Z0, Z0, Z0
	Q5KICHUNK512(0, Z20, Z24)
	Q5KICHUNK512(1, Z21, Z25)
	Q5KICHUNK512(2, Z22, Z26)
	Q5KICHUNK512(3, Z23, Z27)

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

	ADDQ $176, SI
	ADDQ $256, DI
	ADDQ $4, R11
	ADDQ $32, R12
	DECQ CX
	JNZ  loop512

done512:
	VZEROUPPER
	MOVSS X14, ret+40(FP)
	RET

// q5ChunkScaleIdx: for chunk c, 16 words of scale 2c then 16 of 2c+1 (VPERMW indices,
// as bytes).
DATA q5ChunkScaleIdx<>+0(SB)/8, $0
DATA q5ChunkScaleIdx<>+8(SB)/8, $0
DATA q5ChunkScaleIdx<>+16(SB)/8, $0x0101010101010101
DATA q5ChunkScaleIdx<>+24(SB)/8, $0x0101010101010101
DATA q5ChunkScaleIdx<>+32(SB)/8, $0x0202020202020202
DATA q5ChunkScaleIdx<>+40(SB)/8, $0x0202020202020202
DATA q5ChunkScaleIdx<>+48(SB)/8, $0x0303030303030303
DATA q5ChunkScaleIdx<>+56(SB)/8, $0x0303030303030303
DATA q5ChunkScaleIdx<>+64(SB)/8, $0x0404040404040404
DATA q5ChunkScaleIdx<>+72(SB)/8, $0x0404040404040404
DATA q5ChunkScaleIdx<>+80(SB)/8, $0x0505050505050505
DATA q5ChunkScaleIdx<>+88(SB)/8, $0x0505050505050505
DATA q5ChunkScaleIdx<>+96(SB)/8, $0x0606060606060606
DATA q5ChunkScaleIdx<>+104(SB)/8, $0x0606060606060606
DATA q5ChunkScaleIdx<>+112(SB)/8, $0x0707070707070707
DATA q5ChunkScaleIdx<>+120(SB)/8, $0x0707070707070707
GLOBL q5ChunkScaleIdx<>(SB), RODATA|NOPTR, $128

// q5Shifts: for chunk c, 16 words shifting qh right by 2c, then 16 by 2c+1 (as bytes).
DATA q5Shifts<>+0(SB)/8, $0
DATA q5Shifts<>+8(SB)/8, $0
DATA q5Shifts<>+16(SB)/8, $0x0101010101010101
DATA q5Shifts<>+24(SB)/8, $0x0101010101010101
DATA q5Shifts<>+32(SB)/8, $0x0202020202020202
DATA q5Shifts<>+40(SB)/8, $0x0202020202020202
DATA q5Shifts<>+48(SB)/8, $0x0303030303030303
DATA q5Shifts<>+56(SB)/8, $0x0303030303030303
DATA q5Shifts<>+64(SB)/8, $0x0404040404040404
DATA q5Shifts<>+72(SB)/8, $0x0404040404040404
DATA q5Shifts<>+80(SB)/8, $0x0505050505050505
DATA q5Shifts<>+88(SB)/8, $0x0505050505050505
DATA q5Shifts<>+96(SB)/8, $0x0606060606060606
DATA q5Shifts<>+104(SB)/8, $0x0606060606060606
DATA q5Shifts<>+112(SB)/8, $0x0707070707070707
DATA q5Shifts<>+120(SB)/8, $0x0707070707070707
GLOBL q5Shifts<>(SB), RODATA|NOPTR, $128
