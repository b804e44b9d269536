//go:build !nocuda

package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvfoot/kvfoot/gpu"
)

// kvfoot prulong and duo --device: weight training and --bench are refused on a GPU before
// anything opens; cuda without a usable GPU is a clear error naming the flag, and on a GPU a
// model the training kernels do not take (a head dimension of 8) is refused before any step.
func TestTrainDeviceFlag(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "none.jsonl")
	for _, c := range []struct {
		name string
		run  func([]string) error
		args []string
		want string
	}{
		{"weights", runPruLong, []string{"--model", gqa, "--device", "cuda", "--train-weights", "--out", filepath.Join(dir, "w"), "--data", data}, "--train-weights: weight training runs on the CPU only"},
		{"bench", runDuo, []string{"--model", gqa, "--device", "cuda", "--bench"}, "--bench times the CPU trainer"},
		{"bad name", runDuo, []string{"--model", gqa, "--device", "gpu", "--out", filepath.Join(dir, "b"), "--data", data}, `--device "gpu"`},
	} {
		if _, err := capture(t, func() error { return c.run(c.args) }); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
	want := "--device" // no GPU here
	if g, err := gpu.Open("cuda"); err == nil {
		g.Close()
		want = "head dimension 8"
	}
	for name, run := range map[string]func([]string) error{"prulong": runPruLong, "duo": runDuo} {
		_, err := capture(t, func() error {
			return run([]string{"--model", gqa, "--device", "cuda", "--out", filepath.Join(dir, name), "--data", data, "--seq-len", "64"})
		})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s --device cuda: %v, want an error containing %q", name, err, want)
		}
	}
}
