package cuda

import (
	"fmt"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// cuResult is the driver's CUresult; 0 is CUDA_SUCCESS.
type cuResult int32

// Driver-API constants used here (cuda.h).
const (
	attrComputeCapabilityMajor = 75
	attrComputeCapabilityMinor = 76
	attrMultiprocessorCount    = 16
	funcAttrMaxDynamicShared   = 8
	jitErrorLogBuffer          = 5
	jitErrorLogBufferSize      = 6
	resultNoDevice             = 100
	resultUnsupportedPTX       = 222
	resultInvalidPTX           = 218
)

// driver holds the libcuda entry points. Versioned names (_v2) are the ABI the current
// headers map the plain names to.
type driver struct {
	cuInit                    func(flags uint32) cuResult
	cuDriverGetVersion        func(v *int32) cuResult
	cuGetErrorName            func(r cuResult, name **byte) cuResult
	cuDeviceGetCount          func(n *int32) cuResult
	cuDeviceGet               func(dev *int32, ordinal int32) cuResult
	cuDeviceGetName           func(name *byte, n int32, dev int32) cuResult
	cuDeviceGetAttribute      func(v *int32, attr int32, dev int32) cuResult
	cuDeviceTotalMem          func(bytes *uint64, dev int32) cuResult
	cuDevicePrimaryCtxRetain  func(ctx *uintptr, dev int32) cuResult
	cuDevicePrimaryCtxRelease func(dev int32) cuResult
	cuCtxSetCurrent           func(ctx uintptr) cuResult
	cuMemGetInfo              func(free, total *uint64) cuResult
	cuMemAlloc                func(ptr *uint64, bytes uint64) cuResult
	cuMemFree                 func(ptr uint64) cuResult
	cuMemcpyHtoDAsync         func(dst uint64, src unsafe.Pointer, bytes uint64, stream uintptr) cuResult
	cuMemAllocHost            func(p *unsafe.Pointer, bytes uint64) cuResult
	cuMemFreeHost             func(p unsafe.Pointer) cuResult
	cuMemcpyDtoHAsync         func(dst unsafe.Pointer, src uint64, bytes uint64, stream uintptr) cuResult
	cuMemcpyDtoDAsync         func(dst, src uint64, bytes uint64, stream uintptr) cuResult
	cuMemsetD8Async           func(dst uint64, v uint8, bytes uint64, stream uintptr) cuResult
	cuModuleLoadDataEx        func(mod *uintptr, image unsafe.Pointer, n uint32, opts *int32, vals *uintptr) cuResult
	cuModuleUnload            func(mod uintptr) cuResult
	cuModuleGetFunction       func(fn *uintptr, mod uintptr, name string) cuResult
	cuFuncSetAttribute        func(fn uintptr, attr int32, v int32) cuResult
	cuLaunchKernel            func(fn uintptr, gx, gy, gz, bx, by, bz, smem uint32, stream uintptr, params *unsafe.Pointer, extra *unsafe.Pointer) cuResult
	cuStreamCreate            func(s *uintptr, flags uint32) cuResult
	cuStreamDestroy           func(s uintptr) cuResult
	cuStreamSynchronize       func(s uintptr) cuResult
	cuEventCreate             func(e *uintptr, flags uint32) cuResult
	cuEventRecord             func(e, s uintptr) cuResult
	cuEventSynchronize        func(e uintptr) cuResult
	cuEventElapsedTime        func(ms *float32, start, end uintptr) cuResult
	cuEventDestroy            func(e uintptr) cuResult

	graphAPI // optional: nil functions and graphMissing set when the driver lacks them
	vmmAPI   // optional, as graphAPI (vmm.go)
}

// graphAPI is the stream-capture and graph entry points graph mode uses (graph.go).
type graphAPI struct {
	cuStreamBeginCapture        func(s uintptr, mode int32) cuResult
	cuStreamEndCapture          func(s uintptr, graph *uintptr) cuResult
	cuStreamIsCapturing         func(s uintptr, status *int32) cuResult
	cuGraphGetNodes             func(graph uintptr, nodes *uintptr, n *uint64) cuResult
	cuGraphInstantiateWithFlags func(exec *uintptr, graph uintptr, flags uint64) cuResult
	cuGraphExecUpdate           func(exec, graph uintptr, info *graphExecUpdateResultInfo) cuResult
	cuGraphLaunch               func(exec, s uintptr) cuResult
	cuGraphDestroy              func(graph uintptr) cuResult
	cuGraphExecDestroy          func(exec uintptr) cuResult
	graphMissing                string // the first entry point the driver lacks, if any
}

var (
	driverOnce sync.Once
	driverAPI  *driver
	driverErr  error
)

// loadedDriver loads libcuda.so.1 once per process.
func loadedDriver() (*driver, error) {
	driverOnce.Do(func() { driverAPI, driverErr = loadDriver("libcuda.so.1") })
	return driverAPI, driverErr
}

// loadDriver opens the driver library at path and binds every entry point, failing with the
// library's name when it or a symbol is missing.
func loadDriver(path string) (*driver, error) {
	lib, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return nil, fmt.Errorf("no NVIDIA driver (%s): %v", path, err)
	}
	d := &driver{}
	binds := []struct {
		fn    any
		names []string
	}{
		{&d.cuInit, []string{"cuInit"}},
		{&d.cuDriverGetVersion, []string{"cuDriverGetVersion"}},
		{&d.cuGetErrorName, []string{"cuGetErrorName"}},
		{&d.cuDeviceGetCount, []string{"cuDeviceGetCount"}},
		{&d.cuDeviceGet, []string{"cuDeviceGet"}},
		{&d.cuDeviceGetName, []string{"cuDeviceGetName"}},
		{&d.cuDeviceGetAttribute, []string{"cuDeviceGetAttribute"}},
		{&d.cuDeviceTotalMem, []string{"cuDeviceTotalMem_v2"}},
		{&d.cuDevicePrimaryCtxRetain, []string{"cuDevicePrimaryCtxRetain"}},
		{&d.cuDevicePrimaryCtxRelease, []string{"cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease"}},
		{&d.cuCtxSetCurrent, []string{"cuCtxSetCurrent"}},
		{&d.cuMemGetInfo, []string{"cuMemGetInfo_v2"}},
		{&d.cuMemAlloc, []string{"cuMemAlloc_v2"}},
		{&d.cuMemFree, []string{"cuMemFree_v2"}},
		{&d.cuMemcpyHtoDAsync, []string{"cuMemcpyHtoDAsync_v2"}},
		{&d.cuMemAllocHost, []string{"cuMemAllocHost_v2"}},
		{&d.cuMemFreeHost, []string{"cuMemFreeHost"}},
		{&d.cuMemcpyDtoHAsync, []string{"cuMemcpyDtoHAsync_v2"}},
		{&d.cuMemcpyDtoDAsync, []string{"cuMemcpyDtoDAsync_v2"}},
		{&d.cuMemsetD8Async, []string{"cuMemsetD8Async"}},
		{&d.cuModuleLoadDataEx, []string{"cuModuleLoadDataEx"}},
		{&d.cuModuleUnload, []string{"cuModuleUnload"}},
		{&d.cuModuleGetFunction, []string{"cuModuleGetFunction"}},
		{&d.cuFuncSetAttribute, []string{"cuFuncSetAttribute"}},
		{&d.cuLaunchKernel, []string{"cuLaunchKernel"}},
		{&d.cuStreamCreate, []string{"cuStreamCreate"}},
		{&d.cuStreamDestroy, []string{"cuStreamDestroy_v2"}},
		{&d.cuStreamSynchronize, []string{"cuStreamSynchronize"}},
		{&d.cuEventCreate, []string{"cuEventCreate"}},
		{&d.cuEventRecord, []string{"cuEventRecord"}},
		{&d.cuEventSynchronize, []string{"cuEventSynchronize"}},
		{&d.cuEventElapsedTime, []string{"cuEventElapsedTime_v2", "cuEventElapsedTime"}},
		{&d.cuEventDestroy, []string{"cuEventDestroy_v2"}},
	}
	for _, b := range binds {
		var sym uintptr
		for _, name := range b.names {
			if sym, err = purego.Dlsym(lib, name); err == nil {
				break
			}
		}
		if sym == 0 {
			return nil, fmt.Errorf("NVIDIA driver (%s) too old: no %s: %v", path, b.names[0], err)
		}
		purego.RegisterFunc(b.fn, sym)
	}
	bindGraphAPI(lib, &d.graphAPI)
	bindVMMAPI(lib, &d.vmmAPI)
	d.bindDirect(symbolOf(lib))
	return d, nil
}

