package safetensors

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
)

// Write writes tensors (sorted by name) and optional metadata as one safetensors
// file. Each tensor's Data must hold exactly its shape's bytes.
func Write(w io.Writer, tensors []Tensor, metadata map[string]string) error {
	for _, t := range tensors {
		if n := t.bytes(); n < 0 || n != int64(len(t.Data)) {
			return fmt.Errorf("safetensors: write tensor %q: %d bytes do not match shape %v of %s", t.Name, len(t.Data), t.Shape, t.Dtype)
		}
	}
	sorted, err := WriteHeader(w, tensors, metadata)
	if err != nil {
		return err
	}
	for _, t := range sorted {
		if _, err := w.Write(t.Data); err != nil {
			return err
		}
	}
	return nil
}

// WriteHeader writes the header of a safetensors file holding tensors (their names,
// dtypes and shapes; Data is not read) and returns them in the order their data must
// follow (by name): a caller writes each one's bytes itself, so that a tensor larger
// than memory can be streamed.
func WriteHeader(w io.Writer, tensors []Tensor, metadata map[string]string) ([]Tensor, error) {
	sorted := append([]Tensor(nil), tensors...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	header := map[string]any{}
	if len(metadata) > 0 {
		header["__metadata__"] = metadata
	}
	var off int64
	for _, t := range sorted {
		n := t.bytes()
		if n < 0 {
			return nil, fmt.Errorf("safetensors: write tensor %q: shape %v of %s", t.Name, t.Shape, t.Dtype)
		}
		if _, dup := header[t.Name]; dup {
			return nil, fmt.Errorf("safetensors: write: tensor %q given twice", t.Name)
		}
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		header[t.Name] = map[string]any{"dtype": t.Dtype, "shape": shape, "data_offsets": []int64{off, off + n}}
		off += n
	}
	h, err := json.Marshal(header)
	if err != nil {
		return nil, err
	}
	// pad with spaces so the data section starts 8-byte aligned, as the reference writer does
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(h)))
	if _, err := w.Write(n[:]); err != nil {
		return nil, err
	}
	if _, err := w.Write(h); err != nil {
		return nil, err
	}
	return sorted, nil
}

// bytes is the size of t's data from its shape and dtype, or -1 if the dtype is
// unknown or a dimension is negative.
func (t Tensor) bytes() int64 {
	count := int64(1)
	for _, s := range t.Shape {
		if s < 0 {
			return -1
		}
		count *= int64(s)
	}
	if t.Dtype.Size() == 0 {
		return -1
	}
	return count * int64(t.Dtype.Size())
}

// FromFloat32s makes an F32 tensor of the given shape (the data is copied).
func FromFloat32s(name string, shape []int, v []float32) Tensor {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return Tensor{Name: name, Dtype: F32, Shape: shape, Data: b}
}

// FromInt64s makes an I64 tensor of the given shape.
func FromInt64s(name string, shape []int, v []int64) Tensor {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(x))
	}
	return Tensor{Name: name, Dtype: I64, Shape: shape, Data: b}
}
