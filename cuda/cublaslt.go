package cuda

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"github.com/ebitengine/purego"
)

// cuBLASLt is loaded, when the machine has it, as the GEMM of Linear above gemvMaxRows rows:
// on an H100, cuBLAS ran Llama's projection shapes at about 600-750 TFLOP/s where kvfoot's own
// mma.sync GEMM reached 185-276 (BenchmarkLinear times both). It is optional: without it (or with $KVFOOT_GEMM=own) the own kernel runs,
// and a shape cuBLASLt fails on falls back to the own kernel for good. Its CUDA runtime finds
// the primary context current on the calling thread (Device.do), so both share one context,
// and its kernels run on the device's stream, in order with kvfoot's.

// ABI values from NVIDIA's cublasLt.h, cublas_api.h and library_types.h (unchanged from CUDA
// 11 to 13).
const (
	cudaR32F         = 0  // cudaDataType_t CUDA_R_32F
	cudaR16BF        = 14 // CUDA_R_16BF
	cublasCompute32F = 68 // cublasComputeType_t CUBLAS_COMPUTE_32F
	cublasOpN        = 0  // cublasOperation_t
	cublasOpT        = 1

	ltDescTransA      = 3 // cublasLtMatmulDescAttributes_t: int32
	ltDescTransB      = 4 // int32
	ltDescEpilogue    = 7 // uint32
	ltDescBiasPointer = 8 // const void*

	ltEpilogueBias = 4 // cublasLtEpilogue_t: add a bias vector (D's type) to every column of D

	ltPrefMaxWorkspaceBytes = 1 // cublasLtMatmulPreferenceAttributes_t: uint64
	ltPrefMinAlignmentA     = 5 // uint32; B, C and D follow as 6, 7, 8
)

const (
	gemmEnv       = "KVFOOT_GEMM"     // auto (default), own or cublaslt
	cublasLtEnv   = "KVFOOT_CUBLASLT" // a libcublasLt file to try first
	ltWorkspace   = 32 << 20          // bytes, allocated once at Open
	ltMaxPlans    = 512               // cached shapes; past it the cache starts again
	ltMaxAlign    = 256               // the alignment cuBLASLt's heuristics assume by default
	ltMajorNewest = 13                // cuBLASLt majors searched, newest first
	ltMajorOldest = 12
)

// ltStatus is cublasStatus_t; 0 is CUBLAS_STATUS_SUCCESS.
type ltStatus int32

// ltAlgo is cublasLtMatmulAlgo_t, opaque.
type ltAlgo [8]uint64

// ltHeuristic is cublasLtMatmulHeuristicResult_t (96 bytes).
type ltHeuristic struct {
	algo          ltAlgo
	workspaceSize uint64
	state         ltStatus
	wavesCount    float32
	reserved      [4]int32
}

// cublasLtAPI holds libcublasLt's entry points. Descriptors and the handle are pointers.
type cublasLtAPI struct {
	create           func(handle *uintptr) ltStatus
	destroy          func(handle uintptr) ltStatus
	getVersion       func() uint64
	getStatusName    func(s ltStatus) string
	descCreate       func(desc *uintptr, compute int32, scale int32) ltStatus
	descDestroy      func(desc uintptr) ltStatus
	descSetAttribute func(desc uintptr, attr int32, buf unsafe.Pointer, size uint64) ltStatus
	layoutCreate     func(layout *uintptr, typ int32, rows, cols uint64, ld int64) ltStatus
	layoutDestroy    func(layout uintptr) ltStatus
	prefCreate       func(pref *uintptr) ltStatus
	prefDestroy      func(pref uintptr) ltStatus
	prefSetAttribute func(pref uintptr, attr int32, buf unsafe.Pointer, size uint64) ltStatus
	algoGetHeuristic func(handle, desc, a, b, c, d, pref uintptr, requested int32, results *ltHeuristic, returned *int32) ltStatus
	matmul           func(handle, desc uintptr, alpha unsafe.Pointer, a uint64, aDesc uintptr, b uint64, bDesc uintptr,
		beta unsafe.Pointer, c uint64, cDesc uintptr, d uint64, dDesc uintptr, algo *ltAlgo,
		workspace uint64, workspaceBytes uint64, stream uintptr) ltStatus
}

