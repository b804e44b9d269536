package cuda

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"unsafe"
)

// Device is one GPU with its primary context, a stream and kvfoot's kernels loaded.
type Device struct {
	api     *driver
	ordinal int
	dev     int32
	ctx     uintptr
	stream  uintptr
	modules []uintptr
	funcs   map[string]uintptr

	name        string
	major       int
	minor       int
	sms         int
	totalBytes  uint64
	driverMajor int
	driverMinor int

	mu     sync.Mutex // serialises do and Close
	closed bool
	args   kernelArgs // the launch in progress's parameters (launch, under mu)
	stg    staging    // host int32 lists (ids, slots, block tables) on their way to kernels

	lt       *ltGEMM // cuBLASLt, when it loaded (cublaslt.go)
	gemmNote string  // why it did not, when lt is nil

	scores string // the AttentionScores kernels, f32 or mma ($KVFOOT_SCORES)

	graphs graphState // graph mode (graph.go)

	gran    uint64 // granularity of growable memory; 0: pools grow by copying (vmm.go)
	vmmNote string // why they do

	cache bufCache // freed buffers kept for reuse (bufcache.go)
}

var errClosed = errors.New("cuda: device is closed")

// Open loads the driver, retains GPU ordinal's primary context, creates the stream, loads
// the kernels and, when the machine has it, cuBLASLt for the GEMMs (see GEMMName).
// $KVFOOT_GRAPHS=1 turns graph mode on (SetGraphs); $KVFOOT_SCORES picks the attention-score
// kernels (AttentionScores); $KVFOOT_VMM=1 lets KV pools grow in place (vmm.go). Without
// libcuda.so.1 it fails with "no NVIDIA driver".
func Open(ordinal int) (*Device, error) {
	gemm, err := gemmChoice(os.Getenv(gemmEnv))
	if err != nil {
		return nil, err
	}
	graphs, err := graphsChoice(os.Getenv(graphsEnv))
	if err != nil {
		return nil, err
	}
	scores, err := scoresChoice(os.Getenv(scoresEnv))
	if err != nil {
		return nil, err
	}
	api, err := loadedDriver()
	if err != nil {
		return nil, err
	}
	d := &Device{api: api, ordinal: ordinal, funcs: map[string]uintptr{}, scores: scores}
	runtime.LockOSThread() // setup makes the context current on this thread
	defer runtime.UnlockOSThread()
	if err := d.setup(gemm); err != nil {
		return nil, err
	}
	d.initGraphs(graphs)
	return d, nil
}

func (d *Device) setup(gemm string) error {
	a := d.api
	if err := a.check("cuInit", a.cuInit(0)); err != nil {
		var e *Error
		if errors.As(err, &e) && e.Code == resultNoDevice {
			return fmt.Errorf("no NVIDIA GPU: %w", err)
		}
		return err
	}
	var v, n int32
	if err := a.check("cuDriverGetVersion", a.cuDriverGetVersion(&v)); err != nil {
		return err
	}
	d.driverMajor, d.driverMinor = int(v/1000), int(v%1000/10)
	if err := a.check("cuDeviceGetCount", a.cuDeviceGetCount(&n)); err != nil {
		return err
	}
	if d.ordinal < 0 || d.ordinal >= int(n) {
		return fmt.Errorf("cuda: device %d: this machine has %d GPU(s)", d.ordinal, n)
	}
	if err := a.check("cuDeviceGet", a.cuDeviceGet(&d.dev, int32(d.ordinal))); err != nil {
		return err
	}
	name := make([]byte, 256)
	if err := a.check("cuDeviceGetName", a.cuDeviceGetName(&name[0], int32(len(name)), d.dev)); err != nil {
		return err
	}
	d.name = cString(&name[0])
	for _, q := range []struct {
		attr int32
		dst  *int
	}{{attrComputeCapabilityMajor, &d.major}, {attrComputeCapabilityMinor, &d.minor}, {attrMultiprocessorCount, &d.sms}} {
		var x int32
		if err := a.check("cuDeviceGetAttribute", a.cuDeviceGetAttribute(&x, q.attr, d.dev)); err != nil {
			return err
		}
		*q.dst = int(x)
	}
	if d.major < 8 {
		return fmt.Errorf("cuda: %s has compute capability %d.%d; kvfoot's kernels need 8.0 or later (bf16 tensor cores)", d.name, d.major, d.minor)
	}
	if err := a.check("cuDeviceTotalMem", a.cuDeviceTotalMem(&d.totalBytes, d.dev)); err != nil {
		return err
	}
	if err := a.check("cuDevicePrimaryCtxRetain", a.cuDevicePrimaryCtxRetain(&d.ctx, d.dev)); err != nil {
		return err
	}
	if err := a.check("cuCtxSetCurrent", a.cuCtxSetCurrent(d.ctx)); err != nil {
		return err
	}
	if err := a.check("cuStreamCreate", a.cuStreamCreate(&d.stream, 0)); err != nil {
		return err
	}
	if err := d.setupVMM(); err != nil {
		return err
	}
	d.cache.limit = int64(d.totalBytes / 64) // 1.2 GiB of an H100: a study worker's batch of the built-in model's caches
	if err := d.loadModules(); err != nil {
		return err
	}
	return d.setupGEMM(gemm)
}

