//go:build amd64 && !purego

#include "textflag.h"
#include "wdot_amd64.h"

// Hand-written: Q6_K's dot on the blocks (wq6_k.go's DotQ6_K). Per super-block the 16
// int8 sub-block scales are widened and multiplied by d into sixteen float32 on the
// stack. Each 8 values then take their low nibbles (AND 15 or shift right 4 of the
// zero-extended ql bytes) and their high bit pair (a shift of the zero-extended qh
// bytes, AND 0x30), OR, subtract 32, convert, multiply by d·scale and add q·x into one
// of four accumulators. A run of 8 positions l loads its ql and qh bytes once for the
// four values 32k+l that share them.

#define LO0 VPAND Y15, Y2, Y8
#define LO1 VPAND Y15, Y3, Y8
#define LO2 VPSRLD $4, Y2, Y8
#define LO3 VPSRLD $4, Y3, Y8
#define HI0 VPSLLD $4, Y4, Y9; VPAND Y13, Y9, Y9
#define HI1 VPSLLD $2, Y4, Y9; VPAND Y13, Y9, Y9
#define HI2 VPAND Y13, Y4, Y9
#define HI3 VPSRLD $2, Y4, Y9; VPAND Y13, Y9, Y9

// The qh bytes of 8 positions into Y4, their two ql byte runs into Y2 and Y3.
#define Q6KLOAD(qh, qla, qlb) \
	VPMOVZXBD qh(SI), Y4; \
	VPMOVZXBD qla(SI), Y2; \
	VPMOVZXBD qlb(SI), Y3

// 8 values: level from LO and HI, scale d·scale at soff(SP), x at xoff(DI).
#define Q6KSTEP(LO, HI, soff, xoff, acc) \
	LO; \
	HI; \
	VPOR         Y9, Y8, Y8; \
	VPSUBD       Y14, Y8, Y8; \
	VCVTDQ2PS    Y8, Y8; \
	VBROADCASTSS soff(SP), Y6; \
	VMULPS       Y6, Y8, Y8; \
	VFMADD231PS  xoff(DI), Y8, acc

// func dotQ6_KAVX2(row *byte, x *float32, nb int) float32
TEXT ·dotQ6_KAVX2(SB), NOSPLIT, $64-28
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
	MOVL         $0x30, AX
	VMOVD        AX, X13
	VPBROADCASTD X13, Y13
	MOVL         $32, AX
	VMOVD        AX, X14
	VPBROADCASTD X14, Y14
	TESTQ        CX, CX
	JZ           done

loop:
	MOVWLZX      208(SI), AX
	VMOVD        AX, X5
	VCVTPH2PS    X5, X5
	VBROADCASTSS X5, Y5 // d
	VPMOVSXBD    192(SI), Y2
	VPMOVSXBD    200(SI), Y3
	VCVTDQ2PS    Y2, Y2
	VCVTDQ2PS    Y3, Y3
	VMULPS       Y5, Y2, Y2
	VMULPS       Y5, Y3, Y3
	VMOVUPS      Y2, 0(SP)
	VMOVUPS      Y3, 32(SP)

	Q6KLOAD(128, 0, 32)
	Q6KSTEP(LO0, HI0, 0, 0, Y0)
	Q6KSTEP(LO1, HI1, 8, 128, Y1)
	Q6KSTEP(LO2, HI2, 16, 256, Y10)
	Q6KSTEP(LO3, HI3, 24, 384, Y11)
	Q6KLOAD(136, 8, 40)
	Q6KSTEP(LO0, HI0, 0, 32, Y0)
	Q6KSTEP(LO1, HI1, 8, 160, Y1)
	Q6KSTEP(LO2, HI2, 16, 288, Y10)
	Q6KSTEP(LO3, HI3, 24, 416, Y11)
	Q6KLOAD(144, 16, 48)
	Q6KSTEP(LO0, HI0, 4, 64, Y0)
	Q6KSTEP(LO1, HI1, 12, 192, Y1)
	Q6KSTEP(LO2, HI2, 20, 320, Y10)
	Q6KSTEP(LO3, HI3, 28, 448, Y11)
	Q6KLOAD(152, 24, 56)
	Q6KSTEP(LO0, HI0, 4, 96, Y0)
	Q6KSTEP(LO1, HI1, 12, 224, Y1)
	Q6KSTEP(LO2, HI2, 20, 352, Y10)
	Q6KSTEP(LO3, HI3, 28, 480, Y11)
	Q6KLOAD(160, 64, 96)
	Q6KSTEP(LO0, HI0, 32, 512, Y0)
	Q6KSTEP(LO1, HI1, 40, 640, Y1)
	Q6KSTEP(LO2, HI2, 48, 768, Y10)
	Q6KSTEP(LO3, HI3, 56, 896, Y11)
	Q6KLOAD(168, 72, 104)
	Q6KSTEP(LO0, HI0, 32, 544, Y0)
	Q6KSTEP(LO1, HI1, 40, 672, Y1)
	Q6KSTEP(LO2, HI2, 48, 800, Y10)
	Q6KSTEP(LO3, HI3, 56, 928, Y11)
	Q6KLOAD(176, 80, 112)
	Q6KSTEP(LO0, HI0, 36, 576, Y0)
	Q6KSTEP(LO1, HI1, 44, 704, Y1)
	Q6KSTEP(LO2, HI2, 52, 832, Y10)
	Q6KSTEP(LO3, HI3, 60, 960, Y11)
	Q6KLOAD(184, 88, 120)
	Q6KSTEP(LO0, HI0, 36, 608, Y0)
	Q6KSTEP(LO1, HI1, 44, 736, Y1)
	Q6KSTEP(LO2, HI2, 52, 864, Y10)
	Q6KSTEP(LO3, HI3, 60, 992, Y11)

	ADDQ $210, SI
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