// symbols pairs each entry point with its exported name.
func (api *cublasLtAPI) symbols() []struct {
	fn   any
	name string
} {
	return []struct {
		fn   any
		name string
	}{
		{&api.create, "cublasLtCreate"}, {&api.destroy, "cublasLtDestroy"},
		{&api.getVersion, "cublasLtGetVersion"}, {&api.getStatusName, "cublasLtGetStatusName"},
		{&api.descCreate, "cublasLtMatmulDescCreate"}, {&api.descDestroy, "cublasLtMatmulDescDestroy"},
		{&api.descSetAttribute, "cublasLtMatmulDescSetAttribute"},
		{&api.layoutCreate, "cublasLtMatrixLayoutCreate"}, {&api.layoutDestroy, "cublasLtMatrixLayoutDestroy"},
		{&api.prefCreate, "cublasLtMatmulPreferenceCreate"}, {&api.prefDestroy, "cublasLtMatmulPreferenceDestroy"},
		{&api.prefSetAttribute, "cublasLtMatmulPreferenceSetAttribute"},
		{&api.algoGetHeuristic, "cublasLtMatmulAlgoGetHeuristic"},
		{&api.matmul, "cublasLtMatmul"},
	}
}

// check turns a cublasStatus_t into an error naming op, or nil on success.
func (api *cublasLtAPI) check(op string, s ltStatus) error {
	if s == 0 {
		return nil
	}
	return fmt.Errorf("cuBLASLt %s: %s (%d)", op, api.getStatusName(s), int(s))
}

// ltGEMM is a loaded cuBLASLt with its handle, workspace and the plans of the shapes seen.
type ltGEMM struct {
	api       *cublasLtAPI
	path      string
	version   uint64
	handle    uintptr
	workspace Buffer
	plans     map[gemmKey]*gemmPlan
}

// gemmKey is what a plan depends on: the sizes, the bias epilogue, and each pointer's
// alignment (the heuristic may pick a kernel that needs 256-byte alignment unless told less).
type gemmKey struct {
	m, n, k                             int
	bias                                bool
	alignX, alignW, alignOut, alignBias uint32
}

// gemmPlan is one shape's descriptors and chosen algorithm, or, when cuBLASLt failed on the
// shape, the error (the own kernel then runs it).
type gemmPlan struct {
	desc, w, x, out uintptr // matmul descriptor; layouts of A (w), B (x) and C = D (out)
	algo            ltAlgo
	err             error
}

// gemmChoice reads $KVFOOT_GEMM.
func gemmChoice(v string) (string, error) {
	switch v {
	case "", "auto":
		return "auto", nil
	case "own", "cublaslt":
		return v, nil
	}
	return "", fmt.Errorf("cuda: $%s=%q: want auto, own or cublaslt", gemmEnv, v)
}

// ltCandidates lists where libcublasLt is looked for, in order: $KVFOOT_CUBLASLT, the
// loader's path (newest major first), the CUDA toolkit's directories, then the pip wheels'
// (nvidia/cu13/lib, nvidia/cublas/lib) under the system's Python site-packages.
func ltCandidates(envPath string, glob func(string) ([]string, error), exists func(string) bool) []string {
	var out []string
	seen := map[string]bool{}
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	if envPath != "" {
		add(envPath)
	}
	for major := ltMajorNewest; major >= ltMajorOldest; major-- {
		add(fmt.Sprintf("libcublasLt.so.%d", major))
	}
	dirs := []string{"/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib"}
	for _, root := range []string{"/usr/lib/python3*", "/usr/local/lib/python3*"} {
		for _, site := range []string{"site-packages", "dist-packages"} {
			found, _ := glob(filepath.Join(root, site, "nvidia", "cu*", "lib")) // cu13, cublas, ...
			dirs = append(dirs, found...)
		}
	}
	for major := ltMajorNewest; major >= ltMajorOldest; major-- {
		for _, dir := range dirs {
			if p := filepath.Join(dir, fmt.Sprintf("libcublasLt.so.%d", major)); exists(p) {
				add(p)
			}
		}
	}
	return out
}