// do runs f with the device's context current on the calling thread, which it holds for the
// call: a context is current per thread, and Go moves goroutines between threads, so each call
// pins its goroutine and makes the context current first (cheap: no thread switch), instead of
// finding none (CUDA_ERROR_INVALID_CONTEXT, 201). The mutex serialises calls.
func (d *Device) do(f func() error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errClosed
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := d.api.check("cuCtxSetCurrent", d.api.cuCtxSetCurrent(d.ctx)); err != nil {
		return err
	}
	return f()
}

// Close waits for queued work, frees the device's own resources and ends its goroutine.
// Buffers the caller allocated must be freed before.
func (d *Device) Close() error {
	err := d.do(func() error {
		a := d.api
		// endSegment leaves the stream not capturing even when it fails, so the rest runs
		errs := []error{d.endSegment(), a.check("cuStreamSynchronize", a.cuStreamSynchronize(d.stream))}
		errs = append(errs, d.closeGraphs(), d.stg.free(a), d.cache.release(a))
		if d.lt != nil {
			errs = append(errs, d.lt.close(a))
		}
		for _, m := range d.modules {
			errs = append(errs, a.check("cuModuleUnload", a.cuModuleUnload(m)))
		}
		errs = append(errs, a.check("cuStreamDestroy", a.cuStreamDestroy(d.stream)),
			a.check("cuDevicePrimaryCtxRelease", a.cuDevicePrimaryCtxRelease(d.dev)))
		return errors.Join(errs...)
	})
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	return err
}

// Name is the GPU's name, e.g. "NVIDIA H100 80GB HBM3".
func (d *Device) Name() string { return d.name }

// ComputeCapability is the GPU's (major, minor) compute capability.
func (d *Device) ComputeCapability() (int, int) { return d.major, d.minor }

// Multiprocessors is the GPU's SM count.
func (d *Device) Multiprocessors() int { return d.sms }

// DriverVersion is the CUDA version the driver supports, e.g. (13, 0).
func (d *Device) DriverVersion() (int, int) { return d.driverMajor, d.driverMinor }

// MemInfo returns the free and total device memory in bytes; free counts the buffers this
// handle keeps for reuse, which an allocation that needs them gets back.
func (d *Device) MemInfo() (free, total uint64, err error) {
	err = d.do(func() error { return d.api.check("cuMemGetInfo", d.api.cuMemGetInfo(&free, &total)) })
	return free + uint64(d.cache.bytes), total, err
}

// Sync waits until every queued kernel has finished; a kernel's fault surfaces here.
func (d *Device) Sync() error {
	err := d.eager(func() error { return d.api.check("cuStreamSynchronize", d.api.cuStreamSynchronize(d.stream)) })
	if err == nil {
		d.stg.used = 0 // every staged copy has landed
	}
	return err
}

// Event marks a point in the device's stream, for timing.
type Event struct {
	d *Device
	h uintptr
}

// NewEvent creates a timing event.
func (d *Device) NewEvent() (*Event, error) {
	e := &Event{d: d}
	err := d.do(func() error { return d.api.check("cuEventCreate", d.api.cuEventCreate(&e.h, 0)) })
	return e, err
}

// Record marks the point after the work queued so far.
func (e *Event) Record() error {
	return e.d.eager(func() error { return e.d.api.check("cuEventRecord", e.d.api.cuEventRecord(e.h, e.d.stream)) })
}

// Since waits for e and returns the milliseconds between start and e.
func (e *Event) Since(start *Event) (float32, error) {
	var ms float32
	err := e.d.do(func() error {
		a := e.d.api
		if err := a.check("cuEventSynchronize", a.cuEventSynchronize(e.h)); err != nil {
			return err
		}
		return a.check("cuEventElapsedTime", a.cuEventElapsedTime(&ms, start.h, e.h))
	})
	return ms, err
}

// Destroy frees the event.
func (e *Event) Destroy() error {
	return e.d.do(func() error { return e.d.api.check("cuEventDestroy", e.d.api.cuEventDestroy(e.h)) })
}

// Buffer is a span of device memory. Its zero value is no buffer (a null pointer), which the
// kernels that take an optional input (a bias) read as absent.
type Buffer struct {
	Ptr   uint64
	Bytes int64
}