// symbolOf looks names up in lib: 0 for one it lacks.
func symbolOf(lib uintptr) func(name string) uintptr {
	return func(name string) uintptr {
		sym, err := purego.Dlsym(lib, name)
		if err != nil {
			return 0
		}
		return sym
	}
}

// bindGraphAPI binds the graph entry points; a driver without one of them still runs, with
// graph mode off (graphMissing names what it lacks).
func bindGraphAPI(lib uintptr, g *graphAPI) {
	if missing := bindOptional(lib, []optionalBind{
		{&g.cuStreamBeginCapture, "cuStreamBeginCapture_v2"},
		{&g.cuStreamEndCapture, "cuStreamEndCapture"},
		{&g.cuStreamIsCapturing, "cuStreamIsCapturing"},
		{&g.cuGraphGetNodes, "cuGraphGetNodes"},
		{&g.cuGraphInstantiateWithFlags, "cuGraphInstantiateWithFlags"},
		{&g.cuGraphExecUpdate, "cuGraphExecUpdate_v2"},
		{&g.cuGraphLaunch, "cuGraphLaunch"},
		{&g.cuGraphDestroy, "cuGraphDestroy"},
		{&g.cuGraphExecDestroy, "cuGraphExecDestroy"},
	}); missing != "" {
		*g = graphAPI{graphMissing: missing}
	}
}

// optionalBind is an entry point a feature needs: the function variable and its symbol.
type optionalBind struct {
	fn   any
	name string
}

// bindOptional binds every entry point of binds, or returns the first that lib lacks.
func bindOptional(lib uintptr, binds []optionalBind) (missing string) {
	for _, b := range binds {
		sym, err := purego.Dlsym(lib, b.name)
		if err != nil || sym == 0 {
			return b.name
		}
		purego.RegisterFunc(b.fn, sym)
	}
	return ""
}

// Error is a failed driver call: the operation and the CUresult with its name.
type Error struct {
	Op   string
	Code int
	Name string
}

func (e *Error) Error() string { return fmt.Sprintf("cuda: %s: %s (%d)", e.Op, e.Name, e.Code) }

// check turns a CUresult into an *Error naming op, or nil on success.
func (d *driver) check(op string, r cuResult) error {
	if r == 0 {
		return nil
	}
	name := fmt.Sprintf("CUresult %d", int(r))
	var s *byte
	if d.cuGetErrorName(r, &s) == 0 && s != nil {
		name = cString(s)
	}
	return &Error{Op: op, Code: int(r), Name: name}
}

// cString copies a NUL-terminated C string.
func cString(p *byte) string {
	var b []byte
	for ptr := unsafe.Pointer(p); *(*byte)(ptr) != 0; ptr = unsafe.Add(ptr, 1) {
		b = append(b, *(*byte)(ptr))
	}
	return string(b)
}
