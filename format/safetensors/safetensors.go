// Package safetensors reads and writes the safetensors format: an 8-byte
// little-endian header length, a JSON header naming every tensor's dtype, shape and
// byte range, then the raw little-endian data. Files are memory-mapped and their
// headers validated in full before any tensor is handed out.
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"syscall"
	"unsafe"
)

// Dtype is a safetensors element type.
type Dtype string

// The element types kvfoot reads: float weights, and integer ids in reference files.
const (
	F32  Dtype = "F32"
	BF16 Dtype = "BF16"
	F16  Dtype = "F16"
	I64  Dtype = "I64"
	I32  Dtype = "I32"
)

// Size is the number of bytes of one element, or 0 for an unknown dtype.
func (d Dtype) Size() int {
	switch d {
	case F32, I32:
		return 4
	case BF16, F16:
		return 2
	case I64:
		return 8
	}
	return 0
}

// maxHeader bounds the JSON header: real checkpoints stay far below it, and a lying
// length must not make us read or allocate gigabytes.
const maxHeader = 100 << 20

// Tensor is one tensor of a file; Data aliases the file's bytes (read-only when mapped).
type Tensor struct {
	Name  string
	Dtype Dtype
	Shape []int
	Data  []byte
}

// Len is the number of elements.
func (t Tensor) Len() int { return len(t.Data) / t.Dtype.Size() }

// File is an open safetensors file.
type File struct {
	Path     string
	Metadata map[string]string
	names    []string
	tensors  map[string]Tensor
	mapped   []byte // non-nil when the bytes are an mmap that Close releases
}

// Open memory-maps path and validates its header.
func Open(path string) (*File, error) {
	fd, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fd.Close()
	st, err := fd.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	if size < 8 {
		return nil, fmt.Errorf("%s: file of %d bytes is too short for a safetensors header", path, size)
	}
	if int64(int(size)) != size {
		return nil, fmt.Errorf("%s: file too large to map", path)
	}
	b, err := syscall.Mmap(int(fd.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("%s: mmap: %w", path, err)
	}
	f, err := Parse(b, path)
	if err != nil {
		syscall.Munmap(b)
		return nil, err
	}
	f.mapped = b
	return f, nil
}

// Close releases the mapping; tensors obtained from f must not be used afterwards.
func (f *File) Close() error {
	if f.mapped == nil {
		return nil
	}
	err := syscall.Munmap(f.mapped)
	f.mapped = nil
	return err
}

// Parse validates a whole safetensors file held in b; the tensors alias b. path only
// names the file in errors.
func Parse(b []byte, path string) (*File, error) {
	if len(b) < 8 {
		return nil, fmt.Errorf("%s: %d bytes is too short for a safetensors header", path, len(b))
	}
	n := binary.LittleEndian.Uint64(b)
	if n > maxHeader || n > uint64(len(b)-8) {
		return nil, fmt.Errorf("%s: header length %d exceeds the file's %d bytes (or the %d limit): truncated or not safetensors", path, n, len(b)-8, maxHeader)
	}
	header := b[8 : 8+n]
	data := b[8+n:]
	f := &File{Path: path, tensors: map[string]Tensor{}}
	if err := f.parseHeader(header, data); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

type entry struct {
	Dtype       string  `json:"dtype"`
	Shape       []int64 `json:"shape"`
	DataOffsets []int64 `json:"data_offsets"`
}

func (f *File) parseHeader(header, data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(header))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return errors.New("header is not a JSON object")
	}
	type span struct {
		name       string
		begin, end int64
	}
	var spans []span
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("header JSON: %w", err)
		}
		name, ok := tok.(string)
		if !ok {
			return fmt.Errorf("header JSON: want a tensor name, got %v", tok)
		}
		if _, dup := f.tensors[name]; dup || (name == "__metadata__" && f.Metadata != nil) {
			return fmt.Errorf("header names %q twice", name)
		}
		if name == "__metadata__" {
			if err := dec.Decode(&f.Metadata); err != nil {
				return fmt.Errorf("header __metadata__: want an object of strings: %w", err)
			}
			if f.Metadata == nil {
				f.Metadata = map[string]string{}
			}
			continue
		}
		var e entry
		if err := dec.Decode(&e); err != nil {
			return fmt.Errorf("header: tensor %q: %w", name, err)
		}
		t, err := check(name, e, int64(len(data)))
		if err != nil {
			return err
		}
		o := e.DataOffsets
		t.Data = data[o[0]:o[1]:o[1]]
		f.tensors[name] = t
		f.names = append(f.names, name)
		spans = append(spans, span{name, o[0], o[1]})
	}
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("header JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("header JSON: trailing data after the object")
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].begin < spans[j].begin })
	for i := 1; i < len(spans); i++ {
		if spans[i].begin < spans[i-1].end {
			return fmt.Errorf("tensors %q [%d, %d) and %q [%d, %d) overlap", spans[i-1].name,
				spans[i-1].begin, spans[i-1].end, spans[i].name, spans[i].begin, spans[i].end)
		}
	}
	sort.Strings(f.names)
	return nil
}

