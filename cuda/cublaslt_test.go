package cuda

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/ebitengine/purego"
)

// CPU tests of the cuBLASLt binding: what can be checked without a GPU or the library.

// cublasLtMatmulHeuristicResult_t is {cublasLtMatmulAlgo_t algo (uint64_t data[8]); size_t
// workspaceSize; cublasStatus_t state; float wavesCount; int reserved[4]}: C lays it out at
// offsets 0, 64, 72, 76, 80, 96 bytes in all, and the results array's stride depends on it.
func TestLtHeuristicLayout(t *testing.T) {
	var h ltHeuristic
	for _, c := range []struct {
		what      string
		got, want uintptr
	}{
		{"size of cublasLtMatmulAlgo_t", unsafe.Sizeof(h.algo), 64},
		{"offset of workspaceSize", unsafe.Offsetof(h.workspaceSize), 64},
		{"offset of state", unsafe.Offsetof(h.state), 72},
		{"offset of wavesCount", unsafe.Offsetof(h.wavesCount), 76},
		{"offset of reserved", unsafe.Offsetof(h.reserved), 80},
		{"size of cublasLtMatmulHeuristicResult_t", unsafe.Sizeof(h), 96},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.what, c.got, c.want)
		}
	}
}

// Every entry point's Go signature must be one purego can call (cublasLtMatmul has 16
// arguments, 10 of them on the stack on amd64), and every argument must be word-sized or
// smaller, as the C prototypes' are. Registering checks the first without calling anything.
func TestLtSignatures(t *testing.T) {
	api := &cublasLtAPI{}
	var dummy byte
	fake := uintptr(unsafe.Pointer(&dummy)) // never called
	names := map[string]bool{}
	for _, s := range api.symbols() {
		names[s.name] = true
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%s: purego refuses the signature: %v", s.name, r)
				}
			}()
			purego.RegisterFunc(s.fn, fake)
		}()
		ft := reflect.TypeOf(s.fn).Elem()
		for i := 0; i < ft.NumIn(); i++ {
			if ft.In(i).Size() > 8 {
				t.Errorf("%s: argument %d is %s, wider than a C scalar", s.name, i, ft.In(i))
			}
		}
	}
	if got := reflect.TypeOf(api.matmul).NumIn(); got != 16 {
		t.Errorf("cublasLtMatmul takes 16 arguments, the binding %d", got)
	}
	for _, want := range []string{"cublasLtCreate", "cublasLtDestroy", "cublasLtGetVersion",
		"cublasLtMatmulDescCreate", "cublasLtMatmulDescDestroy", "cublasLtMatmulDescSetAttribute",
		"cublasLtMatrixLayoutCreate", "cublasLtMatrixLayoutDestroy",
		"cublasLtMatmulPreferenceCreate", "cublasLtMatmulPreferenceDestroy", "cublasLtMatmulPreferenceSetAttribute",
		"cublasLtMatmulAlgoGetHeuristic", "cublasLtMatmul"} {
		if !names[want] {
			t.Errorf("%s is not bound", want)
		}
	}
}

// colMajorMatmul is D = op(A)·op(B) as BLAS defines it on column-major storage: element (r, c)
// of a matrix with leading dimension ld is at c·ld + r; op is the transpose when trans is T.
func colMajorMatmul(a []float64, la ltMatrix, transA int32, b []float64, lb ltMatrix, transB int32, ld ltMatrix) []float64 {
	at := func(v []float64, l ltMatrix, trans int32, r, c int) float64 {
		if trans == cublasOpT {
			r, c = c, r
		}
		return v[c*l.ld+r]
	}
	inner := la.cols
	if transA == cublasOpT {
		inner = la.rows
	}
	out := make([]float64, ld.ld*ld.cols)
	for r := 0; r < ld.rows; r++ {
		for c := 0; c < ld.cols; c++ {
			var s float64
			for l := 0; l < inner; l++ {
				s += at(a, la, transA, r, l) * at(b, lb, transB, l, c)
			}
			out[c*ld.ld+r] = s
		}
	}
	return out
}

// ltShapes' column-major description, run by the BLAS definition on Linear's row-major
// buffers, must give Linear's result out[i][j] = Σ x[i][l]·w[j][l], element for element.
func TestLtShapesComputeLinear(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, c := range []struct{ m, n, k int }{{9, 16, 24}, {3, 5, 7}, {1, 8, 8}, {17, 3, 40}} {
		x := make([]float64, c.m*c.k)
		w := make([]float64, c.n*c.k)
		for i := range x {
			x[i] = r.NormFloat64()
		}
		for i := range w {
			w[i] = r.NormFloat64()
		}
		a, b, d, transA, transB := ltShapes(c.m, c.n, c.k)
		if a.rows*a.cols != len(w) || b.rows*b.cols != len(x) || d.rows*d.cols != c.m*c.n {
			t.Fatalf("%v: layouts %v %v %v do not cover w, x, out", c, a, b, d)
		}
		got := colMajorMatmul(w, a, transA, x, b, transB, d)
		for i := 0; i < c.m; i++ {
			for j := 0; j < c.n; j++ {
				var want float64
				for l := 0; l < c.k; l++ {
					want += x[i*c.k+l] * w[j*c.k+l]
				}
				if diff := got[i*c.n+j] - want; diff > 1e-9 || diff < -1e-9 {
					t.Fatalf("%v: out[%d][%d] = %g, want %g", c, i, j, got[i*c.n+j], want)
				}
			}
		}
	}
}

