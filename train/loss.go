package train

import (
	"fmt"
	"math"
	"time"

	"github.com/kvfoot/kvfoot/tensor"
)

// CrossEntropy is the next-token loss of the last Forward: the mean over labelled
// positions i (targets[i] ≥ 0; −1 for none) of −log softmax(Head · hidden_i)[targets[i]]
// (the logits soft-capped first where the model caps them, Gemma 2).
// It sets the gradient that Backward starts from, scaled by scale (1/B for the mean
// over a batch of B sequences), and, with weight gradients on, adds the LM head's.
// Logits are made ceBlock rows at a time. It returns the loss and the labelled count.
func (n *Net) CrossEntropy(targets []int, scale float32) (float64, int, error) {
	c := &n.Config
	T, H, V := n.n, c.Hidden, c.Vocab
	if len(targets) != T {
		return 0, 0, fmt.Errorf("train: %d targets for %d tokens", len(targets), T)
	}
	count := 0
	for i, t := range targets {
		if t >= V {
			return 0, 0, fmt.Errorf("train: target %d at position %d is outside the vocabulary [0, %d)", t, i, V)
		}
		if t >= 0 {
			count++
		}
	}
	if count == 0 {
		return 0, 0, fmt.Errorf("train: no labelled position among %d", T)
	}
	head := mat(n.Params.Head, V, H)
	rowLoss := n.rowLoss
	cp := c.FinalSoftCap
	var total float64
	g := scale / float32(count)
	for b0 := 0; b0 < T; b0 += ceBlock {
		b1 := min(b0+ceBlock, T)
		m := b1 - b0
		hid := n.hidden[b0*H : b1*H]
		logits := n.logits[:m*V]
		t0 := time.Now()
		tensor.MatMulT(logits, hid, m, &head)
		n.Timing.Matmul += time.Since(t0)
		tensor.Parallel(m, func(lo, hi int) {
			var capped []float32 // one row's capped logits, for the cap's derivative
			if cp != 0 {
				capped = make([]float32, V)
			}
			for r := lo; r < hi; r++ {
				row := logits[r*V : (r+1)*V]
				t := targets[b0+r]
				if t < 0 {
					rowLoss[r] = 0
					clear(row)
					continue
				}
				if cp != 0 {
					for j, z := range row {
						row[j] = cp * float32(math.Tanh(float64(z/cp)))
					}
					copy(capped, row)
				}
				lt := row[t]
				mx := tensor.Max(row)
				sum := tensor.ExpSum(row, mx)
				rowLoss[r] = float64(mx) + math.Log(float64(sum)) - float64(lt)
				inv := g / sum
				for j := range row {
					row[j] *= inv
				}
				row[t] -= g
				for j, y := range capped {
					row[j] *= 1 - (y/cp)*(y/cp)
				}
			}
		})
		for _, l := range rowLoss[:m] {
			total += l
		}
		// logits now hold dLoss/dlogits
		dh := n.tmp[:m*H]
		t0 = time.Now()
		tensor.MatMul(dh, logits, n.Params.Head, m, H, V)
		tensor.Axpy(1, dh, n.dhid[b0*H:b1*H])
		if n.Grad != nil {
			tensor.MatMulTN(n.headTmp, logits, hid, V, H, m)
			tensor.Axpy(1, n.headTmp, n.Grad.Head)
		}
		n.Timing.Matmul += time.Since(t0)
	}
	return total / float64(count), count, nil
}

// HiddenMSE is DuoAttention's distillation loss on the last Forward: for the rows
// listed, the squared distance between the final hidden state and target's row
// (target [n, hidden]), averaged over the hidden dimension, summed over the rows and
// divided by their number. It sets Backward's starting gradient, scaled by scale.
func (n *Net) HiddenMSE(target []float32, rows []int, scale float32) (float64, error) {
	H := n.Config.Hidden
	if len(target) < n.n*H {
		return 0, fmt.Errorf("train: target holds %d values, want %d (%d rows of %d)", len(target), n.n*H, n.n, H)
	}
	if len(rows) == 0 {
		return 0, fmt.Errorf("train: no rows to compare")
	}
	var total float64
	g := 2 * scale / float32(H*len(rows))
	for _, i := range rows {
		if i < 0 || i >= n.n {
			return 0, fmt.Errorf("train: row %d outside the sequence of %d", i, n.n)
		}
		h, t, dh := n.hidden[i*H:(i+1)*H], target[i*H:(i+1)*H], n.dhid[i*H:(i+1)*H]
		var s float64
		for j := range h {
			d := h[j] - t[j]
			s += float64(d) * float64(d)
			dh[j] += g * d
		}
		total += s / float64(H)
	}
	return total / float64(len(rows)), nil
}

// mat views a float32 weight as a tensor.Mat.
func mat(w []float32, rows, cols int) tensor.Mat {
	return tensor.Mat{Rows: rows, Cols: cols, F32: w[:rows*cols]}
}
