//go:build !amd64 || purego

package tensor

// Max returns the largest element of x (len(x) > 0; NaN-free input).
func Max(x []float32) float32 { return maxGo(x) }
