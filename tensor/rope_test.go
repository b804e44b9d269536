package tensor

import (
	"math"
	"math/rand/v2"
	"testing"
)

// The rotary ops against float64 on the same angles, on one thread and split over
// three (enough rows that the job is split), forward and inverse.
func TestRotateHalf(t *testing.T) {
	defer SetThreads(Threads())
	const n, heads, half, pos = 300, 9, 32, 4000
	inv := make([]float32, half)
	for j := range inv {
		inv[j] = float32(math.Pow(10000, -float64(2*j)/(2*half)))
	}
	r := rand.New(rand.NewPCG(8, 9))
	x := randSlice(r, n*heads*2*half)
	for _, th := range []int{1, 3} {
		SetThreads(th)
		cos, sin := make([]float32, n*half), make([]float32, n*half)
		RoPETables(cos, sin, inv, pos, n)
		for _, inverse := range []bool{false, true} {
			y := append([]float32(nil), x...)
			RotateHalf(y, n, heads, cos, sin, inverse)
			for i := range n {
				for h := range heads {
					for j := range half {
						a := float64(float32(pos+i) * inv[j])
						if inverse {
							a = -a
						}
						o := (i*heads+h)*2*half + j
						p, q := float64(x[o]), float64(x[o+half])
						want0, want1 := p*math.Cos(a)-q*math.Sin(a), q*math.Cos(a)+p*math.Sin(a)
						if math.Abs(float64(y[o])-want0) > 1e-5 || math.Abs(float64(y[o+half])-want1) > 1e-5 {
							t.Fatalf("threads %d inverse %v: row %d head %d dim %d = (%v, %v), want (%v, %v)",
								th, inverse, i, h, j, y[o], y[o+half], want0, want1)
						}
					}
				}
			}
		}
	}
}
