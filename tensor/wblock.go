package tensor

import "fmt"

// BlockFormat describes a weight type stored in blocks, as GGUF files hold them: a
// row of n values (n a multiple of Values) takes n/Values·Bytes bytes. The functions
// are the portable kernels of the type; each file w*.go defines one format.
type BlockFormat struct {
	Name          string
	Values, Bytes int
	// Dequant widens one row of len(dst) values from its blocks.
	Dequant func(dst []float32, src []byte)
	// Dot returns Σ row[i]·x[i] over len(x) values, computed on the blocks.
	Dot func(row []byte, x []float32) float32
	// Quantize writes one row of len(src) values as blocks.
	Quantize func(dst []byte, src []float32)
	// dotAct, where set, is Dot against the activation row converted as act says
	// (wint.go), as llama.cpp computes it: the matrix-vector route uses it instead
	// of Dot.
	act    actKind
	dotAct func(row []byte, a actRow) float32
	// dotActRows, where set, is dotAct over len(dst) rows of rb bytes each.
	dotActRows func(dst []float32, rows []byte, rb int, a actRow)
	// dotActQuarters, where set, is dotAct on rows i, q+i, 2q+i and 3q+i of rows (rb
	// bytes each) for i < n, into the same places of dst: four streams at once, one
	// through each quarter of a matrix.
	dotActQuarters func(dst []float32, rows []byte, rb, q, n int, a actRow)
	// dotRows, where set, is Dot over len(dst) rows of rb bytes each, with the bits
	// Dot gives each row.
	dotRows func(dst []float32, rows []byte, rb int, x []float32)
}

// RowBytes is the size of a row of n values; n must be a multiple of f.Values.
func (f *BlockFormat) RowBytes(n int) int { return n / f.Values * f.Bytes }

// checkBlocks panics, as copy-like kernels do on a caller's bug, unless n values
// are whole blocks and the byte slice holds them.
func checkBlocks(name string, n, per, size, have int) int {
	if n%per != 0 || have < n/per*size {
		panic(fmt.Sprintf("tensor.%s: %d values need whole blocks of %d (%d bytes each), have %d bytes", name, n, per, size, have))
	}
	return n / per
}
