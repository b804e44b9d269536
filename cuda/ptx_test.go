package cuda

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every embedded PTX must come from the .cu beside it as it is now: its first line is the
// SHA-256 of common.cuh followed by the .cu (tools/cuda-ptx.sh writes it).
func TestPTXMatchesSource(t *testing.T) {
	common, err := os.ReadFile("kernels/common.cuh")
	if err != nil {
		t.Fatal(err)
	}
	sources, _ := filepath.Glob("kernels/*.cu")
	if len(sources) == 0 {
		t.Fatal("no kernel sources")
	}
	images, err := modulePTX()
	if err != nil {
		t.Fatal(err)
	}
	if len(images) > len(sources) {
		t.Errorf("%d PTX modules for %d sources", len(images), len(sources))
	}
	for _, src := range sources {
		cu, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(append(append([]byte{}, common...), cu...))
		name := strings.TrimSuffix(filepath.Base(src), ".cu")
		ptx, ok := images[name]
		if !ok && optionalModules[name] {
			t.Logf("%s has no embedded PTX yet; its kernels stay off until tools/cuda-ptx.sh makes it", src)
			continue
		}
		if !ok {
			t.Errorf("%s has no embedded PTX; run tools/cuda-ptx.sh", src)
			continue
		}
		first, _, _ := strings.Cut(string(ptx), "\n")
		if want := "// sha256 " + hex.EncodeToString(sum[:]); first != want {
			t.Errorf("%s.ptx is stale (%q, source gives %q); run tools/cuda-ptx.sh on a machine with nvcc", name, first, want)
		}
		if len(kernelNames(ptx)) == 0 {
			t.Errorf("%s.ptx declares no kernels", name)
		}
	}
}

// The Go side launches these kernels by name: each must be in the PTX.
func TestPTXHasEveryKernel(t *testing.T) {
	images, err := modulePTX()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, ptx := range images {
		for _, k := range kernelNames(ptx) {
			have[k] = true
		}
	}
	for _, k := range []string{"embed_rows", "rmsnorm", "rope", "swiglu", "add", "bias_add", "gemm_bf16", "gemv_bf16",
		"kv_write", "kv_read", "attn_prefill_d64", "attn_prefill_d128", "attn_decode_d64_g4", "attn_decode_d64_g8",
		"attn_decode_d128_g4", "attn_decode_d128_g8", "attn_merge",
		"scores_stats_d64", "scores_probs_d64", "scores_stats_d128", "scores_probs_d128",
		"scores_mma_stats_d64", "scores_mma_lse", "scores_mma_probs_d64", "scores_mma_stats_d128", "scores_mma_probs_d128"} {
		if !have[k] {
			t.Errorf("kernel %s missing from the PTX", k)
		}
	}
	if _, ok := images["kivi"]; ok {
		for _, k := range KIVIKernels {
			if !have[k] {
				t.Errorf("kernel %s missing from kivi.ptx", k)
			}
		}
	}
}

func TestKernelNamesParsesEntries(t *testing.T) {
	ptx := ".version 8.0\n.visible .entry add(\n\t.param .u64 add_param_0\n)\n.visible .entry gemm_bf16(\n"
	got := kernelNames([]byte(ptx))
	if len(got) != 2 || got[0] != "add" || got[1] != "gemm_bf16" {
		t.Fatalf("kernelNames = %v", got)
	}
}
