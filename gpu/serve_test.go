package gpu

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/kvfoot/kvfoot/cuda"
	"github.com/kvfoot/kvfoot/kv"
)

// What a server asks of the GPU besides the forward: whether a fault is for want of memory,
// the bytes a request's cache will hold, a refusal without allocating, and memory given back
// when a request ends.

func TestOutOfMemory(t *testing.T) {
	oom := &cuda.Error{Op: "cuMemAlloc", Code: 2, Name: "CUDA_ERROR_OUT_OF_MEMORY"}
	launch := &cuda.Error{Op: "cuLaunchKernel", Code: 719, Name: "CUDA_ERROR_LAUNCH_FAILED"}
	for _, c := range []struct {
		err  error
		want bool
	}{
		{oom, true},
		{fmt.Errorf("the KV cache needs 8 more blocks: %w", fmt.Errorf("KV pool keys: %w", oom)), true},
		{Fault{fmt.Errorf("grow: %w", oom)}, true},
		{launch, false},
		{Fault{launch}, false},
		{errors.New("out of memory"), false}, // not the driver's
		{nil, false},
	} {
		if got := OutOfMemory(c.err); got != c.want {
			t.Errorf("OutOfMemory(%v) = %v, want %v", c.err, got, c.want)
		}
	}
	for _, c := range []struct {
		v          any
		fault, oom bool
	}{
		{Fault{oom}, true, true},
		{Fault{errors.New("the policy asks for attention scores")}, true, false},
		{fmt.Errorf("KV cache: %w", oom), true, true}, // Storage's error for its first pool
		{fmt.Errorf("launch: %w", launch), true, false},
		{errors.New("kv: policy: bad"), false, false},
		{"a string panic", false, false},
		{nil, false, false},
	} {
		if fault, isOOM := Classify(c.v); fault != c.fault || isOOM != c.oom {
			t.Errorf("Classify(%v) = %v, %v; want %v, %v", c.v, fault, isOOM, c.fault, c.oom)
		}
	}
}

// A full-attention request of 100 prompt tokens and 20 generated (the last never fed: 119
// entries per head) on 2 layers × 2 KV heads of dimension 64: the GPU holds a bf16 key and
// value per entry, 119·4·2·2·64 = 121856 bytes; the CPU's float32 twice that.
func TestStoredPrecisionBytes(t *testing.T) {
	s := kv.Shape{Layers: 2, Heads: 8, KVHeads: 2, HeadDim: 64}
	w := kv.Workload{Prompt: 100, MaxTokens: 20, Chunk: 32}
	for _, c := range []struct {
		spec     string
		cpu, gpu int64
	}{
		{"full", 2 * 121856, 121856},
		{"full+bf16", 121856, 121856},
	} {
		f, err := kv.Describe(s, c.spec)
		if err != nil {
			t.Fatal(err)
		}
		cpu, err := f.PeakBytes(w)
		if err != nil {
			t.Fatal(err)
		}
		g := *f
		g.Precision = StoredPrecision(f.Precision)
		gpu, err := g.PeakBytes(w)
		if err != nil {
			t.Fatal(err)
		}
		if cpu != c.cpu || gpu != c.gpu {
			t.Errorf("%s: predicted %d bytes on the CPU, %d on the GPU; want %d and %d", c.spec, cpu, gpu, c.cpu, c.gpu)
		}
	}
	if q := (kv.Precision{Name: "quant", Bits: 4, Group: 32, Residual: 32}); StoredPrecision(q) != q {
		t.Errorf("quant became %+v: kv's bytes of it bound the GPU's (float32 residual against bf16), so it is left as it is", StoredPrecision(q))
	}
}

// CheckStorage refuses what Storage refuses, with the same error, allocating nothing; Close
// gives a storage's pool back at once.
func TestGPUStorageCheckClose(t *testing.T) {
	g := openGPU(t)
	s := kv.Shape{Layers: 16, Heads: 32, KVHeads: 8, HeadDim: 64}
	quant, why := kv.Precision{Name: "quant", Bits: 4, Group: 32, Residual: 32}, "quant" // without kivi.cu's kernels
	if g.d.HasKernels(cuda.KIVIKernels...) {
		quant, why = kv.Precision{Name: "quant", Bits: 2, Group: 6, Residual: 32}, "split bytes"
	}
	for _, c := range []struct {
		rep  int
		p    kv.Precision
		want string
	}{
		{1, quant, why},
		{3, kv.Precision{}, ""}, // 8 stored heads are no number of copies of 3
	} {
		err := g.CheckStorage(s, c.rep, c.p)
		_, serr := g.Storage(s, c.rep, c.p)
		if err == nil || serr == nil || err.Error() != serr.Error() || !strings.Contains(err.Error(), c.want) {
			t.Errorf("rep %d, %+v: CheckStorage %v, Storage %v; want the same refusal naming %q", c.rep, c.p, err, serr, c.want)
		}
	}
	if err := g.CheckStorage(s, 1, kv.Precision{Name: "f32"}); err != nil {
		t.Fatal(err)
	}
	free0, _, err := g.MemInfo()
	if err != nil {
		t.Fatal(err)
	}
	// a block of 64 entries × 64 dims × bf16 K and V is 16 KiB: the initial 2·128 blocks are
	// 4 MiB, and room for 2048 free blocks grows the pool to 32 MiB
	st, err := g.Storage(s, 1, kv.Precision{})
	if err != nil {
		t.Fatal(err)
	}
	gs := st.(*storage)
	gs.reserve(16 * 128)
	held, _, _ := g.MemInfo()
	if err := gs.Close(); err != nil {
		t.Fatal(err)
	}
	free1, _, _ := g.MemInfo()
	if free0-held < 30<<20 || free0 > free1+(8<<20) {
		t.Errorf("free memory %d MiB before, %d MiB with the pool, %d MiB after Close: want the pool's 32+ MiB back", free0>>20, held>>20, free1>>20)
	}
	if err := gs.Close(); err != nil {
		t.Errorf("a second Close: %v", err)
	}
}