func TestLtCandidates(t *testing.T) {
	globs := map[string][]string{
		"/usr/lib/python3*/dist-packages/nvidia/cu*/lib":       {"/usr/lib/python3/dist-packages/nvidia/cublas/lib"},
		"/usr/local/lib/python3*/site-packages/nvidia/cu*/lib": {"/usr/local/lib/python3.12/site-packages/nvidia/cu13/lib", "/usr/local/lib/python3.12/site-packages/nvidia/cublas/lib"},
	}
	glob := func(p string) ([]string, error) { return globs[p], nil }
	present := map[string]bool{
		"/usr/local/cuda/lib64/libcublasLt.so.13":                                     true,
		"/usr/local/cuda/lib64/libcublasLt.so.12":                                     true,
		"/usr/local/lib/python3.12/site-packages/nvidia/cu13/lib/libcublasLt.so.13":   true,
		"/usr/local/lib/python3.12/site-packages/nvidia/cublas/lib/libcublasLt.so.12": true,
		"/usr/lib/python3/dist-packages/nvidia/cublas/lib/libcublasLt.so.12":          true,
		"/usr/local/cuda/lib64/libcublasLt.so.11":                                     true, // too old: never listed
	}
	exists := func(p string) bool { return present[p] }
	want := []string{
		"/opt/mine/libcublasLt.so.13",
		"libcublasLt.so.13", "libcublasLt.so.12",
		"/usr/local/cuda/lib64/libcublasLt.so.13",
		"/usr/local/lib/python3.12/site-packages/nvidia/cu13/lib/libcublasLt.so.13",
		"/usr/local/cuda/lib64/libcublasLt.so.12",
		"/usr/lib/python3/dist-packages/nvidia/cublas/lib/libcublasLt.so.12",
		"/usr/local/lib/python3.12/site-packages/nvidia/cublas/lib/libcublasLt.so.12",
	}
	got := ltCandidates("/opt/mine/libcublasLt.so.13", glob, exists)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("candidates:\n got %q\nwant %q", got, want)
	}
	if got := ltCandidates("", glob, func(string) bool { return false }); !reflect.DeepEqual(got, []string{"libcublasLt.so.13", "libcublasLt.so.12"}) {
		t.Errorf("with nothing installed and no $%s: %q", cublasLtEnv, got)
	}
}

func TestLtNamesAndNumbers(t *testing.T) {
	for path, want := range map[string]int{
		"libcublasLt.so.13": 13, "/usr/local/cuda/lib64/libcublasLt.so.12.8.4.1": 12,
		"libcublasLt.so": 0, "/opt/x.so.dir/libcublasLt.dylib": 0,
	} {
		if got := soMajor(path); got != want {
			t.Errorf("soMajor(%q) = %d, want %d", path, got, want)
		}
	}
	for v, want := range map[uint64]string{130101: "13.1.1", 120804: "12.8.4", 120000: "12.0.0"} {
		if got := ltVersion(v); got != want {
			t.Errorf("ltVersion(%d) = %q, want %q", v, got, want)
		}
	}
	for ptr, want := range map[uint64]uint32{0x7f0000000000: 256, 0x7f0000000010: 16, 0x7f0000000180: 128, 0x7f0000000002: 2, 0: 256} {
		if got := alignment(ptr); got != want {
			t.Errorf("alignment(%#x) = %d, want %d", ptr, got, want)
		}
	}
}

func TestGEMMChoice(t *testing.T) {
	for v, want := range map[string]string{"": "auto", "auto": "auto", "own": "own", "cublaslt": "cublaslt"} {
		if got, err := gemmChoice(v); err != nil || got != want {
			t.Errorf("gemmChoice(%q) = %q, %v; want %q", v, got, err, want)
		}
	}
	for _, v := range []string{"cublas", "OWN", "1"} {
		_, err := gemmChoice(v)
		if err == nil || !strings.Contains(err.Error(), gemmEnv) || !strings.Contains(err.Error(), fmt.Sprintf("%q", v)) {
			t.Errorf("gemmChoice(%q): error %v should name $%s and the value", v, err, gemmEnv)
		}
	}
}

