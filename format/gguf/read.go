// Package gguf reads and writes GGUF files (llama.cpp's and Ollama's model format),
// versions 2 and 3, little-endian: metadata key-value pairs, tensor infos and
// aligned tensor data. The reader trusts nothing in the header: every count, length,
// offset and dimension is checked against the file's size before anything is
// allocated for it, and errors name the file and the field.
package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"sort"
)

// Magic is the first four bytes of every GGUF file.
const Magic = "GGUF"

// DefaultAlignment is the tensor data alignment when general.alignment is absent.
const DefaultAlignment = 32

// maxDims is ggml's GGML_MAX_DIMS.
const maxDims = 4

// maxNesting bounds arrays of arrays; the specification allows nesting, no model
// uses more than one level, and the bound keeps a hostile file off the stack.
const maxNesting = 8

// Array is a metadata array. Values is a slice of the element type's Go type
// ([]uint8, []int8, []uint16, []int16, []uint32, []int32, []float32, []bool,
// []string, []uint64, []int64, []float64), or []Array when Elem is TypeArray.
type Array struct {
	Elem   ValueType
	Values any
}

// Len is the number of elements.
func (a Array) Len() int {
	switch v := a.Values.(type) {
	case []uint8:
		return len(v)
	case []int8:
		return len(v)
	case []uint16:
		return len(v)
	case []int16:
		return len(v)
	case []uint32:
		return len(v)
	case []int32:
		return len(v)
	case []float32:
		return len(v)
	case []bool:
		return len(v)
	case []string:
		return len(v)
	case []uint64:
		return len(v)
	case []int64:
		return len(v)
	case []float64:
		return len(v)
	case []Array:
		return len(v)
	}
	return 0
}

// KV is one metadata pair. Value holds the Go type of its GGUF type (uint8 … float64,
// bool, string) or an Array.
type KV struct {
	Key   string
	Value any
}

// TensorInfo describes one tensor. Dims are in ggml order: Dims[0] is the contiguous
// dimension, so a PyTorch [out, in] matrix has Dims [in, out].
type TensorInfo struct {
	Name   string
	Dims   []uint64
	Type   Type
	Offset uint64 // from the start of the data section
	Size   uint64 // bytes
}

// Elements is the product of the dimensions.
func (t *TensorInfo) Elements() uint64 {
	n := uint64(1)
	for _, d := range t.Dims {
		n *= d
	}
	return n
}

// File is a parsed GGUF file. Tensor data is read on demand through the ReaderAt.
type File struct {
	Path       string
	Version    uint32
	Alignment  uint64
	KV         []KV
	Tensors    []TensorInfo
	DataOffset uint64 // where the data section starts in the file

	kv      map[string]int
	tensors map[string]int
	r       io.ReaderAt
	size    uint64
	closer  io.Closer
}

// Open opens and parses the GGUF file at path; Close releases it.
func Open(path string) (*File, error) {
	fd, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := fd.Stat()
	if err != nil {
		fd.Close()
		return nil, err
	}
	f, err := Read(fd, st.Size(), path)
	if err != nil {
		fd.Close()
		return nil, err
	}
	f.closer = fd
	return f, nil
}

// Close releases the file Open opened.
func (f *File) Close() error {
	if f.closer == nil {
		return nil
	}
	c := f.closer
	f.closer = nil
	return c.Close()
}

