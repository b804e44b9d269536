package tensor

import "math"

// RoPETables fills cos and sin [n, len(invFreq)] with the rotary angles of positions
// pos…pos+n−1. As in transformers, the angle pos·inv_freq is rounded to float32
// before its cosine and sine are taken.
func RoPETables(cos, sin, invFreq []float32, pos, n int) {
	half := len(invFreq)
	j := elementJob{op: opRoPETables, x: cos[:n*half], y: sin[:n*half], w: invFreq, rows: n, pos: pos}
	if n*half < elemPart/8 { // a cosine and a sine cost about eight multiply-adds
		j.ropeTables(0, n)
		return
	}
	elementwise(j, n*half*8)
}

// RotateHalf rotates each head of x [n, heads·2·half] in place by the angles whose
// cosines and sines are cos and sin [n, half] (RoPETables), pairing dimension j with
// j+half, the rotate_half layout of Hugging Face checkpoints: (a, b) →
// (a·cos − b·sin, b·cos + a·sin). inverse rotates by −θ instead (the transposed
// rotation, which a gradient goes through).
func RotateHalf(x []float32, n, heads int, cos, sin []float32, inverse bool) {
	half := len(cos) / max(n, 1)
	sign := float32(1)
	if inverse {
		sign = -1
	}
	j := elementJob{op: opRotateHalf, x: x[:n*heads*2*half], y: sin[:n*half], w: cos[:n*half], rows: n, alpha: sign}
	if len(j.x) < 2*elemPart {
		j.rotateHalf(0, n)
		return
	}
	elementwise(j, len(j.x))
}

func (j *elementJob) ropeTables(lo, hi int) {
	half := len(j.w)
	for i := lo; i < hi; i++ {
		p := float32(j.pos + i)
		for k, f := range j.w {
			a := float64(p * f)
			j.x[i*half+k] = float32(math.Cos(a))
			j.y[i*half+k] = float32(math.Sin(a))
		}
	}
}

func (j *elementJob) rotateHalf(lo, hi int) {
	half := len(j.w) / j.rows
	d := 2 * half
	heads := len(j.x) / (j.rows * d)
	for i := lo; i < hi; i++ {
		c, s := j.w[i*half:(i+1)*half], j.y[i*half:(i+1)*half]
		for h := range heads {
			v := j.x[(i*heads+h)*d : (i*heads+h+1)*d]
			first, second := v[:half], v[half:d]
			for k := range first {
				a, b := first[k], second[k]
				first[k] = a*c[k] - j.alpha*b*s[k]
				second[k] = b*c[k] + j.alpha*a*s[k]
			}
		}
	}
}
