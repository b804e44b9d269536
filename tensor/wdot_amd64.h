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
