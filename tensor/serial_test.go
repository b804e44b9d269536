package tensor

import (
	"math/rand/v2"
	"testing"
)

func TestMaxAndSerialProducts(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	for _, n := range []int{1, 3, 31, 32, 33, 64, 100, 1000} {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		want := x[0]
		for _, v := range x {
			want = max(want, v)
		}
		if got := Max(x); got != want {
			t.Errorf("Max of %d: %v, want %v", n, got, want)
		}
		if got := maxGo(x); got != want {
			t.Errorf("maxGo of %d: %v, want %v", n, got, want)
		}
	}
	// MulNT, MulNN and MulTN on sub-matrices with leading dimensions, against plain loops.
	m, n, k, lda, ldb, ldc := 13, 37, 19, 23, 41, 40
	a := make([]float32, m*lda)
	b := make([]float32, max(n, k)*ldb)
	for i := range a {
		a[i] = float32(rng.NormFloat64())
	}
	for i := range b {
		b[i] = float32(rng.NormFloat64())
	}
	dst := make([]float32, m*ldc)
	MulNT(dst, ldc, a, lda, b, ldb, m, n, k)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float32
			for p := 0; p < k; p++ {
				s += a[i*lda+p] * b[j*ldb+p]
			}
			if d := dst[i*ldc+j] - s; d > 1e-4 || d < -1e-4 {
				t.Fatalf("MulNT [%d,%d] = %v, want %v", i, j, dst[i*ldc+j], s)
			}
		}
	}
	MulNN(dst, ldc, a, lda, b, ldb, m, n, k)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float32
			for p := 0; p < k; p++ {
				s += a[i*lda+p] * b[p*ldb+j]
			}
			if d := dst[i*ldc+j] - s; d > 1e-4 || d < -1e-4 {
				t.Fatalf("MulNN [%d,%d] = %v, want %v", i, j, dst[i*ldc+j], s)
			}
		}
	}
	at := make([]float32, k*lda) // aᵀ stored: k rows of lda ≥ m
	for i := range at {
		at[i] = float32(rng.NormFloat64())
	}
	MulTN(dst, ldc, at, lda, b, ldb, m, n, k)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float32
			for p := 0; p < k; p++ {
				s += at[p*lda+i] * b[p*ldb+j]
			}
			if d := dst[i*ldc+j] - s; d > 1e-4 || d < -1e-4 {
				t.Fatalf("MulTN [%d,%d] = %v, want %v", i, j, dst[i*ldc+j], s)
			}
		}
	}
}
