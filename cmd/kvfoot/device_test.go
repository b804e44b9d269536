//go:build !nocuda

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kvfoot/kvfoot/gpu"
)

// --device: a bad name is refused naming the flag; cuda on a machine without a usable GPU is
// a clear error and auto falls back to the CPU with the same tokens; on a GPU machine a model
// whose shape the kernels do not take is refused before anything runs.
func TestDeviceFlag(t *testing.T) {
	gen := func(device string) (string, error) {
		return capture(t, func() error {
			return runGenerate([]string{"--model", gqa, "--prompt-ids", "5,6,7", "--max-tokens", "4", "--format", "json",
				"--ignore-eos", "--device", device})
		})
	}
	for _, bad := range []string{"gpu", "cuda:x", "cuda:-1"} {
		if _, err := gen(bad); err == nil || !strings.Contains(err.Error(), "--device") {
			t.Errorf("--device %s: %v", bad, err)
		}
	}
	g, gpuErr := gpu.Open("cuda")
	if gpuErr == nil {
		g.Close()
		if _, err := gen("cuda"); err == nil || !strings.Contains(err.Error(), "head dimension 8") {
			t.Errorf("--device cuda with a head dimension of 8: %v", err)
		}
		return
	}
	if _, err := gen("cuda"); err == nil || !strings.Contains(err.Error(), "--device") {
		t.Errorf("--device cuda without a GPU: %v", err)
	}
	ids := func(out string) []int {
		var o struct{ IDs []int }
		if err := json.Unmarshal([]byte(out), &o); err != nil {
			t.Fatalf("output %q: %v", out, err)
		}
		return o.IDs
	}
	cpu, err := gen("cpu")
	if err != nil {
		t.Fatal(err)
	}
	auto, err := gen("auto")
	if err != nil {
		t.Fatalf("--device auto without a GPU: %v", err)
	}
	if a, c := ids(auto), ids(cpu); len(a) != 4 || !slices.Equal(a, c) {
		t.Errorf("auto gave %v, cpu %v", a, c)
	}
}

// logits, eval and bench take --device as generate does: a bad name or a missing GPU is refused
// naming the flag before any output is made, and cpu runs as without the flag.
func TestDeviceFlagLogitsEval(t *testing.T) {
	if g, err := gpu.Open("cuda"); err == nil {
		g.Close()
		t.Skip("a GPU is present: the refusal without one cannot be seen here")
	}
	dir := t.TempDir()
	for _, device := range []string{"tpu", "cuda"} {
		out := filepath.Join(dir, device+".safetensors")
		err := runLogits([]string{"--model", gqa, "--ids", "1,2,3", "--out", out, "--device", device})
		if err == nil || !strings.Contains(err.Error(), "--device") {
			t.Errorf("logits --device %s: %v", device, err)
		}
		if _, serr := os.Stat(out); serr == nil {
			t.Errorf("logits --device %s left %s", device, out)
		}
		_, err = quiet(t, func() error {
			return runEval([]string{"--model", gqa, "--tokenizer", "../../eval/testdata/bytes_tokenizer.json", "--tasks", "json_kv",
				"--lengths", "256", "--samples", "1", "--methods", "full", "--device", device, "--out", filepath.Join(dir, device)})
		})
		if err == nil || !strings.Contains(err.Error(), "--device") {
			t.Errorf("eval --device %s: %v", device, err)
		}
	}
	if err := runLogits([]string{"--model", gqa, "--ids", "1,2,3", "--out", filepath.Join(dir, "cpu.safetensors"), "--device", "cpu"}); err != nil {
		t.Errorf("logits --device cpu: %v", err)
	}
	bench := func(device string) (string, error) {
		return capture(t, func() error {
			return runBench([]string{"--random", "smollm2-135m", "--ctx", "8", "--threads", "1", "--reps", "1", "--decode", "1",
				"--format", "json", "--device", device})
		})
	}
	for _, device := range []string{"tpu", "cuda"} {
		if out, err := bench(device); err == nil || !strings.Contains(err.Error(), "--device") || out != "" {
			t.Errorf("bench --device %s: %v, output %q", device, err, out)
		}
	}
	out, err := bench("cpu")
	var o struct {
		Device string
		Rows   []struct{ Test string }
	}
	if err != nil || json.Unmarshal([]byte(out), &o) != nil || o.Device != "cpu" || len(o.Rows) != 2 {
		t.Errorf("bench --device cpu: %v, output %q", err, out)
	}
}
