package tensor

// maxGo is the portable Max: four independent compares per step (the builtin max,
// with its NaN and signed-zero rules, is several times slower).
func maxGo(x []float32) float32 {
	m0 := x[0]
	m1, m2, m3 := m0, m0, m0
	i := 0
	for ; i+4 <= len(x); i += 4 {
		m0, m1, m2, m3 = max2(m0, x[i]), max2(m1, x[i+1]), max2(m2, x[i+2]), max2(m3, x[i+3])
	}
	for ; i < len(x); i++ {
		m0 = max2(m0, x[i])
	}
	return max2(max2(m0, m1), max2(m2, m3))
}

func max2(a, b float32) float32 {
	if b > a {
		return b
	}
	return a
}
