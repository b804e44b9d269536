package cuda

import (
	"unsafe"

	"github.com/ebitengine/purego"
)

// The entry points a forward calls hundreds of times (a launch, the context before it, a
// staged copy, a GEMM) go straight through purego.SyscallN instead of RegisterFunc's
// bindings, which call through reflection: BenchmarkBindings, a call to a C function (a
// purego callback, whose own cost is in both figures) of cuLaunchKernel's 11 arguments
// 1.80 µs reflected against 1.06 direct, of cuCtxSetCurrent's one 0.61 against 0.39
// (development machine, 2026-12-07). A decode step of the 8B shape launches about 400
// kernels, each after a cuCtxSetCurrent; a study's batched step of the built-in model
// several per sample and layer.

// call calls the C function at sym and returns its int result (the low 32 bits of the
// result register; the rest is not defined by the C ABI). uintptrescapes keeps what a
// pointer argument converted to uintptr in the caller's call expression points to alive
// and in place until the call returns, as for SyscallN itself.
//
//go:uintptrescapes
func call(sym uintptr, args ...uintptr) int32 {
	r, _, _ := purego.SyscallN(sym, args...)
	return int32(r)
}

// bindDirect rebinds the driver's per-step entry points to direct calls; lookup gives a
// symbol's address, 0 when the library lacks it (the reflective binding then stays).
func (d *driver) bindDirect(lookup func(name string) uintptr) {
	if sym := lookup("cuCtxSetCurrent"); sym != 0 {
		d.cuCtxSetCurrent = func(ctx uintptr) cuResult { return cuResult(call(sym, ctx)) }
	}
	if sym := lookup("cuLaunchKernel"); sym != 0 {
		d.cuLaunchKernel = func(fn uintptr, gx, gy, gz, bx, by, bz, smem uint32, stream uintptr, params *unsafe.Pointer, extra *unsafe.Pointer) cuResult {
			return cuResult(call(sym, fn, uintptr(gx), uintptr(gy), uintptr(gz), uintptr(bx), uintptr(by), uintptr(bz),
				uintptr(smem), stream, uintptr(unsafe.Pointer(params)), uintptr(unsafe.Pointer(extra))))
		}
	}
	if sym := lookup("cuMemcpyHtoDAsync_v2"); sym != 0 {
		d.cuMemcpyHtoDAsync = func(dst uint64, src unsafe.Pointer, bytes uint64, stream uintptr) cuResult {
			return cuResult(call(sym, uintptr(dst), uintptr(src), uintptr(bytes), stream))
		}
	}
	if sym := lookup("cuGraphLaunch"); sym != 0 {
		d.cuGraphLaunch = func(exec, s uintptr) cuResult { return cuResult(call(sym, exec, s)) }
	}
}

// bindDirect rebinds cublasLtMatmul, one call per matrix product, to a direct call.
func (api *cublasLtAPI) bindDirect(lookup func(name string) uintptr) {
	sym := lookup("cublasLtMatmul")
	if sym == 0 {
		return
	}
	api.matmul = func(handle, desc uintptr, alpha unsafe.Pointer, a uint64, aDesc uintptr, b uint64, bDesc uintptr,
		beta unsafe.Pointer, c uint64, cDesc uintptr, d uint64, dDesc uintptr, algo *ltAlgo,
		workspace uint64, workspaceBytes uint64, stream uintptr) ltStatus {
		return ltStatus(call(sym, handle, desc, uintptr(alpha), uintptr(a), aDesc, uintptr(b), bDesc,
			uintptr(beta), uintptr(c), cDesc, uintptr(d), dDesc, uintptr(unsafe.Pointer(algo)),
			uintptr(workspace), uintptr(workspaceBytes), stream))
	}
}