// soMajor is the major version in a library's name (libcublasLt.so.13.0.2 → 13), 0 if none.
func soMajor(path string) int {
	_, rest, ok := strings.Cut(filepath.Base(path), ".so.")
	if !ok {
		return 0
	}
	n, _ := strconv.Atoi(strings.SplitN(rest, ".", 2)[0])
	return n
}

// ltVersion formats cublasLtGetVersion's major·10000 + minor·100 + patch.
func ltVersion(v uint64) string { return fmt.Sprintf("%d.%d.%d", v/10000, v/100%100, v%100) }

// alignment is the largest power of two dividing ptr, up to ltMaxAlign.
func alignment(ptr uint64) uint32 {
	if ptr == 0 {
		return ltMaxAlign
	}
	return uint32(min(ptr&-ptr, ltMaxAlign))
}

// setupGEMM picks the GEMM at Open, on the context's thread, as choice (gemmChoice) asks:
// cuBLASLt when it loads, unless choice is own. Its absence is no error (the reason is kept
// for GEMMName), except when choice is cublaslt.
func (d *Device) setupGEMM(choice string) error {
	if choice == "own" {
		d.gemmNote = "$" + gemmEnv + "=own"
		return nil
	}
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	lt, err := d.openCublasLt(ltCandidates(os.Getenv(cublasLtEnv), filepath.Glob, exists))
	if err != nil {
		if choice == "cublaslt" {
			return fmt.Errorf("cuda: $%s=cublaslt: %w", gemmEnv, err)
		}
		d.gemmNote = err.Error()
		return nil
	}
	d.lt = lt
	return nil
}

