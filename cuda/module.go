package cuda

import (
	"embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unsafe"
)

// The kernels' PTX, generated from kernels/*.cu by tools/cuda-ptx.sh. Its first line holds
// the SHA-256 of the source it came from (checked by TestPTXMatchesSource).
//
//go:embed kernels/*.ptx
var ptxFiles embed.FS

// ptxDirEnv names a directory of .ptx files that replace the embedded ones: for trying a
// rebuilt kernel on a GPU machine without rebuilding the Go binary (tools/gpu-test.sh).
const ptxDirEnv = "KVFOOT_CUDA_PTX_DIR"

// dynamicShared is the dynamic shared memory of the kernels that need more than the default
// 48 KiB limit, raised for them at load.
var dynamicShared = map[string]int{
	"gemm_bf16":         gemmSharedBytes,
	"attn_prefill_d64":  prefillSharedBytes(64),
	"attn_prefill_d128": prefillSharedBytes(128),

	"scores_mma_stats_d64":  scoresMMASharedBytes(64),
	"scores_mma_probs_d64":  scoresMMASharedBytes(64),
	"scores_mma_stats_d128": scoresMMASharedBytes(128),
	"scores_mma_probs_d128": scoresMMASharedBytes(128),
}

// modulePTX returns the PTX images by module name, embedded or from $KVFOOT_CUDA_PTX_DIR.
func modulePTX() (map[string][]byte, error) {
	out := map[string][]byte{}
	if dir := os.Getenv(ptxDirEnv); dir != "" {
		paths, err := filepath.Glob(filepath.Join(dir, "*.ptx"))
		if err != nil || len(paths) == 0 {
			return nil, fmt.Errorf("cuda: $%s=%s holds no .ptx files", ptxDirEnv, dir)
		}
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("cuda: $%s: %w", ptxDirEnv, err)
			}
			out[strings.TrimSuffix(filepath.Base(p), ".ptx")] = b
		}
		return out, nil
	}
	entries, err := ptxFiles.ReadDir("kernels")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		b, err := ptxFiles.ReadFile("kernels/" + e.Name())
		if err != nil {
			return nil, err
		}
		out[strings.TrimSuffix(e.Name(), ".ptx")] = b
	}
	return out, nil
}

// kernelNames lists the .entry symbols of a PTX image.
func kernelNames(ptx []byte) []string {
	var names []string
	for _, line := range strings.Split(string(ptx), "\n") {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == ".entry" {
				names = append(names, strings.TrimSuffix(strings.TrimSpace(strings.SplitN(f[i+1], "(", 2)[0]), "("))
			}
		}
	}
	return names
}

// loadModules JIT-compiles every PTX module for this GPU and looks up its kernels. On the
// context's thread.
func (d *Device) loadModules() error {
	images, err := modulePTX()
	if err != nil {
		return err
	}
	names := make([]string, 0, len(images))
	for n := range images {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		mod, err := d.loadPTX(name, images[name])
		if err != nil {
			return err
		}
		d.modules = append(d.modules, mod)
		for _, k := range kernelNames(images[name]) {
			var fn uintptr
			if err := d.api.check("cuModuleGetFunction "+k, d.api.cuModuleGetFunction(&fn, mod, k)); err != nil {
				return err
			}
			if bytes, ok := dynamicShared[k]; ok {
				if err := d.api.check("cuFuncSetAttribute "+k, d.api.cuFuncSetAttribute(fn, funcAttrMaxDynamicShared, int32(bytes))); err != nil {
					return err
				}
			}
			d.funcs[k] = fn
		}
	}
	return nil
}

// loadPTX loads one PTX image with cuModuleLoadDataEx, returning the JIT compiler's error log
// when it fails, and saying so plainly when the driver is older than the PTX.
func (d *Device) loadPTX(name string, ptx []byte) (uintptr, error) {
	image := append(append([]byte{}, ptx...), 0)
	errLog := make([]byte, 16<<10)
	opts := []int32{jitErrorLogBuffer, jitErrorLogBufferSize}
	vals := []uintptr{uintptr(unsafe.Pointer(&errLog[0])), uintptr(len(errLog))}
	var mod uintptr
	r := d.api.cuModuleLoadDataEx(&mod, unsafe.Pointer(&image[0]), uint32(len(opts)), &opts[0], &vals[0])
	if r == 0 {
		return mod, nil
	}
	err := d.api.check("load PTX module "+name, r)
	log := strings.TrimSpace(cString(&errLog[0]))
	if r == resultUnsupportedPTX || r == resultInvalidPTX {
		err = fmt.Errorf("%w: the NVIDIA driver (CUDA %d.%d) cannot compile this PTX (%s); a newer driver is needed", err, d.driverMajor, d.driverMinor, ptxVersion(ptx))
	}
	if log != "" {
		err = errors.Join(err, fmt.Errorf("JIT log: %s", log))
	}
	return 0, err
}

// ptxVersion returns the PTX's ".version X.Y" line.
func ptxVersion(ptx []byte) string {
	for _, line := range strings.Split(string(ptx), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), ".version") {
			return "PTX ISA " + strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), ".version"))
		}
	}
	return "PTX ISA of unknown version"
}