// Without a usable cuBLASLt, opening says why for every file that was there or was asked for,
// and nothing for bare names the loader does not find; it never fails Open.
func TestOpenCublasLtReasons(t *testing.T) {
	d := &Device{driverMajor: 12, driverMinor: 8}
	notLib := filepath.Join(t.TempDir(), "libcublasLt.so.12")
	if err := os.WriteFile(notLib, []byte("not an ELF file"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := d.openCublasLt([]string{"libkvfoot-absent.so.12", "/usr/local/cuda/lib64/libcublasLt.so.13", notLib})
	if err == nil {
		t.Fatal("opened a library from a text file")
	}
	msg := err.Error()
	for _, want := range []string{"needs a CUDA 13 driver, this one supports 12.8", notLib} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
	if strings.Contains(msg, "libkvfoot-absent") {
		t.Errorf("error %q mentions a bare name the loader did not find", msg)
	}
	if _, err := d.openCublasLt([]string{"libkvfoot-absent.so.12"}); err == nil || err.Error() != "cuBLASLt not found" {
		t.Errorf("nothing found: error %v, want \"cuBLASLt not found\"", err)
	}
}

// uploadAt allocates a device buffer holding v at byte offset off (so that its address has
// only off's alignment) and returns the slice holding v.
func uploadAt(t *testing.T, d *Device, v []uint16, off int64) Buffer {
	t.Helper()
	whole, err := d.Alloc(int64(len(v))*2 + off)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Free(whole) })
	b, err := whole.Slice(off, int64(len(v))*2)
	if err != nil {
		t.Fatal(err)
	}
	if err := Upload(d, b, v); err != nil {
		t.Fatal(err)
	}
	return b
}

// linearRef is out[i][j] = bias[j] + Σ x[i][l]·w[j][l] in float64.
func linearRef(x, w, bias []float64, m, n, k int) []float64 {
	out := make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			s := bias[j]
			for l := 0; l < k; l++ {
				s += x[i*k+l] * w[j*k+l]
			}
			out[i*n+j] = s
		}
	}
	return out
}

// cuBLASLt's GEMM against the float64 reference and against the own GEMM: small shapes with
// and without a bias (two biases in turn through one plan), buffers aligned to only 16 bytes,
// then the Llama shapes against the own GEMM. The cuBLASLt runs may not fall back.
func TestGPULinearCublasLt(t *testing.T) {
	d := gpu(t)
	if d.lt == nil {
		t.Skipf("no cuBLASLt: %s", d.gemmNote)
	}
	t.Log("GEMM:", d.GEMMName())
	r := rand.New(rand.NewPCG(7, 8))
	for _, c := range []struct {
		m, n, k int
		bias    bool
		off     int64
	}{
		{9, 128, 32, false, 0}, {130, 264, 520, true, 0}, {257, 1000, 4104, false, 0},
		{512, 512, 2048, true, 16}, {33, 136, 264, true, 16}, {100, 1024, 512, false, 48},
	} {
		t.Run(fmt.Sprintf("%dx%dx%d-bias%v-offset%d", c.m, c.n, c.k, c.bias, c.off), func(t *testing.T) {
			x, xf := randBF16(r, c.m*c.k, 1)
			w, wf := randBF16(r, c.n*c.k, 1)
			xb, wb := uploadAt(t, d, x, c.off), uploadAt(t, d, w, 0)
			biases := [][]float64{make([]float64, c.n)}
			bufs := []Buffer{{}}
			if c.bias {
				biases, bufs = nil, nil
				for range 2 {
					b, bf := randBF16(r, c.n, 1)
					biases, bufs = append(biases, bf), append(bufs, uploadAt(t, d, b, c.off))
				}
			}
			for i, bias := range bufs {
				want := linearRef(xf, wf, biases[i], c.m, c.n, c.k)
				results := map[gemmKind][]float64{}
				for _, kind := range []gemmKind{gemmCublasLt, gemmOwn} {
					nan := make([]uint16, c.m*c.n)
					for j := range nan {
						nan[j] = 0x7fc0
					}
					out := uploadAt(t, d, nan, c.off)
					if err := d.linear(kind, out, xb, wb, bias, c.m, c.n, c.k); err != nil {
						t.Fatalf("GEMM %d: %v", kind, err)
					}
					results[kind] = downloadBF16(t, d, out, c.m*c.n)
				}
				checkClose(t, "cuBLASLt vs float64", results[gemmCublasLt], want, bf16Tol)
				checkClose(t, "own vs float64", results[gemmOwn], want, bf16Tol)
				checkClose(t, "cuBLASLt vs own", results[gemmCublasLt], results[gemmOwn], bf16Tol)
			}
		})
	}
	for _, s := range []struct {
		name    string
		m, n, k int
		bias    bool
	}{
		{"8B-q", 512, 4096, 4096, false}, {"8B-kv-bias", 1000, 1024, 4096, true},
		{"8B-gateup", 512, 14336, 4096, false}, {"8B-down", 300, 4096, 14336, false}, {"1B-o", 4096, 2048, 2048, false},
	} {
		t.Run(s.name, func(t *testing.T) {
			x, _ := randBF16(r, s.m*s.k, 1)
			w, _ := randBF16(r, s.n*s.k, 1)
			xb, wb := upload(t, d, x, 2), upload(t, d, w, 2)
			var bias Buffer
			if s.bias {
				b, _ := randBF16(r, s.n, 1)
				bias = upload(t, d, b, 2)
			}
			results := map[gemmKind][]float64{}
			for _, kind := range []gemmKind{gemmCublasLt, gemmOwn} {
				out := poisoned(t, d, s.m*s.n)
				if err := d.linear(kind, out, xb, wb, bias, s.m, s.n, s.k); err != nil {
					t.Fatalf("GEMM %d: %v", kind, err)
				}
				results[kind] = downloadBF16(t, d, out, s.m*s.n)
			}
			checkClose(t, "cuBLASLt vs own", results[gemmCublasLt], results[gemmOwn], bf16Tol)
		})
	}
}

