// Package compute is the seam between the forward pass and the hardware it runs
// on: the Backend interface of the forward's named operations, the Buf values that
// activations travel in, and the CPU's implementation over package tensor. A GPU
// backend implements the same interface in a package of its own.
package compute

import "github.com/kvfoot/kvfoot/tensor"

// Backend computes the forward pass's operations. forward.go states the pass once,
// over these names; a backend holds the activations where it computes (the CPU's in
// host memory, a GPU's in device memory) and finds its own copy of each weight from
// the model's (a GPU backend uploads them when it is made). Adding a backend adds an
// implementation of this interface and a kv storage for its caches (kv.Storage); model's
// forward is not touched. Adding a weight type touches neither: the typed matrix
// (tensor.Mat) dispatches on its element type inside the backend.
type Backend interface {
	// Name is what commands print: "cpu", "cuda:0 (NVIDIA H100 80GB HBM3)".
	Name() string
	// Alloc returns a buffer of n float values.
	Alloc(n int) Buf
	// Embed writes the embedding rows of ids into dst [len(ids), e.Cols].
	Embed(dst Buf, e *tensor.Mat, ids []int)
	// RMSNorm writes rows of x [rows, len(w)], normalised and scaled by w, into dst.
	RMSNorm(dst, x Buf, w []float32, eps float32, rows int)
	// Linear computes every out's Dst[rows, W.Rows] = x[rows, W.Cols]·Wᵀ + bias: the
	// products that share x run as one job.
	Linear(x Buf, rows int, outs ...Out)
	// RoPETables writes the rotary cosines and sines [rows, len(invFreq)] of positions
	// pos … pos+rows−1.
	RoPETables(cos, sin Buf, invFreq []float32, pos, rows int)
	// RoPE rotates each of the heads of x [rows, heads·head_dim] by cos and sin
	// (rotate-half pairing, as Hugging Face checkpoints are laid out).
	RoPE(x Buf, rows, heads int, cos, sin Buf)
	// SwiGLU sets gate = silu(gate) ⊙ up.
	SwiGLU(gate, up Buf)
	// GeGLU sets gate = gelu_tanh(gate) ⊙ up, GELU's tanh approximation (Gemma's
	// gelu_pytorch_tanh).
	GeGLU(gate, up Buf)
	// Scale sets x *= s (Gemma's embedding normalizer).
	Scale(x Buf, s float32)
	// SoftCap sets x = cap·tanh(x/cap) (Gemma 2's final logit soft-capping).
	SoftCap(x Buf, cap float32)
	// Add sets dst += x.
	Add(dst, x Buf)
	// Host returns b's values in host memory: b itself on the CPU, else a copy in dst
	// (grown as needed).
	Host(b Buf, dst []float32) []float32
}

// Freer is a Backend whose buffers hold memory that the garbage collector does not see (a
// GPU's): Free returns a buffer from Alloc, after the work queued on it. The CPU's buffers
// are plain Go memory and need no Free.
type Freer interface {
	Free(b Buf) error
}

// Out is one product of Backend.Linear: Dst = x·Wᵀ + Bias (nil: none).
type Out struct {
	Dst  Buf
	W    *tensor.Mat
	Bias []float32
}

// Buf is a buffer of float values on a backend, [rows, cols] as its user lays it
// out: host float32 values (H) for the CPU; for a GPU, the device address of its
// first value (Dev) and the bytes of each (Elem). A plain value, so that passing and
// slicing buffers allocates nothing.
type Buf struct {
	H    []float32
	Dev  uint64
	N    int // values
	Elem int // bytes per value on a device (0 on the host)
}

// Host is a host buffer holding x.
func Host(x []float32) Buf { return Buf{H: x, N: len(x)} }

// Len is the number of values.
func (b Buf) Len() int { return b.N }

// Slice is the part [i, j) of the buffer, sharing its memory.
func (b Buf) Slice(i, j int) Buf {
	if b.Elem == 0 {
		return Buf{H: b.H[i:j], N: j - i}
	}
	if i < 0 || j < i || j > b.N {
		panic("model: Buf.Slice out of range")
	}
	return Buf{Dev: b.Dev + uint64(i*b.Elem), N: j - i, Elem: b.Elem}
}

// HostOf returns the values of a host buffer; it panics on a device buffer (a cache
// of one backend fed by another's forward is a programming error).
func HostOf(b Buf) []float32 {
	if b.Elem != 0 {
		panic("model: a device buffer where host memory was expected")
	}
	return b.H
}
