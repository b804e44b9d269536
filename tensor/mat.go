package tensor

import "fmt"

// Mat is a row-major weight matrix of Rows x Cols in one element type. A Hugging
// Face Linear weight [out, in] is a Mat with Rows = out, Cols = in. Exactly one
// storage field is set, the one of Type(); the kernels dispatch on it here and in
// MatMulTs, and nowhere else.
type Mat struct {
	Rows, Cols int
	F32        []float32
	BF16       []uint16
	// Blocks holds the rows of a block format (Q8_0, Q4_K, ...; wblock.go), each
	// Cols/Block.Values blocks of Block.Bytes bytes, as GGUF files store them.
	Blocks []byte
	Block  *BlockFormat
}

// DType is a matrix's element type.
type DType uint8

const (
	F32 DType = iota
	BF16
	Blocked // a BlockFormat's blocks: Mat.Block names it
)

func (t DType) String() string {
	switch t {
	case F32:
		return "F32"
	case BF16:
		return "BF16"
	case Blocked:
		return "blocks"
	}
	return fmt.Sprintf("DType(%d)", uint8(t))
}

// Type is the element type the matrix is stored in.
func (m *Mat) Type() DType {
	switch {
	case m.Block != nil:
		return Blocked
	case m.BF16 != nil:
		return BF16
	}
	return F32
}

// TypeName names the element type: F32, BF16, or the block type's name.
func (m *Mat) TypeName() string {
	if m.Block != nil {
		return m.Block.Name
	}
	return m.Type().String()
}

// Bytes is the matrix's storage in bytes.
func (m *Mat) Bytes() int64 { return int64(4*len(m.F32) + 2*len(m.BF16) + len(m.Blocks)) }

// Row widens row i into dst [Cols] (an embedding lookup).
func (m *Mat) Row(dst []float32, i int) {
	c := m.Cols
	switch m.Type() {
	case F32:
		copy(dst[:c], m.F32[i*c:(i+1)*c])
	case BF16:
		BF16ToFloats(dst[:c], m.BF16[i*c:(i+1)*c])
	case Blocked:
		rb := m.Block.RowBytes(c)
		m.Block.Dequant(dst[:c], m.Blocks[i*rb:(i+1)*rb])
	}
}

// Float32s returns the whole matrix widened to float32: the storage itself for F32.
func (m *Mat) Float32s() []float32 {
	if m.Type() == F32 {
		return m.F32
	}
	out := make([]float32, m.Rows*m.Cols)
	for i := range m.Rows {
		m.Row(out[i*m.Cols:(i+1)*m.Cols], i)
	}
	return out
}
