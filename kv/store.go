package kv

import (
	"slices"

	"github.com/kvfoot/kvfoot/internal/rows"
	"github.com/kvfoot/kvfoot/tensor"
)

// store holds the keys and values of one KV head, row by row (d floats per row).
// Implementations differ only in precision; positions live in head.
type store interface {
	// appendRows adds n rows of keys and values; row i of k starts at k[i*stride:].
	appendRows(k, v []float32, n, stride int)
	// view returns all rows as float32: the storage itself for f32, otherwise
	// dequantized into kbuf/vbuf (grown as needed and returned for reuse).
	view(kbuf, vbuf *[]float32) (k, v []float32)
	// keep keeps the rows idx (ascending, unique) in that order.
	keep(idx []int)
	// drop drops rows lo..hi-1 and keeps the others in order.
	drop(lo, hi int)
	// truncate keeps the first n rows.
	truncate(n int)
	// bytes is the real storage of the rows: keys, values and quantization scales.
	bytes() int64
}

// rowStore is a store that converts rows [j0, j1) of keys or values to float32 into
// dst on demand: decode reads it tile by tile, each stored byte once, instead of
// converting all rows (view) at every step.
type rowStore interface {
	keyRows(dst []float32, j0, j1 int)
	valueRows(dst []float32, j0, j1 int)
}

// f32Store keeps rows in float32, contiguous, so attention reads them in place.
type f32Store struct {
	d    int
	k, v []float32
}

func (s *f32Store) appendRows(k, v []float32, n, stride int) {
	// One growth for a chunk of rows, not one a row, with room for half as many again:
	// a pre-fill's chunk grown to fit exactly made the next decode step copy the
	// whole store into fresh memory (100-150 ms at the first token after a 512-token
	// SmolLM2 pre-fill on the development VM, where a fresh page costs ~12 µs).
	if cap(s.k)-len(s.k) < n*s.d {
		room := n*s.d + (len(s.k)+n*s.d)/2
		s.k, s.v = slices.Grow(s.k, room), slices.Grow(s.v, room)
	}
	for i := 0; i < n; i++ {
		s.k = append(s.k, k[i*stride:i*stride+s.d]...)
		s.v = append(s.v, v[i*stride:i*stride+s.d]...)
	}
}

func (s *f32Store) view(_, _ *[]float32) ([]float32, []float32) { return s.k, s.v }

func (s *f32Store) keep(idx []int) {
	s.k = keepRows(s.k, idx, s.d)
	s.v = keepRows(s.v, idx, s.d)
}

func (s *f32Store) drop(lo, hi int) {
	s.k, s.v = rows.Drop(s.k, lo, hi, s.d), rows.Drop(s.v, lo, hi, s.d)
}

func (s *f32Store) truncate(n int) { s.k, s.v = s.k[:n*s.d], s.v[:n*s.d] }

func (s *f32Store) bytes() int64 { return int64(len(s.k)+len(s.v)) * 4 }

// bf16Store keeps rows in bfloat16 (round to nearest even), half the bytes of f32.
type bf16Store struct {
	d    int
	k, v []uint16
}

func (s *bf16Store) appendRows(k, v []float32, n, stride int) {
	s.k, s.v = slices.Grow(s.k, n*s.d), slices.Grow(s.v, n*s.d)
	for i := 0; i < n; i++ {
		for _, x := range k[i*stride : i*stride+s.d] {
			s.k = append(s.k, tensor.FloatToBF16(x))
		}
		for _, x := range v[i*stride : i*stride+s.d] {
			s.v = append(s.v, tensor.FloatToBF16(x))
		}
	}
}

func (s *bf16Store) view(kbuf, vbuf *[]float32) ([]float32, []float32) {
	k, v := grow(kbuf, len(s.k)), grow(vbuf, len(s.v))
	tensor.BF16ToFloats(k, s.k)
	tensor.BF16ToFloats(v, s.v)
	return k, v
}

func (s *bf16Store) keyRows(dst []float32, j0, j1 int) { tensor.BF16ToFloats(dst, s.k[j0*s.d:j1*s.d]) }
func (s *bf16Store) valueRows(dst []float32, j0, j1 int) {
	tensor.BF16ToFloats(dst, s.v[j0*s.d:j1*s.d])
}

func (s *bf16Store) keep(idx []int) {
	s.k = keepRows(s.k, idx, s.d)
	s.v = keepRows(s.v, idx, s.d)
}

func (s *bf16Store) drop(lo, hi int) {
	s.k, s.v = rows.Drop(s.k, lo, hi, s.d), rows.Drop(s.v, lo, hi, s.d)
}

func (s *bf16Store) truncate(n int) { s.k, s.v = s.k[:n*s.d], s.v[:n*s.d] }

func (s *bf16Store) bytes() int64 { return int64(len(s.k)+len(s.v)) * 2 }

// keepRows compacts rows of width d in place; idx is ascending so every row moves
// towards the front and nothing is overwritten before it is read.
func keepRows[T any](x []T, idx []int, d int) []T {
	for i, j := range idx {
		if i != j {
			copy(x[i*d:(i+1)*d], x[j*d:(j+1)*d])
		}
	}
	return x[:len(idx)*d]
}

// grow returns (*buf)[:n], reallocating only when the capacity is short.
func grow(buf *[]float32, n int) []float32 {
	if cap(*buf) < n {
		*buf = make([]float32, n, n+n/4)
	}
	*buf = (*buf)[:n]
	return *buf
}

// growN is grow for any element type.
func growN[T any](buf *[]T, n int) []T {
	if cap(*buf) < n {
		*buf = make([]T, n, n+n/4)
	}
	*buf = (*buf)[:n]
	return *buf
}