// check validates one header entry against the data section of dataLen bytes.
func check(name string, e entry, dataLen int64) (Tensor, error) {
	d := Dtype(e.Dtype)
	if d.Size() == 0 {
		return Tensor{}, fmt.Errorf("tensor %q: unsupported dtype %q (want F32, BF16, F16, I64 or I32)", name, e.Dtype)
	}
	if len(e.DataOffsets) != 2 {
		return Tensor{}, fmt.Errorf("tensor %q: data_offsets has %d values, want 2", name, len(e.DataOffsets))
	}
	count := int64(1)
	shape := make([]int, len(e.Shape))
	for i, s := range e.Shape {
		if s < 0 || (s > 0 && count > math.MaxInt64/8/s) {
			return Tensor{}, fmt.Errorf("tensor %q: invalid shape %v", name, e.Shape)
		}
		count *= s
		shape[i] = int(s)
	}
	begin, end := e.DataOffsets[0], e.DataOffsets[1]
	if begin < 0 || end < begin || end > dataLen {
		return Tensor{}, fmt.Errorf("tensor %q: data_offsets [%d, %d) outside the data section of %d bytes", name, begin, end, dataLen)
	}
	if want := count * int64(d.Size()); end-begin != want {
		return Tensor{}, fmt.Errorf("tensor %q: %d bytes in data_offsets, but shape %v of %s needs %d", name, end-begin, e.Shape, d, want)
	}
	return Tensor{Name: name, Dtype: d, Shape: shape}, nil
}

// Names lists the tensors in sorted order.
func (f *File) Names() []string { return f.names }

// Tensor returns the named tensor.
func (f *File) Tensor(name string) (Tensor, bool) {
	t, ok := f.tensors[name]
	return t, ok
}

// Float32s returns the elements as float32: aliased when the tensor is F32 and
// aligned, converted into a new slice otherwise (BF16, F16, or unaligned F32).
func (t Tensor) Float32s() ([]float32, error) {
	n := t.Len()
	switch t.Dtype {
	case F32:
		if n > 0 && uintptr(unsafe.Pointer(&t.Data[0]))%4 == 0 {
			return unsafe.Slice((*float32)(unsafe.Pointer(&t.Data[0])), n), nil
		}
		out := make([]float32, n)
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
		}
		return out, nil
	case BF16:
		out := make([]float32, n)
		for i := range out {
			out[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(t.Data[2*i:])) << 16)
		}
		return out, nil
	case F16:
		out := make([]float32, n)
		for i := range out {
			out[i] = F16ToFloat(binary.LittleEndian.Uint16(t.Data[2*i:]))
		}
		return out, nil
	}
	return nil, fmt.Errorf("tensor %q: dtype %s is not a float type", t.Name, t.Dtype)
}

// BF16s returns the raw bf16 elements, aliased when aligned.
func (t Tensor) BF16s() ([]uint16, error) {
	if t.Dtype != BF16 {
		return nil, fmt.Errorf("tensor %q: dtype %s, want BF16", t.Name, t.Dtype)
	}
	n := t.Len()
	if n > 0 && uintptr(unsafe.Pointer(&t.Data[0]))%2 == 0 {
		return unsafe.Slice((*uint16)(unsafe.Pointer(&t.Data[0])), n), nil
	}
	out := make([]uint16, n)
	for i := range out {
		out[i] = binary.LittleEndian.Uint16(t.Data[2*i:])
	}
	return out, nil
}

// Int64s returns the elements of an I64 or I32 tensor as int64.
func (t Tensor) Int64s() ([]int64, error) {
	n := t.Len()
	out := make([]int64, n)
	switch t.Dtype {
	case I64:
		for i := range out {
			out[i] = int64(binary.LittleEndian.Uint64(t.Data[8*i:]))
		}
	case I32:
		for i := range out {
			out[i] = int64(int32(binary.LittleEndian.Uint32(t.Data[4*i:])))
		}
	default:
		return nil, fmt.Errorf("tensor %q: dtype %s is not an integer type", t.Name, t.Dtype)
	}
	return out, nil
}

// F16ToFloat widens one IEEE half-precision value, subnormals, infinities and NaN included.
func F16ToFloat(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp != 0:
		return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
	case mant == 0:
		return math.Float32frombits(sign)
	}
	// subnormal half: value = mant · 2⁻²⁴, exact in float32
	f := float32(mant) * (1.0 / (1 << 24))
	if sign != 0 {
		f = -f
	}
	return f
}
