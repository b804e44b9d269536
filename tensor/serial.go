package tensor

import "fmt"

// Kernels for callers that split the work over goroutines themselves (the attention
// kernel of kv runs one KV head x query block per goroutine): they run on the calling
// goroutine only and take leading dimensions, so they read and write sub-matrices in
// place.

// MulNT sets dst[i*ldc+j] = Σ_p a[i*lda+p]·b[j*ldb+p] for i < m, j < n, p < k: a·bᵀ
// (attention scores: queries · keysᵀ).
func MulNT(dst []float32, ldc int, a []float32, lda int, b []float32, ldb int, m, n, k int) {
	checkStrided("MulNT", dst, ldc, a, lda, b, ldb, m, n, k, m, k, n, k)
	gemm(active, 1, m, k, operand{f32: a, rs: lda, cs: 1},
		gemmOut{b: operand{f32: b, rs: ldb, cs: 1}, n: n, dst: dst, ldc: ldc})
}

// MulNN sets dst[i*ldc+j] = Σ_p a[i*lda+p]·b[p*ldb+j] for i < m, j < n, p < k: a·b
// (attention output: probabilities · values).
func MulNN(dst []float32, ldc int, a []float32, lda int, b []float32, ldb int, m, n, k int) {
	checkStrided("MulNN", dst, ldc, a, lda, b, ldb, m, n, k, m, k, k, n)
	gemm(active, 1, m, k, operand{f32: a, rs: lda, cs: 1},
		gemmOut{b: operand{f32: b, rs: 1, cs: ldb}, n: n, dst: dst, ldc: ldc})
}

// ExpSum sets x[i] = exp(x[i] - mx) and returns Σ x[i]; every x[i] must be ≤ mx
// (the inner step of a stable or online softmax).
func ExpSum(x []float32, mx float32) float32 { return active.expSum(x, mx) }

// checkStrided panics unless a (ar x ac), b (br x bc) and dst (m x n) fit their
// slices at the given leading dimensions.
func checkStrided(name string, dst []float32, ldc int, a []float32, lda int, b []float32, ldb int, m, n, k, ar, ac, br, bc int) {
	need := func(rows, cols, ld int) int {
		if rows == 0 || cols == 0 {
			return 0
		}
		return (rows-1)*ld + cols
	}
	if m < 0 || n < 0 || k < 0 || lda < ac || ldb < bc || ldc < n ||
		len(a) < need(ar, ac, lda) || len(b) < need(br, bc, ldb) || len(dst) < need(m, n, ldc) {
		panic(fmt.Sprintf("tensor.%s: m=%d n=%d k=%d, lda=%d ldb=%d ldc=%d: have len(a)=%d len(b)=%d len(dst)=%d",
			name, m, n, k, lda, ldb, ldc, len(a), len(b), len(dst)))
	}
}

// DotRows sets dst[j] = Σ_c x[j*len(y)+c]·y[c] for j < len(dst): the dot products of
// y with len(dst) contiguous rows of x (decode attention: one query's scores against a
// block of keys).
func DotRows(dst, x, y []float32) {
	if len(x) < len(dst)*len(y) {
		panic(fmt.Sprintf("tensor.DotRows: %d rows of %d: have len(x)=%d", len(dst), len(y), len(x)))
	}
	if len(dst) == 0 {
		return
	}
	if len(y) == 0 {
		clear(dst)
		return
	}
	active.matvec(dst, x, len(y), y)
}

// AxpyRows sets dst[c] += Σ_j alpha[j]·x[j*len(dst)+c] for c < len(dst): the rows of x
// weighted by alpha, added to dst (decode attention: probabilities · values).
func AxpyRows(dst, alpha, x []float32) {
	if len(x) < len(alpha)*len(dst) {
		panic(fmt.Sprintf("tensor.AxpyRows: %d rows of %d: have len(x)=%d", len(alpha), len(dst), len(x)))
	}
	if len(dst) == 0 {
		return
	}
	active.axpyRows(dst, alpha, x)
}

// MulTN sets dst[i*ldc+j] = Σ_p a[p*lda+i]·b[p*ldb+j] for i < m, j < n, p < k: aᵀ·b
// (attention backward: the gradients of keys and values).
func MulTN(dst []float32, ldc int, a []float32, lda int, b []float32, ldb int, m, n, k int) {
	checkStrided("MulTN", dst, ldc, a, lda, b, ldb, m, n, k, k, m, k, n)
	gemm(active, 1, m, k, operand{f32: a, rs: 1, cs: lda},
		gemmOut{b: operand{f32: b, rs: 1, cs: ldb}, n: n, dst: dst, ldc: ldc})
}