// Read parses a GGUF file of size bytes from r; path names the file in errors.
func Read(r io.ReaderAt, size int64, path string) (*File, error) {
	if size < 0 {
		return nil, fmt.Errorf("%s: negative size", path)
	}
	f := &File{Path: path, r: r, size: uint64(size), kv: map[string]int{}, tensors: map[string]int{}}
	c := &cursor{r: bufio.NewReaderSize(io.NewSectionReader(r, 0, size), 1<<16), size: uint64(size)}
	if err := f.parse(c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// cursor reads the header sequentially and knows how many bytes remain.
type cursor struct {
	r    *bufio.Reader
	pos  uint64
	size uint64
	buf  [8]byte
}

var errTruncated = errors.New("file ends early")

func (c *cursor) remaining() uint64 { return c.size - c.pos }

func (c *cursor) bytes(n uint64) ([]byte, error) {
	if n > c.remaining() {
		return nil, errTruncated
	}
	var b []byte
	if n <= uint64(len(c.buf)) {
		b = c.buf[:n]
	} else {
		b = make([]byte, n)
	}
	if _, err := io.ReadFull(c.r, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, errTruncated
		}
		return nil, err
	}
	c.pos += n
	return b, nil
}

func (c *cursor) u8() (uint8, error) {
	b, err := c.bytes(1)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

func (c *cursor) u16() (uint16, error) {
	b, err := c.bytes(2)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(b), nil
}

func (c *cursor) u32() (uint32, error) {
	b, err := c.bytes(4)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (c *cursor) u64() (uint64, error) {
	b, err := c.bytes(8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

func (c *cursor) str() (string, error) {
	n, err := c.u64()
	if err != nil {
		return "", err
	}
	if n > c.remaining() {
		return "", fmt.Errorf("string length %d exceeds the %d bytes left: %w", n, c.remaining(), errTruncated)
	}
	b, err := c.bytes(n)
	return string(b), err
}

// count reads an element count and checks that n elements of at least minSize
// bytes each fit in what remains.
func (c *cursor) count(minSize uint64) (uint64, error) {
	n, err := c.u64()
	if err != nil {
		return 0, err
	}
	if hi, lo := bits.Mul64(n, minSize); hi != 0 || lo > c.remaining() {
		return 0, fmt.Errorf("count %d needs at least %d bytes each but %d bytes are left", n, minSize, c.remaining())
	}
	return n, nil
}

func (f *File) parse(c *cursor) error {
	magic, err := c.bytes(4)
	if err != nil {
		return fmt.Errorf("magic: %w", err)
	}
	if string(magic) != Magic {
		return fmt.Errorf("magic: %q, not a GGUF file", magic)
	}
	if f.Version, err = c.u32(); err != nil {
		return fmt.Errorf("version: %w", err)
	}
	switch {
	case f.Version == 2 || f.Version == 3:
	case f.Version == 1:
		return fmt.Errorf("version: 1 is not supported (its counts are 32-bit; want 2 or 3)")
	case bits.ReverseBytes32(f.Version) <= 3:
		return fmt.Errorf("version: the file is big-endian, which is not supported")
	default:
		return fmt.Errorf("version: %d, want 2 or 3", f.Version)
	}
	// A tensor info takes at least a name length, a dimension count, a type and an offset.
	nTensors, err := c.count(8 + 4 + 4 + 8)
	if err != nil {
		return fmt.Errorf("tensor_count: %w", err)
	}
	nKV, err := c.count(8 + 4 + 1)
	if err != nil {
		return fmt.Errorf("metadata_kv_count: %w", err)
	}
	f.KV = make([]KV, 0, nKV)
	for i := range nKV {
		key, err := c.str()
		if err != nil {
			return fmt.Errorf("metadata key %d: %w", i, err)
		}
		if _, dup := f.kv[key]; dup {
			return fmt.Errorf("metadata key %q: appears twice", key)
		}
		t, err := c.u32()
		if err != nil {
			return fmt.Errorf("metadata %q: type: %w", key, err)
		}
		v, err := c.value(ValueType(t), 0)
		if err != nil {
			return fmt.Errorf("metadata %q: %w", key, err)
		}
		f.kv[key] = len(f.KV)
		f.KV = append(f.KV, KV{key, v})
	}
	f.Alignment = DefaultAlignment
	if v, ok := f.Lookup("general.alignment"); ok {
		a, ok := v.(uint32)
		if !ok {
			return fmt.Errorf("metadata \"general.alignment\": %T, want uint32", v)
		}
		if a == 0 || a&(a-1) != 0 {
			return fmt.Errorf("metadata \"general.alignment\": %d, want a power of two", a)
		}
		f.Alignment = uint64(a)
	}
	f.Tensors = make([]TensorInfo, 0, nTensors)
	for i := range nTensors {
		t, err := c.tensorInfo()
		if err != nil {
			if t.Name != "" {
				return fmt.Errorf("tensor %q: %w", t.Name, err)
			}
			return fmt.Errorf("tensor info %d: %w", i, err)
		}
		if _, dup := f.tensors[t.Name]; dup {
			return fmt.Errorf("tensor %q: appears twice", t.Name)
		}
		f.tensors[t.Name] = len(f.Tensors)
		f.Tensors = append(f.Tensors, t)
	}
	f.DataOffset = alignUp(c.pos, f.Alignment)
	if len(f.Tensors) > 0 && f.DataOffset > f.size {
		return fmt.Errorf("data section: starts at %d, past the end of the %d-byte file", f.DataOffset, f.size)
	}
	return f.checkPlacement()
}

func alignUp(n, a uint64) uint64 { return (n + a - 1) / a * a }

func (c *cursor) tensorInfo() (TensorInfo, error) {
	var t TensorInfo
	var err error
	if t.Name, err = c.str(); err != nil {
		return t, fmt.Errorf("name: %w", err)
	}
	nd, err := c.u32()
	if err != nil {
		return t, fmt.Errorf("n_dimensions: %w", err)
	}
	if nd > maxDims {
		return t, fmt.Errorf("n_dimensions: %d, want at most %d", nd, maxDims)
	}
	t.Dims = make([]uint64, nd)
	elems := uint64(1)
	for j := range t.Dims {
		if t.Dims[j], err = c.u64(); err != nil {
			return t, fmt.Errorf("dimension %d: %w", j, err)
		}
		// Elements beyond 2^62 could never be stored; checking the product here keeps
		// the size computation below from overflowing.
		hi, lo := bits.Mul64(elems, t.Dims[j])
		if hi != 0 || lo > 1<<62 {
			return t, fmt.Errorf("dimensions %v: more than 2^62 elements", t.Dims[:j+1])
		}
		elems = lo
	}
	typ, err := c.u32()
	if err != nil {
		return t, fmt.Errorf("type: %w", err)
	}
	t.Type = Type(typ)
	info, ok := types[t.Type]
	if !ok {
		return t, fmt.Errorf("type: unknown tensor type %d", typ)
	}
	row := uint64(1)
	if nd > 0 {
		row = t.Dims[0]
	}
	if row%info.values != 0 {
		return t, fmt.Errorf("dimension 0: %d is not a multiple of %s's block of %d values", row, t.Type, info.values)
	}
	hi, lo := bits.Mul64(elems/info.values, info.bytes)
	if hi != 0 || lo > 1<<62 {
		return t, fmt.Errorf("dimensions %v: more than 2^62 bytes", t.Dims)
	}
	t.Size = lo
	if t.Offset, err = c.u64(); err != nil {
		return t, fmt.Errorf("offset: %w", err)
	}
	return t, nil
}

// checkPlacement checks that every tensor is aligned, inside the file and apart
// from every other.
func (f *File) checkPlacement() error {
	data := f.size - min(f.DataOffset, f.size)
	order := make([]int, len(f.Tensors))
	for i := range order {
		t := &f.Tensors[i]
		order[i] = i
		if t.Offset%f.Alignment != 0 {
			return fmt.Errorf("tensor %q: offset %d is not a multiple of the alignment %d", t.Name, t.Offset, f.Alignment)
		}
		if t.Offset > data || t.Size > data-t.Offset {
			return fmt.Errorf("tensor %q: bytes [%d, %d) of the data section run past its end at %d (file truncated or offset wrong)",
				t.Name, t.Offset, t.Offset+t.Size, data)
		}
	}
	sort.Slice(order, func(a, b int) bool { return f.Tensors[order[a]].Offset < f.Tensors[order[b]].Offset })
	for i := 1; i < len(order); i++ {
		p, t := &f.Tensors[order[i-1]], &f.Tensors[order[i]]
		if p.Offset+p.Size > t.Offset {
			return fmt.Errorf("tensor %q: bytes [%d, %d) overlap tensor %q's [%d, %d)",
				t.Name, t.Offset, t.Offset+t.Size, p.Name, p.Offset, p.Offset+p.Size)
		}
	}
	return nil
}

func (c *cursor) value(t ValueType, depth int) (any, error) {
	switch t {
	case TypeUint8:
		return c.u8()
	case TypeInt8:
		v, err := c.u8()
		return int8(v), err
	case TypeUint16:
		return c.u16()
	case TypeInt16:
		v, err := c.u16()
		return int16(v), err
	case TypeUint32:
		return c.u32()
	case TypeInt32:
		v, err := c.u32()
		return int32(v), err
	case TypeFloat32:
		v, err := c.u32()
		return math.Float32frombits(v), err
	case TypeBool:
		v, err := c.u8()
		if err == nil && v > 1 {
			err = fmt.Errorf("bool byte %d, want 0 or 1", v)
		}
		return v == 1, err
	case TypeString:
		return c.str()
	case TypeUint64:
		return c.u64()
	case TypeInt64:
		v, err := c.u64()
		return int64(v), err
	case TypeFloat64:
		v, err := c.u64()
		return math.Float64frombits(v), err
	case TypeArray:
		return c.array(depth)
	}
	return nil, fmt.Errorf("unknown value type %d", uint32(t))
}

func (c *cursor) array(depth int) (Array, error) {
	if depth >= maxNesting {
		return Array{}, fmt.Errorf("arrays nested deeper than %d", maxNesting)
	}
	et, err := c.u32()
	if err != nil {
		return Array{}, fmt.Errorf("array type: %w", err)
	}
	a := Array{Elem: ValueType(et)}
	if a.Elem.minSize() == 0 {
		return a, fmt.Errorf("array of unknown value type %d", et)
	}
	n, err := c.count(a.Elem.minSize())
	if err != nil {
		return a, fmt.Errorf("array length: %w", err)
	}
	switch a.Elem {
	case TypeUint8:
		a.Values, err = fixed(c, n, 1, func(b []byte) uint8 { return b[0] })
	case TypeInt8:
		a.Values, err = fixed(c, n, 1, func(b []byte) int8 { return int8(b[0]) })
	case TypeUint16:
		a.Values, err = fixed(c, n, 2, binary.LittleEndian.Uint16)
	case TypeInt16:
		a.Values, err = fixed(c, n, 2, func(b []byte) int16 { return int16(binary.LittleEndian.Uint16(b)) })
	case TypeUint32:
		a.Values, err = fixed(c, n, 4, binary.LittleEndian.Uint32)
	case TypeInt32:
		a.Values, err = fixed(c, n, 4, func(b []byte) int32 { return int32(binary.LittleEndian.Uint32(b)) })
	case TypeFloat32:
		a.Values, err = fixed(c, n, 4, func(b []byte) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b)) })
	case TypeBool:
		var v []uint8
		v, err = fixed(c, n, 1, func(b []byte) uint8 { return b[0] })
		bs := make([]bool, len(v))
		for i, x := range v {
			if x > 1 && err == nil {
				err = fmt.Errorf("element %d: bool byte %d, want 0 or 1", i, x)
			}
			bs[i] = x == 1
		}
		a.Values = bs
	case TypeUint64:
		a.Values, err = fixed(c, n, 8, binary.LittleEndian.Uint64)
	case TypeInt64:
		a.Values, err = fixed(c, n, 8, func(b []byte) int64 { return int64(binary.LittleEndian.Uint64(b)) })
	case TypeFloat64:
		a.Values, err = fixed(c, n, 8, func(b []byte) float64 { return math.Float64frombits(binary.LittleEndian.Uint64(b)) })
	case TypeString:
		v := make([]string, n)
		for i := range v {
			if v[i], err = c.str(); err != nil {
				return a, fmt.Errorf("element %d: %w", i, err)
			}
		}
		a.Values = v
	case TypeArray:
		v := make([]Array, n)
		for i := range v {
			if v[i], err = c.array(depth + 1); err != nil {
				return a, fmt.Errorf("element %d: %w", i, err)
			}
		}
		a.Values = v
	}
	return a, err
}

// fixed reads n fixed-size elements; the caller has checked that n·size bytes remain.
func fixed[T any](c *cursor, n, size uint64, conv func([]byte) T) ([]T, error) {
	b, err := c.bytes(n * size)
	if err != nil {
		return nil, err
	}
	v := make([]T, n)
	for i := range v {
		v[i] = conv(b[uint64(i)*size:])
	}
	return v, nil
}

// Lookup returns the value of a metadata key.
func (f *File) Lookup(key string) (any, bool) {
	i, ok := f.kv[key]
	if !ok {
		return nil, false
	}
	return f.KV[i].Value, true
}

// Tensor returns the info of the tensor called name.
func (f *File) Tensor(name string) (*TensorInfo, bool) {
	i, ok := f.tensors[name]
	if !ok {
		return nil, false
	}
	return &f.Tensors[i], true
}

var pageSize = os.Getpagesize()

// ReadTensor reads a tensor's bytes into a new slice.
func (f *File) ReadTensor(t *TensorInfo) ([]byte, error) {
	b := make([]byte, t.Size)
	// Write a byte of every page before the read fills them. On the development
	// machine's VM a page the kernel's read faults in costs a second fault at its first
	// access from Go (~12 µs a page: 0.25-0.34 s over SmolLM2's 113 MB of F16 matrices,
	// which the first pre-fill paid); a page touched first costs one fault, and the
	// read itself gets faster.
	for i := 0; i < len(b); i += pageSize {
		b[i] = 0
	}
	// A ReaderAt may report EOF with a full read that ends at the end of the file.
	if n, err := f.r.ReadAt(b, int64(f.DataOffset+t.Offset)); n < len(b) {
		return nil, fmt.Errorf("%s: tensor %q: %w", f.Path, t.Name, err)
	}
	return b, nil
}
