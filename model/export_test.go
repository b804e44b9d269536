package model

import "github.com/kvfoot/kvfoot/tensor"

// RoundRopeToBF16 reproduces a defect of the first oracle (reference files without
// oracle=2 metadata): it cast the model to bf16 and back, which left the RoPE
// inverse frequencies rounded to bf16 in the reference computation.
func RoundRopeToBF16(m *Model) {
	for i, f := range m.invFreq {
		m.invFreq[i] = tensor.BF16ToFloat(tensor.FloatToBF16(f))
	}
}
