package gguf

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"

	"github.com/kvfoot/kvfoot/internal/outfile"
)

// Tensor is a tensor to write: Data holds its bytes in its type's layout.
type Tensor struct {
	Name string
	Dims []uint64 // ggml order: Dims[0] is contiguous
	Type Type
	Data []byte
}

// WriteFile writes a GGUF file to path through a temporary file, so that a failure
// leaves no half-written file; without force it refuses to replace path.
func WriteFile(path string, kv []KV, tensors []Tensor, force bool) error {
	f, err := outfile.Create(path, force)
	if err != nil {
		return err
	}
	if err := Write(f, kv, tensors); err != nil {
		f.Abort()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Commit()
}

// Write writes a GGUF v3 file: the metadata in the given order (each value's GGUF
// type follows from its Go type, as Read returns them), the tensor infos, then the
// tensors in order, each at a multiple of general.alignment (32 when kv has none).
// It checks everything before writing anything.
func Write(w io.Writer, kv []KV, tensors []Tensor) error {
	align := uint64(DefaultAlignment)
	seen := map[string]bool{}
	for _, e := range kv {
		if seen[e.Key] {
			return fmt.Errorf("metadata %q: appears twice", e.Key)
		}
		seen[e.Key] = true
		if err := checkValue(e.Value, 0); err != nil {
			return fmt.Errorf("metadata %q: %w", e.Key, err)
		}
		if e.Key == "general.alignment" {
			a, ok := e.Value.(uint32)
			if !ok || a == 0 || a&(a-1) != 0 {
				return fmt.Errorf("metadata \"general.alignment\": %v, want a uint32 power of two", e.Value)
			}
			align = uint64(a)
		}
	}
	infos := make([]TensorInfo, len(tensors))
	names := map[string]bool{}
	var off uint64
	for i, t := range tensors {
		if names[t.Name] {
			return fmt.Errorf("tensor %q: appears twice", t.Name)
		}
		names[t.Name] = true
		info, ok := types[t.Type]
		if !ok {
			return fmt.Errorf("tensor %q: unknown tensor type %d", t.Name, uint32(t.Type))
		}
		if len(t.Dims) > maxDims {
			return fmt.Errorf("tensor %q: %d dimensions, at most %d", t.Name, len(t.Dims), maxDims)
		}
		ti := TensorInfo{Name: t.Name, Dims: t.Dims, Type: t.Type}
		if len(t.Dims) > 0 && t.Dims[0]%info.values != 0 {
			return fmt.Errorf("tensor %q: dimension 0 is %d, not a multiple of %s's block of %d", t.Name, t.Dims[0], t.Type, info.values)
		}
		ti.Size = ti.Elements() / info.values * info.bytes
		if uint64(len(t.Data)) != ti.Size {
			return fmt.Errorf("tensor %q: %d bytes of data, its dimensions %v of %s need %d", t.Name, len(t.Data), t.Dims, t.Type, ti.Size)
		}
		off = alignUp(off, align)
		ti.Offset = off
		off += ti.Size
		infos[i] = ti
	}

	bw := &binWriter{w: bufio.NewWriterSize(w, 1<<20)}
	bw.raw([]byte(Magic))
	bw.u32(3)
	bw.u64(uint64(len(tensors)))
	bw.u64(uint64(len(kv)))
	for _, e := range kv {
		bw.str(e.Key)
		bw.value(e.Value, true)
	}
	for _, t := range infos {
		bw.str(t.Name)
		bw.u32(uint32(len(t.Dims)))
		for _, d := range t.Dims {
			bw.u64(d)
		}
		bw.u32(uint32(t.Type))
		bw.u64(t.Offset)
	}
	bw.pad(align)
	base := bw.n
	for i, t := range tensors {
		bw.pad0(base + infos[i].Offset)
		bw.raw(t.Data)
	}
	if bw.err == nil {
		bw.err = bw.w.Flush()
	}
	return bw.err
}

// valueType is the GGUF type of a Go value, 0 and false for one Write cannot encode.
func valueType(v any) (ValueType, bool) {
	switch v.(type) {
	case uint8:
		return TypeUint8, true
	case int8:
		return TypeInt8, true
	case uint16:
		return TypeUint16, true
	case int16:
		return TypeInt16, true
	case uint32:
		return TypeUint32, true
	case int32:
		return TypeInt32, true
	case float32:
		return TypeFloat32, true
	case bool:
		return TypeBool, true
	case string:
		return TypeString, true
	case uint64:
		return TypeUint64, true
	case int64:
		return TypeInt64, true
	case float64:
		return TypeFloat64, true
	case Array:
		return TypeArray, true
	}
	return 0, false
}

func checkValue(v any, depth int) error {
	if _, ok := valueType(v); !ok {
		return fmt.Errorf("a %T cannot be written", v)
	}
	a, ok := v.(Array)
	if !ok {
		return nil
	}
	if depth >= maxNesting {
		return fmt.Errorf("arrays nested deeper than %d", maxNesting)
	}
	if et, ok := sliceElem(a.Values); !ok || et != a.Elem {
		return fmt.Errorf("array of %s holds %T", a.Elem, a.Values)
	}
	if sub, ok := a.Values.([]Array); ok {
		for i, s := range sub {
			if err := checkValue(s, depth+1); err != nil {
				return fmt.Errorf("element %d: %w", i, err)
			}
		}
	}
	return nil
}

// sliceElem is the element type of an Array's Values.
func sliceElem(v any) (ValueType, bool) {
	switch v.(type) {
	case []uint8:
		return TypeUint8, true
	case []int8:
		return TypeInt8, true
	case []uint16:
		return TypeUint16, true
	case []int16:
		return TypeInt16, true
	case []uint32:
		return TypeUint32, true
	case []int32:
		return TypeInt32, true
	case []float32:
		return TypeFloat32, true
	case []bool:
		return TypeBool, true
	case []string:
		return TypeString, true
	case []uint64:
		return TypeUint64, true
	case []int64:
		return TypeInt64, true
	case []float64:
		return TypeFloat64, true
	case []Array:
		return TypeArray, true
	}
	return 0, false
}

// binWriter writes little-endian fields and remembers the first error.
type binWriter struct {
	w   *bufio.Writer
	n   uint64
	err error
}

func (b *binWriter) raw(p []byte) {
	if b.err != nil {
		return
	}
	k, err := b.w.Write(p)
	b.n += uint64(k)
	b.err = err
}

func (b *binWriter) u8(v uint8) { b.raw([]byte{v}) }

func (b *binWriter) u16(v uint16) {
	var p [2]byte
	binary.LittleEndian.PutUint16(p[:], v)
	b.raw(p[:])
}

func (b *binWriter) u32(v uint32) {
	var p [4]byte
	binary.LittleEndian.PutUint32(p[:], v)
	b.raw(p[:])
}

func (b *binWriter) u64(v uint64) {
	var p [8]byte
	binary.LittleEndian.PutUint64(p[:], v)
	b.raw(p[:])
}

func (b *binWriter) str(s string) {
	b.u64(uint64(len(s)))
	b.raw([]byte(s))
}

func (b *binWriter) pad(align uint64) { b.pad0(alignUp(b.n, align)) }

// pad0 writes zeros up to offset to.
func (b *binWriter) pad0(to uint64) {
	for b.n < to && b.err == nil {
		b.raw(make([]byte, min(to-b.n, 4096)))
	}
}

// value writes v, preceded by its type tag when tagged (array elements have none).
func (b *binWriter) value(v any, tagged bool) {
	t, _ := valueType(v)
	if tagged {
		b.u32(uint32(t))
	}
	switch x := v.(type) {
	case uint8:
		b.u8(x)
	case int8:
		b.u8(uint8(x))
	case uint16:
		b.u16(x)
	case int16:
		b.u16(uint16(x))
	case uint32:
		b.u32(x)
	case int32:
		b.u32(uint32(x))
	case float32:
		b.u32(math.Float32bits(x))
	case bool:
		if x {
			b.u8(1)
		} else {
			b.u8(0)
		}
	case string:
		b.str(x)
	case uint64:
		b.u64(x)
	case int64:
		b.u64(uint64(x))
	case float64:
		b.u64(math.Float64bits(x))
	case Array:
		b.u32(uint32(x.Elem))
		b.u64(uint64(x.Len()))
		eachElem(x, func(e any) { b.value(e, false) })
	}
}

func eachElem(a Array, fn func(any)) {
	switch s := a.Values.(type) {
	case []uint8:
		each(s, fn)
	case []int8:
		each(s, fn)
	case []uint16:
		each(s, fn)
	case []int16:
		each(s, fn)
	case []uint32:
		each(s, fn)
	case []int32:
		each(s, fn)
	case []float32:
		each(s, fn)
	case []bool:
		each(s, fn)
	case []string:
		each(s, fn)
	case []uint64:
		each(s, fn)
	case []int64:
		each(s, fn)
	case []float64:
		each(s, fn)
	case []Array:
		each(s, fn)
	}
}

func each[T any](s []T, fn func(any)) {
	for _, v := range s {
		fn(v)
	}
}
