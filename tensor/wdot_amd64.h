// The block dots' common ending (wq*_amd64.s): the sum of Y0's eight floats (SUMY0) or
// of Z0's sixteen (SUMZ0) into the low float of X0, with X1/Y1 as scratch, and the
// upper halves cleared. The kernels store X0 to their result themselves: go vet does
// not see a store to ret+24(FP) made inside a macro.

#define SUMY0 \
	VEXTRACTF128 $1, Y0, X1; VADDPS X1, X0, X0; \
	VHADDPS X0, X0, X0; VHADDPS X0, X0, X0; \
	VZEROUPPER

#define SUMZ0 \
	VEXTRACTF32X8 $1, Z0, Y1; VADDPS Y1, Y0, Y0; \
	SUMY0

// The min's part of the formats value = d·q + m (Q4_1, Q5_1), m·dₐ·Σcode per block,
// accumulated in X8's lane 0 (even blocks) and 1 (odd) as their portable dots do; SI
// is the first block, m at 2 in each, R11 the activation scales, R12 their code sums;
// AX, BX, X5, X6 scratch. MINS2 adds a pair of blocks of size bytes, MINS1 one (into
// lane 0), MINSADD adds lane 0 and 1 and then that to X0's low float.

#define MINS2(size) \
	MOVWLZX   2(SI), AX; \
	MOVWLZX   (size+2)(SI), BX; \
	SHLL      $16, BX; \
	ORL       BX, AX; \
	VMOVD     AX, X5; \
	VCVTPH2PS X5, X5; \
	VMOVQ     (R11), X6; \
	VMULPS    X6, X5, X5; \
	MOVL      (R12), AX; \
	VMOVD     AX, X6; \
	VPMOVSXWD X6, X6; \
	VCVTDQ2PS X6, X6; \
	VMULPS    X6, X5, X5; \
	VADDPS    X5, X8, X8

#define MINS1 \
	MOVWLZX   2(SI), AX; \
	VMOVD     AX, X5; \
	VCVTPH2PS X5, X5; \
	VMULSS    (R11), X5, X5; \
	MOVWLSX   (R12), AX; \
	VMOVD     AX, X6; \
	VCVTDQ2PS X6, X6; \
	VMULSS    X6, X5, X5; \
	VADDSS    X5, X8, X8

#define MINSADD \
	VMOVSHDUP X8, X5; \
	VADDSS    X5, X8, X8; \
	VADDSS    X8, X0, X0

// KSCALES unpacks a K-format super-block's twelve bytes of 6-bit scales and mins (at 4(SI);
// Q4_K and Q5_K pack them alike) into the 8 scales, a byte each, in R8 and the 8 mins in
// R9. Sub-blocks 0-3: the low 6 bits of bytes 4-7 (mins: of bytes 8-11); 4-7: the low
// nibbles of bytes 12-15 (mins: the high nibbles) below the top 2 bits of bytes 4-7 (mins:
// of bytes 8-11). AX, BX, DX and R10 are scratch.
#define KSCALES \
	MOVL 4(SI), AX; MOVL 8(SI), BX; MOVL 12(SI), DX; \
	MOVL AX, R8; ANDL $0x3f3f3f3f, R8; \
	MOVL BX, R9; ANDL $0x3f3f3f3f, R9; \
	MOVL DX, R10; ANDL $0x0f0f0f0f, R10; \
	SHRL $6, AX; ANDL $0x03030303, AX; SHLL $4, AX; ORL AX, R10; \
	SHRL $4, DX; ANDL $0x0f0f0f0f, DX; \
	SHRL $6, BX; ANDL $0x03030303, BX; SHLL $4, BX; ORL BX, DX; \
	SHLQ $32, R10; ORQ R10, R8; \
	SHLQ $32, DX; ORQ DX, R9
