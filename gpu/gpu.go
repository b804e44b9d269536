// Package gpu runs kvfoot's forward pass and KV caches on an NVIDIA GPU: a compute.Backend over
// package cuda's kernels with the weights resident in bf16, and a kv.Storage over its paged
// pool, each (layer, KV head) holding its own number of entries.
//
// compute.Backend's and kv.Storage's methods return no errors, so a failure inside them (a
// kernel launch, an allocation) panics with a Fault; commands turn it back into an error with
// Recover. Everything that can be checked up front (the device, the model's shape, memory,
// the policy's precision) is checked by Open, Upload and the storage maker, which return errors.
package gpu

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/kvfoot/kvfoot/cuda"
)

// GPU is one opened device.
type GPU struct {
	d       *cuda.Device
	ordinal int
}

// ParseDevice reads a device name: "cuda" (GPU 0) or "cuda:N". ok is false for a name that is
// not a CUDA device (the caller's other choices: "cpu", "auto").
func ParseDevice(name string) (ordinal int, ok bool, err error) {
	if name == "cuda" {
		return 0, true, nil
	}
	rest, found := strings.CutPrefix(name, "cuda:")
	if !found {
		return 0, false, nil
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 0 {
		return 0, true, fmt.Errorf("device %q: want cuda or cuda:N with N a GPU number ≥ 0", name)
	}
	return n, true, nil
}

// Open opens the GPU that device names ("cuda", "cuda:N"). It loads the NVIDIA driver only
// now: a program that never calls Open never needs it.
func Open(device string) (*GPU, error) {
	n, ok, err := ParseDevice(device)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("device %q: not a CUDA device (want cuda or cuda:N)", device)
	}
	d, err := cuda.Open(n)
	if err != nil {
		return nil, fmt.Errorf("device %s: %w", device, err)
	}
	return &GPU{d: d, ordinal: n}, nil
}

// Reopen opens another handle on the same GPU: its own stream and launch lock in the same
// context, so that memory (the weights, Share) is valid on both and their kernels overlap.
func (g *GPU) Reopen() (*GPU, error) { return Open(fmt.Sprintf("cuda:%d", g.ordinal)) }

// Close releases the device. Backends and storages made from it must not be used afterwards.
func (g *GPU) Close() error { return g.d.Close() }

// Device is the cuda device, for benchmarks and tests.
func (g *GPU) Device() *cuda.Device { return g.d }

// Name is how commands name the device: "cuda:0 (NVIDIA H100 80GB HBM3)".
func (g *GPU) Name() string { return fmt.Sprintf("cuda:%d (%s)", g.ordinal, g.d.Name()) }

// MemInfo returns the device's free and total memory in bytes.
func (g *GPU) MemInfo() (free, total uint64, err error) { return g.d.MemInfo() }

// Fault is the panic value of a GPU operation that failed inside a method with no error
// result (compute.Backend, kv.Storage).
type Fault struct{ Err error }

func (f Fault) Error() string { return "gpu: " + f.Err.Error() }
func (f Fault) Unwrap() error { return f.Err }

// OutOfMemory says whether err is, or wraps, the driver's CUDA_ERROR_OUT_OF_MEMORY: an
// allocation the device could not make, which may succeed once other work frees memory,
// unlike a failed launch.
func OutOfMemory(err error) bool {
	var e *cuda.Error
	return errors.As(err, &e) && e.Code == cudaErrorOutOfMemory
}

// cudaErrorOutOfMemory is CUDA_ERROR_OUT_OF_MEMORY (cuda.h).
const cudaErrorOutOfMemory = 2

// Classify says whether v, a panic value or an error, is a failure of the GPU (a Fault, or
// an error of the driver), and whether the GPU ran out of memory: a server fails the
// request with 503 then, 500 otherwise.
func Classify(v any) (fault, outOfMemory bool) {
	err, ok := v.(error)
	if !ok {
		return false, false
	}
	var f Fault
	var e *cuda.Error
	if !errors.As(err, &f) && !errors.As(err, &e) {
		return false, false
	}
	return true, OutOfMemory(err)
}

// Recover turns a Fault panic into *err; use it deferred around a forward pass or a
// generation on the GPU. Other panics go on.
func Recover(err *error) {
	r := recover()
	if r == nil {
		return
	}
	var f Fault
	if e, ok := r.(error); ok && errors.As(e, &f) {
		*err = f
		return
	}
	panic(r)
}

// check panics with a Fault when err is not nil.
func check(err error) {
	if err != nil {
		panic(Fault{err})
	}
}

// gib formats bytes in GiB for messages.
func gib(b uint64) string { return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30)) }