// openCublasLt tries each candidate in turn and returns the first that loads and starts.
// A library newer than the driver is skipped (cuBLAS 13 needs a CUDA 13 driver).
func (d *Device) openCublasLt(candidates []string) (*ltGEMM, error) {
	var reasons []string
	for _, c := range candidates {
		if major := soMajor(c); major > d.driverMajor {
			if filepath.IsAbs(c) || c == os.Getenv(cublasLtEnv) {
				reasons = append(reasons, fmt.Sprintf("%s needs a CUDA %d driver, this one supports %d.%d", c, major, d.driverMajor, d.driverMinor))
			}
			continue
		}
		lib, err := purego.Dlopen(c, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err != nil {
			if filepath.IsAbs(c) || c == os.Getenv(cublasLtEnv) { // a bare name not on the loader's path is just absent
				reasons = append(reasons, fmt.Sprintf("%s: %v", c, err))
			}
			continue
		}
		lt, err := d.startCublasLt(lib, c)
		if err == nil {
			return lt, nil
		}
		reasons = append(reasons, err.Error())
	}
	if len(reasons) == 0 {
		return nil, errors.New("cuBLASLt not found")
	}
	return nil, fmt.Errorf("cuBLASLt not usable: %s", strings.Join(reasons, "; "))
}

// startCublasLt binds lib's entry points, creates the handle and allocates the workspace.
// A library whose symbols are missing is closed again; one that was called is left loaded
// (its runtime may have registered exit handlers).
func (d *Device) startCublasLt(lib uintptr, path string) (*ltGEMM, error) {
	api := &cublasLtAPI{}
	for _, s := range api.symbols() {
		sym, err := purego.Dlsym(lib, s.name)
		if err != nil || sym == 0 {
			purego.Dlclose(lib)
			return nil, fmt.Errorf("%s: no %s: %v", path, s.name, err)
		}
		purego.RegisterFunc(s.fn, sym)
	}
	api.bindDirect(symbolOf(lib))
	lt := &ltGEMM{api: api, path: path, version: api.getVersion(), plans: map[gemmKey]*gemmPlan{}}
	if err := api.check("cublasLtCreate", api.create(&lt.handle)); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := d.api.check("cuMemAlloc", d.api.cuMemAlloc(&lt.workspace.Ptr, ltWorkspace)); err != nil {
		api.destroy(lt.handle)
		return nil, fmt.Errorf("%s: workspace of %d MiB: %w", path, ltWorkspace>>20, err)
	}
	lt.workspace.Bytes = ltWorkspace
	return lt, nil
}

// close frees the plans, the handle and the workspace. On the context's thread.
func (lt *ltGEMM) close(a *driver) error {
	lt.dropPlans()
	return errors.Join(lt.api.check("cublasLtDestroy", lt.api.destroy(lt.handle)),
		a.check("cuMemFree", a.cuMemFree(lt.workspace.Ptr)))
}

func (lt *ltGEMM) dropPlans() {
	for _, p := range lt.plans {
		p.free(lt.api)
	}
	clear(lt.plans)
}

func (p *gemmPlan) free(api *cublasLtAPI) {
	for _, l := range []uintptr{p.w, p.x, p.out} {
		if l != 0 {
			api.layoutDestroy(l)
		}
	}
	if p.desc != 0 {
		api.descDestroy(p.desc)
	}
	*p = gemmPlan{err: p.err}
}

// ltError is cuBLASLt failing on a shape; Linear then runs the own kernel.
type ltError struct{ err error }

func (e *ltError) Error() string { return e.err.Error() }
func (e *ltError) Unwrap() error { return e.err }

// ltAttr is one descriptor attribute: its number and its value's address and size.
type ltAttr struct {
	attr int32
	buf  unsafe.Pointer
	size uint64
}

// ltMatrix is a column-major matrix layout: rows, columns, and the stride between columns.
type ltMatrix struct{ rows, cols, ld int }

// ltShapes puts out[m][n] = x[m][k]·w[n][k]ᵀ in cuBLASLt's column-major terms, D = op(A)·op(B):
// row-major out is column-major n×m (ld n); row-major w[n][k] is column-major k×n (ld k),
// transposed to n×k; row-major x[m][k] is column-major k×m (ld k), as it is.
func ltShapes(m, n, k int) (a, b, d ltMatrix, transA, transB int32) {
	return ltMatrix{k, n, k}, ltMatrix{k, m, k}, ltMatrix{n, m, n}, cublasOpT, cublasOpN
}

// newPlan makes the descriptors of one shape (ltShapes), with the bias epilogue when key asks,
// and keeps the heuristic's best algorithm. On the context's thread.
func (lt *ltGEMM) newPlan(key gemmKey, bias uint64) (*gemmPlan, error) {
	api := lt.api
	p := &gemmPlan{}
	fail := func(err error) (*gemmPlan, error) { p.free(api); return nil, err }
	if err := api.check("cublasLtMatmulDescCreate", api.descCreate(&p.desc, cublasCompute32F, cudaR32F)); err != nil {
		return fail(err)
	}
	a, b, out, transA, transB := ltShapes(key.m, key.n, key.k)
	epilogue := uint32(ltEpilogueBias)
	attrs := []ltAttr{{ltDescTransA, unsafe.Pointer(&transA), 4}, {ltDescTransB, unsafe.Pointer(&transB), 4}}
	if key.bias {
		attrs = append(attrs, ltAttr{ltDescEpilogue, unsafe.Pointer(&epilogue), 4}, ltAttr{ltDescBiasPointer, unsafe.Pointer(&bias), 8})
	}
	for _, a := range attrs {
		if err := api.check("cublasLtMatmulDescSetAttribute", api.descSetAttribute(p.desc, a.attr, a.buf, a.size)); err != nil {
			return fail(err)
		}
	}
	for _, l := range []struct {
		dst *uintptr
		ltMatrix
	}{{&p.w, a}, {&p.x, b}, {&p.out, out}} {
		if err := api.check("cublasLtMatrixLayoutCreate", api.layoutCreate(l.dst, cudaR16BF, uint64(l.rows), uint64(l.cols), int64(l.ld))); err != nil {
			return fail(err)
		}
	}
	var pref uintptr
	if err := api.check("cublasLtMatmulPreferenceCreate", api.prefCreate(&pref)); err != nil {
		return fail(err)
	}
	defer api.prefDestroy(pref)
	wsBytes := uint64(lt.workspace.Bytes)
	if err := api.check("cublasLtMatmulPreferenceSetAttribute", api.prefSetAttribute(pref, ltPrefMaxWorkspaceBytes, unsafe.Pointer(&wsBytes), 8)); err != nil {
		return fail(err)
	}
	for i, align := range []uint32{key.alignW, key.alignX, key.alignOut, key.alignOut} { // A, B, C, D
		if err := api.check("cublasLtMatmulPreferenceSetAttribute", api.prefSetAttribute(pref, ltPrefMinAlignmentA+int32(i), unsafe.Pointer(&align), 4)); err != nil {
			return fail(err)
		}
	}
	var result ltHeuristic
	var found int32
	if err := api.check("cublasLtMatmulAlgoGetHeuristic", api.algoGetHeuristic(lt.handle, p.desc, p.w, p.x, p.out, p.out, pref, 1, &result, &found)); err != nil {
		return fail(err)
	}
	if found == 0 || result.state != 0 {
		return fail(fmt.Errorf("cuBLASLt has no algorithm for %d×%d×%d bf16 (state %d)", key.m, key.n, key.k, result.state))
	}
	p.algo = result.algo
	return p, nil
}

// ltLinear runs Linear through cuBLASLt, making the shape's plan at its first use. A cuBLASLt
// failure is remembered for the shape and returned as an *ltError; other errors are the
// driver's.
func (d *Device) ltLinear(out, x, w, bias Buffer, m, n, k int) error {
	lt := d.lt
	key := gemmKey{m: m, n: n, k: k, bias: bias.Ptr != 0,
		alignX: alignment(x.Ptr), alignW: alignment(w.Ptr), alignOut: alignment(out.Ptr), alignBias: alignment(bias.Ptr)}
	return d.do(func() error {
		p := lt.plans[key]
		if p == nil {
			if len(lt.plans) >= ltMaxPlans {
				lt.dropPlans()
			}
			var err error
			if p, err = lt.newPlan(key, bias.Ptr); err != nil {
				p = &gemmPlan{err: fmt.Errorf("%d×%d×%d: %w", m, n, k, err)}
			}
			lt.plans[key] = p
		}
		if p.err != nil {
			return &ltError{p.err}
		}
		api := lt.api
		if key.bias { // the plan is shared by every bias of this shape and alignment
			b := bias.Ptr
			if err := api.check("cublasLtMatmulDescSetAttribute", api.descSetAttribute(p.desc, ltDescBiasPointer, unsafe.Pointer(&b), 8)); err != nil {
				p.free(api)
				p.err = err
				return &ltError{err}
			}
		}
		if err := d.capture(nodeGEMM, uint64(uintptr(unsafe.Pointer(p)))); err != nil {
			return err
		}
		alpha, beta := float32(1), float32(0)
		s := api.matmul(lt.handle, p.desc, unsafe.Pointer(&alpha), w.Ptr, p.w, x.Ptr, p.x, unsafe.Pointer(&beta),
			out.Ptr, p.out, out.Ptr, p.out, &p.algo, lt.workspace.Ptr, uint64(lt.workspace.Bytes), d.stream)
		if err := api.check("cublasLtMatmul", s); err != nil {
			p.free(api)
			p.err = fmt.Errorf("%d×%d×%d: %w", m, n, k, err)
			if d.graphs.capturing && !d.stillCapturing() {
				// the capture is lost with the work before it: no fallback can redo that
				return d.abortSegment(p.err)
			}
			return &ltError{p.err}
		}
		return nil
	})
}

// GEMMName says which GEMM Linear uses above 8 rows: cuBLASLt with its version and file, or
// kvfoot's own kernel and why; and the shapes cuBLASLt failed on, if any.
func (d *Device) GEMMName() string {
	if d.lt == nil {
		return "kvfoot's mma.sync GEMM (" + d.gemmNote + ")"
	}
	name := fmt.Sprintf("cuBLASLt %s (%s)", ltVersion(d.lt.version), d.lt.path)
	d.mu.Lock()
	defer d.mu.Unlock()
	var failed []string
	for _, p := range d.lt.plans {
		if p.err != nil {
			failed = append(failed, p.err.Error())
		}
	}
	if len(failed) > 0 {
		name += fmt.Sprintf("; the own GEMM for %d shape(s) cuBLASLt failed on, e.g. %s", len(failed), failed[0])
	}
	return name
}
