//go:build amd64 && !purego

#include "textflag.h"
#include "wdot_amd64.h"

// Hand-written: Q4_K's dot on the blocks (wq4_k.go's DotQ4_K). Per super-block of 256
// values the 6-bit scales and mins are unpacked in general registers (ggml's utmp
// trick: four 32-bit words, three masks), widened to float32 and multiplied by d and
// dmin into eight d·sc and eight dmin·m on the stack. Each 8 values then cost a zero-
// extending load of their 8 code bytes, the nibble (AND 15 or shift right 4), a
// conversion, w = d·sc·q − dmin·m (one FMSUB) and acc += w·x (one FMA), into four
// accumulators.

// Sub-block j (32 values) of the super-block; q bytes at qoff(SI), x at xoff(DI); NIB
// picks the nibble of Y8 in place.
#define Q4KSTEP(qoff, xoff, NIB, acc) \
	VPMOVZXBD   qoff(SI), Y8; \
	NIB; \
	VCVTDQ2PS   Y8, Y8; \
	VFMSUB213PS Y7, Y6, Y8; \
	VFMADD231PS xoff(DI), Y8, acc

#define LOW VPAND Y15, Y8, Y8
#define HIGH VPSRLD $4, Y8, Y8

#define Q4KSUB(j, qoff, xoff, NIB) \
	VBROADCASTSS (4*(j))(SP), Y6; \
	VBROADCASTSS (32+4*(j))(SP), Y7; \
	Q4KSTEP(qoff, xoff, NIB, Y0); \
	Q4KSTEP(qoff+8, xoff+32, NIB, Y1); \
	Q4KSTEP(qoff+16, xoff+64, NIB, Y10); \
	Q4KSTEP(qoff+24, xoff+96, NIB, Y11)

// Chunk c: 32 code bytes at 16+32c, low nibbles sub-block 2c, high nibbles 2c+1.
#define Q4KCHUNK(c) \
	Q4KSUB(2*c, 16+32*c, 256*c, LOW); \
	Q4KSUB(2*c+1, 16+32*c, 256*c+128, HIGH)

// func dotQ4_KAVX2(row *byte, x *float32, nb int) float32
TEXT ·dotQ4_KAVX2(SB), NOSPLIT, $64-28
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

	KSCALES // the 8 scales in R8, the 8 mins in R9, a byte each
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

	Q4KCHUNK(0)
	Q4KCHUNK(1)
	Q4KCHUNK(2)
	Q4KCHUNK(3)

	ADDQ $144, SI
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
#define LOW512 VPANDD Z15, Z8, Z8
#define HIGH512 VPSRLD $4, Z8, Z8

#define Q4KSTEP512(qoff, xoff, NIB, acc) \
	VPMOVZXBD   qoff(SI), Z8; \
	NIB; \
	VCVTDQ2PS   Z8, Z8; \
	VFMSUB213PS Z7, Z6, Z8; \
	VFMADD231PS xoff(DI), Z8, acc

// func dotQ4_KAVX512(row *byte, x *float32, nb int) float32
TEXT ·dotQ4_KAVX512(SB), NOSPLIT, $64-28
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

	KSCALES // the 8 scales in R8, the 8 mins in R9, a byte each
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
	Q4KSTEP512(16, 0, LOW512, Z0)
	Q4KSTEP512(32, 64, LOW512, Z1)
	VBROADCASTSS 4(SP), Z6
	VBROADCASTSS 36(SP), Z7
	Q4KSTEP512(16, 128, HIGH512, Z10)
	Q4KSTEP512(32, 192, HIGH512, Z11)
	VBROADCASTSS 8(SP), Z6
	VBROADCASTSS 40(SP), Z7
	Q4KSTEP512(48, 256, LOW512, Z0)
	Q4KSTEP512(64, 320, LOW512, Z1)
	VBROADCASTSS 12(SP), Z6
	VBROADCASTSS 44(SP), Z7
	Q4KSTEP512(48, 384, HIGH512, Z10)
	Q4KSTEP512(64, 448, HIGH512, Z11)
	VBROADCASTSS 16(SP), Z6
	VBROADCASTSS 48(SP), Z7
	Q4KSTEP512(80, 512, LOW512, Z0)
	Q4KSTEP512(96, 576, LOW512, Z1)
	VBROADCASTSS 20(SP), Z6
	VBROADCASTSS 52(SP), Z7
	Q4KSTEP512(80, 640, HIGH512, Z10)
	Q4KSTEP512(96, 704, HIGH512, Z11)
	VBROADCASTSS 24(SP), Z6
	VBROADCASTSS 56(SP), Z7
	Q4KSTEP512(112, 768, LOW512, Z0)
	Q4KSTEP512(128, 832, LOW512, Z1)
	VBROADCASTSS 28(SP), Z6
	VBROADCASTSS 60(SP), Z7
	Q4KSTEP512(112, 896, HIGH512, Z10)
	Q4KSTEP512(128, 960, HIGH512, Z11)

	ADDQ $144, SI
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