// The same with AVX-512: 16 positions a run, whose values share one sub-block scale.
#define LO0Z VPANDD Z15, Z2, Z8
#define LO1Z VPANDD Z15, Z3, Z8
#define LO2Z VPSRLD $4, Z2, Z8
#define LO3Z VPSRLD $4, Z3, Z8
#define HI0Z VPSLLD $4, Z4, Z9; VPANDD Z13, Z9, Z9
#define HI1Z VPSLLD $2, Z4, Z9; VPANDD Z13, Z9, Z9
#define HI2Z VPANDD Z13, Z4, Z9
#define HI3Z VPSRLD $2, Z4, Z9; VPANDD Z13, Z9, Z9

#define Q6KLOAD512(qh, qla, qlb) \
	VPMOVZXBD qh(SI), Z4; \
	VPMOVZXBD qla(SI), Z2; \
	VPMOVZXBD qlb(SI), Z3

#define Q6KSTEP512(LO, HI, soff, xoff, acc) \
	LO; \
	HI; \
	VPORD        Z9, Z8, Z8; \
	VPSUBD       Z14, Z8, Z8; \
	VCVTDQ2PS    Z8, Z8; \
	VBROADCASTSS soff(SP), Z6; \
	VMULPS       Z6, Z8, Z8; \
	VFMADD231PS  xoff(DI), Z8, acc

// func dotQ6_KAVX512(row *byte, x *float32, nb int) float32
TEXT ·dotQ6_KAVX512(SB), NOSPLIT, $64-28
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
	MOVL         $0x30, AX
	VMOVD        AX, X13
	VPBROADCASTD X13, Z13
	MOVL         $32, AX
	VMOVD        AX, X14
	VPBROADCASTD X14, Z14
	TESTQ        CX, CX
	JZ           done512

loop512:
	MOVWLZX      208(SI), AX
	VMOVD        AX, X5
	VCVTPH2PS    X5, X5
	VBROADCASTSS X5, Y5 // d
	VPMOVSXBD    192(SI), Y2
	VPMOVSXBD    200(SI), Y3
	VCVTDQ2PS    Y2, Y2
	VCVTDQ2PS    Y3, Y3
	VMULPS       Y5, Y2, Y2
	VMULPS       Y5, Y3, Y3
	VMOVUPS      Y2, 0(SP)
	VMOVUPS      Y3, 32(SP)

	Q6KLOAD512(128, 0, 32)
	Q6KSTEP512(LO0Z, HI0Z, 0, 0, Z0)
	Q6KSTEP512(LO1Z, HI1Z, 8, 128, Z1)
	Q6KSTEP512(LO2Z, HI2Z, 16, 256, Z10)
	Q6KSTEP512(LO3Z, HI3Z, 24, 384, Z11)
	Q6KLOAD512(144, 16, 48)
	Q6KSTEP512(LO0Z, HI0Z, 4, 64, Z0)
	Q6KSTEP512(LO1Z, HI1Z, 12, 192, Z1)
	Q6KSTEP512(LO2Z, HI2Z, 20, 320, Z10)
	Q6KSTEP512(LO3Z, HI3Z, 28, 448, Z11)
	Q6KLOAD512(160, 64, 96)
	Q6KSTEP512(LO0Z, HI0Z, 32, 512, Z0)
	Q6KSTEP512(LO1Z, HI1Z, 40, 640, Z1)
	Q6KSTEP512(LO2Z, HI2Z, 48, 768, Z10)
	Q6KSTEP512(LO3Z, HI3Z, 56, 896, Z11)
	Q6KLOAD512(176, 80, 112)
	Q6KSTEP512(LO0Z, HI0Z, 36, 576, Z0)
	Q6KSTEP512(LO1Z, HI1Z, 44, 704, Z1)
	Q6KSTEP512(LO2Z, HI2Z, 52, 832, Z10)
	Q6KSTEP512(LO3Z, HI3Z, 60, 960, Z11)

	ADDQ $210, SI
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