// A shape cuBLASLt failed on runs on the own GEMM from then on, and GEMMName says so.
func TestGPULinearFallback(t *testing.T) {
	d := gpu(t)
	if d.lt == nil {
		t.Skipf("no cuBLASLt: %s", d.gemmNote)
	}
	r := rand.New(rand.NewPCG(9, 10))
	const m, n, k = 24, 64, 128
	x, xf := randBF16(r, m*k, 1)
	w, wf := randBF16(r, n*k, 1)
	xb, wb := upload(t, d, x, 2), upload(t, d, w, 2)
	out := poisoned(t, d, m*n)
	key := gemmKey{m: m, n: n, k: k, alignX: alignment(xb.Ptr), alignW: alignment(wb.Ptr), alignOut: alignment(out.Ptr), alignBias: alignment(0)}
	d.mu.Lock()
	old := d.lt.plans[key]
	d.lt.plans[key] = &gemmPlan{err: fmt.Errorf("injected failure")}
	d.mu.Unlock()
	t.Cleanup(func() {
		d.mu.Lock()
		if old == nil {
			delete(d.lt.plans, key)
		} else {
			d.lt.plans[key] = old
		}
		d.mu.Unlock()
	})
	if err := d.linear(gemmCublasLt, out, xb, wb, Buffer{}, m, n, k); err == nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("cuBLASLt alone on the failed shape: error %v, want the injected one", err)
	}
	if err := d.Linear(out, xb, wb, Buffer{}, m, n, k); err != nil {
		t.Fatalf("Linear did not fall back: %v", err)
	}
	checkClose(t, "fallback", downloadBF16(t, d, out, m*n), linearRef(xf, wf, make([]float64, n), m, n, k), bf16Tol)
	if name := d.GEMMName(); !strings.Contains(name, "injected failure") {
		t.Errorf("GEMMName %q does not mention the failed shape", name)
	}
}

// $KVFOOT_GEMM on a GPU: own opens without cuBLASLt, cublaslt opens with it where the shared
// device found it and fails naming the variable where not, and a bad value fails before
// anything loads. Logs what Open costs: the first (the libraries loaded cold) and again.
func TestGPUOpenGEMMChoice(t *testing.T) {
	shared := gpu(t)
	t.Logf("first Open: %v (%s)", gpuOpenTook, shared.GEMMName())
	for _, c := range []struct {
		value string
		want  string // in GEMMName, or in the error when cuBLASLt is asked for and absent
	}{{"own", "$KVFOOT_GEMM=own"}, {"cublaslt", "cuBLASLt "}, {"bogus", `"bogus"`}} {
		t.Run(c.value, func(t *testing.T) {
			t.Setenv(gemmEnv, c.value)
			start := time.Now()
			d, err := Open(0)
			took := time.Since(start)
			switch {
			case c.value == "bogus" || (c.value == "cublaslt" && shared.lt == nil):
				if err == nil {
					d.Close()
					t.Fatalf("%s=%s opened", gemmEnv, c.value)
				}
				if !strings.Contains(err.Error(), gemmEnv) {
					t.Errorf("error %q does not name $%s", err, gemmEnv)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			defer d.Close()
			if name := d.GEMMName(); !strings.Contains(name, c.want) {
				t.Errorf("GEMMName %q does not say %q", name, c.want)
			}
			t.Logf("Open with %s=%s: %v (%s)", gemmEnv, c.value, took, d.GEMMName())
		})
	}
}