// dequantQ4_KAVX512 is DequantQ4_K's rows with the kernel above, storing the values
// w = d·sc·q − dmin·m instead of multiplying them with x (the pre-fill panels).
#define Q4KWIDEN512(qoff, doff, NIB) \
	VPMOVZXBD   qoff(SI), Z8; \
	NIB; \
	VCVTDQ2PS   Z8, Z8; \
	VFMSUB213PS Z7, Z6, Z8; \
	VMOVUPS     Z8, doff(DI)

// func dequantQ4_KAVX512(dst *float32, src *byte, nb int)
TEXT ·dequantQ4_KAVX512(SB), NOSPLIT, $64-24
	MOVQ         dst+0(FP), DI
	MOVQ         src+8(FP), SI
	MOVQ         nb+16(FP), CX
	MOVL         $15, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Z15
	TESTQ        CX, CX
	JZ           wdone

wloop:
	MOVWLZX      (SI), AX
	VMOVD        AX, X2
	VCVTPH2PS    X2, X2
	VBROADCASTSS X2, Y2 // d
	MOVWLZX      2(SI), AX
	VMOVD        AX, X3
	VCVTPH2PS    X3, X3
	VBROADCASTSS X3, Y3 // dmin

	KSCALES // the 8 scales in R8, the 8 mins in R9, a byte each
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
	Q4KWIDEN512(16, 0, LOW512)
	Q4KWIDEN512(32, 64, LOW512)
	VBROADCASTSS 4(SP), Z6
	VBROADCASTSS 36(SP), Z7
	Q4KWIDEN512(16, 128, HIGH512)
	Q4KWIDEN512(32, 192, HIGH512)
	VBROADCASTSS 8(SP), Z6
	VBROADCASTSS 40(SP), Z7
	Q4KWIDEN512(48, 256, LOW512)
	Q4KWIDEN512(64, 320, LOW512)
	VBROADCASTSS 12(SP), Z6
	VBROADCASTSS 44(SP), Z7
	Q4KWIDEN512(48, 384, HIGH512)
	Q4KWIDEN512(64, 448, HIGH512)
	VBROADCASTSS 16(SP), Z6
	VBROADCASTSS 48(SP), Z7
	Q4KWIDEN512(80, 512, LOW512)
	Q4KWIDEN512(96, 576, LOW512)
	VBROADCASTSS 20(SP), Z6
	VBROADCASTSS 52(SP), Z7
	Q4KWIDEN512(80, 640, HIGH512)
	Q4KWIDEN512(96, 704, HIGH512)
	VBROADCASTSS 24(SP), Z6
	VBROADCASTSS 56(SP), Z7
	Q4KWIDEN512(112, 768, LOW512)
	Q4KWIDEN512(128, 832, LOW512)
	VBROADCASTSS 28(SP), Z6
	VBROADCASTSS 60(SP), Z7
	Q4KWIDEN512(112, 896, HIGH512)
	Q4KWIDEN512(128, 960, HIGH512)

	ADDQ $144, SI
	ADDQ $1024, DI
	DECQ CX
	JNZ  wloop

wdone:
	VZEROUPPER
	RET
