//go:build amd64 && !purego

package tensor

import "golang.org/x/sys/cpu"

//go:noescape
func maxAVX2(x *float32, n int) float32

var hasMaxAVX2 = cpu.X86.HasAVX2

// Max returns the largest element of x (len(x) > 0; NaN-free input).
func Max(x []float32) float32 {
	v := len(x) &^ 31
	if v == 0 || !hasMaxAVX2 {
		return maxGo(x)
	}
	m := maxAVX2(&x[0], v)
	if v < len(x) {
		m = max2(m, maxGo(x[v:]))
	}
	return m
}