// Slice returns the part of b from byte off, n bytes long.
func (b Buffer) Slice(off, n int64) (Buffer, error) {
	if off < 0 || n < 0 || off+n > b.Bytes {
		return Buffer{}, fmt.Errorf("cuda: slice [%d, %d) of a %d-byte buffer", off, off+n, b.Bytes)
	}
	return Buffer{Ptr: b.Ptr + uint64(off), Bytes: n}, nil
}

// Alloc allocates bytes of device memory (cuMemAlloc; never managed memory). When the GPU
// cannot hold it, the error says how much is free.
func (d *Device) Alloc(bytes int64) (Buffer, error) {
	if bytes <= 0 {
		return Buffer{}, fmt.Errorf("cuda: allocate %d bytes: size must be positive", bytes)
	}
	b := Buffer{Bytes: bytes}
	err := d.eager(func() error {
		if p, ok := d.cache.take(bytes); ok {
			b.Ptr = p
			return nil
		}
		r := d.api.cuMemAlloc(&b.Ptr, uint64(bytes))
		if outOfMemory(r) && d.cache.bytes > 0 { // what the cache holds may be what is missing
			if err := d.cache.release(d.api); err != nil {
				return err
			}
			r = d.api.cuMemAlloc(&b.Ptr, uint64(bytes))
		}
		if err := d.api.check("cuMemAlloc", r); err != nil {
			var free, total uint64
			if d.api.cuMemGetInfo(&free, &total) == 0 {
				return fmt.Errorf("allocate %d MiB on %s (%d MiB free of %d MiB): %w", bytes>>20, d.name, free>>20, total>>20, err)
			}
			return err
		}
		return nil
	})
	return b, err
}

// Free releases a buffer from Alloc: into the handle's cache for the next Alloc of its size
// while the cache has room (bufcache.go), else to the driver.
func (d *Device) Free(b Buffer) error {
	if b.Ptr == 0 {
		return nil
	}
	return d.eager(func() error {
		if d.cache.put(b) {
			return nil
		}
		return d.api.check("cuMemFree", d.api.cuMemFree(b.Ptr))
	})
}

// Memset sets every byte of b to v, after the queued work.
//
// This and the copies below are queued on the device's own stream, not run on the legacy
// default stream, which would wait for the work of every other Device on the GPU (each
// study worker has its own, all in the one primary context).
func (d *Device) Memset(b Buffer, v byte) error {
	return d.eager(func() error {
		return d.api.check("cuMemsetD8Async", d.api.cuMemsetD8Async(b.Ptr, v, uint64(b.Bytes), d.stream))
	})
}

// Copy copies src's bytes to the start of dst after the queued work.
func (d *Device) Copy(dst, src Buffer) error {
	if src.Bytes > dst.Bytes {
		return fmt.Errorf("cuda: copy %d bytes into a %d-byte buffer", src.Bytes, dst.Bytes)
	}
	return d.eager(func() error {
		return d.api.check("cuMemcpyDtoDAsync", d.api.cuMemcpyDtoDAsync(dst.Ptr, src.Ptr, uint64(src.Bytes), d.stream))
	})
}

// Upload copies src (a slice of plain numbers) to the start of dst, after the queued work.
// It returns once src may be reused (the driver stages pageable memory); work queued on
// another Device that reads dst must wait for this one (Sync) first.
func Upload[T any](d *Device, dst Buffer, src []T) error {
	n := int64(len(src)) * int64(unsafe.Sizeof(*new(T)))
	if n > dst.Bytes {
		return fmt.Errorf("cuda: upload %d bytes into a %d-byte buffer", n, dst.Bytes)
	}
	if n == 0 {
		return nil
	}
	return d.eager(func() error {
		r := d.api.cuMemcpyHtoDAsync(dst.Ptr, unsafe.Pointer(&src[0]), uint64(n), d.stream)
		runtime.KeepAlive(src)
		return d.api.check("cuMemcpyHtoDAsync", r)
	})
}

// Download waits for the queued work and copies the start of src into dst. A copy to
// pageable memory returns once it is complete, and it is queued after the stream's work.
func Download[T any](d *Device, dst []T, src Buffer) error {
	n := int64(len(dst)) * int64(unsafe.Sizeof(*new(T)))
	if n > src.Bytes {
		return fmt.Errorf("cuda: download %d bytes from a %d-byte buffer", n, src.Bytes)
	}
	if n == 0 {
		return nil
	}
	err := d.eager(func() error {
		r := d.api.cuMemcpyDtoHAsync(unsafe.Pointer(&dst[0]), src.Ptr, uint64(n), d.stream)
		runtime.KeepAlive(dst)
		return d.api.check("cuMemcpyDtoHAsync", r)
	})
	if err == nil {
		d.stg.used = 0 // the copy waited for the stream: every staged copy has landed
	}
	return err
}