// dequantQ6_KAVX512 is DequantQ6_K's rows with the kernel above, storing the values
// d·scale·(q − 32) instead of multiplying them with x (the pre-fill panels).
#define Q6KWIDEN512(LO, HI, soff, doff) \
	LO; \
	HI; \
	VPORD        Z9, Z8, Z8; \
	VPSUBD       Z14, Z8, Z8; \
	VCVTDQ2PS    Z8, Z8; \
	VBROADCASTSS soff(SP), Z6; \
	VMULPS       Z6, Z8, Z8; \
	VMOVUPS      Z8, doff(DI)

// func dequantQ6_KAVX512(dst *float32, src *byte, nb int)
TEXT ·dequantQ6_KAVX512(SB), NOSPLIT, $64-24
	MOVQ         dst+0(FP), DI
	MOVQ         src+8(FP), SI
	MOVQ         nb+16(FP), CX
	MOVL         $15, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Z15
	MOVL         $0x30, AX
	VMOVD        AX, X13
	VPBROADCASTD X13, Z13
	MOVL         $32, AX
	VMOVD        AX, X14
	VPBROADCASTD X14, Z14
	TESTQ        CX, CX
	JZ           wdone

wloop:
	MOVWLZX      208(SI), AX
	VMOVD        AX, X5
	VCVTPH2PS    X5, X5
	VBROADCASTSS X5, Y5 // d
	VPMOVSXBD    192(SI), Y2
	VPMOVSXBD    200(SI), Y3
	VCVTDQ2PS    Y2, Y2
	VCVTDQ2PS    Y3, Y3
	VMULPS       Y5, Y2, Y2
	VMULPS       Y5, Y3, Y3
	VMOVUPS      Y2, 0(SP)
	VMOVUPS      Y3, 32(SP)

	Q6KLOAD512(128, 0, 32)
	Q6KWIDEN512(LO0Z, HI0Z, 0, 0)
	Q6KWIDEN512(LO1Z, HI1Z, 8, 128)
	Q6KWIDEN512(LO2Z, HI2Z, 16, 256)
	Q6KWIDEN512(LO3Z, HI3Z, 24, 384)
	Q6KLOAD512(144, 16, 48)
	Q6KWIDEN512(LO0Z, HI0Z, 4, 64)
	Q6KWIDEN512(LO1Z, HI1Z, 12, 192)
	Q6KWIDEN512(LO2Z, HI2Z, 20, 320)
	Q6KWIDEN512(LO3Z, HI3Z, 28, 448)
	Q6KLOAD512(160, 64, 96)
	Q6KWIDEN512(LO0Z, HI0Z, 32, 512)
	Q6KWIDEN512(LO1Z, HI1Z, 40, 640)
	Q6KWIDEN512(LO2Z, HI2Z, 48, 768)
	Q6KWIDEN512(LO3Z, HI3Z, 56, 896)
	Q6KLOAD512(176, 80, 112)
	Q6KWIDEN512(LO0Z, HI0Z, 36, 576)
	Q6KWIDEN512(LO1Z, HI1Z, 44, 704)
	Q6KWIDEN512(LO2Z, HI2Z, 52, 832)
	Q6KWIDEN512(LO3Z, HI3Z, 60, 960)

	ADDQ $210, SI
	ADDQ $1024, DI
	DECQ CX
	JNZ  wloop

wdone:
	VZEROUPPER
	RET
