package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestGGUFModelEverywhere: the built-in model exported to a GGUF file runs through
// --model like its folder: generate gives the same greedy ids (f32 holds the bf16
// weights exactly), and eval studies it, its tokenizer read from the file's metadata; PruLong
// trains masks on a Q8_0 export (its weights dequantized, frozen).
func TestGGUFModelEverywhere(t *testing.T) {
	if testing.Short() {
		t.Skip("exports the 28M-parameter built-in model")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "builtin.gguf")
	if _, err := quiet(t, func() error {
		return runExport([]string{"--model", "../../models/kvfoot-small", "--out", file, "--type", "f32"})
	}); err != nil {
		t.Fatal(err)
	}
	ids := func(m string) []int {
		out, err := quiet(t, func() error {
			return runGenerate([]string{"--model", m, "--prompt", "func main() {", "--max-tokens", "12", "--greedy", "--format", "json"})
		})
		if err != nil {
			t.Fatalf("generate --model %s: %v", m, err)
		}
		var r struct{ IDs []int }
		if err := json.Unmarshal([]byte(out), &r); err != nil || len(r.IDs) != 12 {
			t.Fatalf("generate --model %s: %v in %q", m, err, out)
		}
		return r.IDs
	}
	if a, b := ids("../../models/kvfoot-small"), ids(file); !slices.Equal(a, b) {
		t.Errorf("greedy ids: folder %v, GGUF %v", a, b)
	}
	if _, err := quiet(t, func() error {
		return runEval([]string{"--model", file, "--tasks", "ruler_mk_uuid", "--lengths", "512", "--samples", "1",
			"--methods", "full;streaming:sink=16,window=64", "--chunk", "128", "--out", filepath.Join(dir, "study")})
	}); err != nil {
		t.Fatalf("eval --model %s: %v", file, err)
	}
	q8 := filepath.Join(dir, "builtin-q8_0.gguf")
	if _, err := quiet(t, func() error {
		return runExport([]string{"--model", "../../models/kvfoot-small", "--out", q8, "--type", "q8_0"})
	}); err != nil {
		t.Fatal(err)
	}
	masks := filepath.Join(dir, "masks")
	if _, err := quiet(t, func() error {
		return runPruLong([]string{"--model", q8, "--steps", "2", "--seq-len", "256", "--out", masks})
	}); err != nil {
		t.Fatalf("prulong --model %s: %v", q8, err)
	}
	if _, err := os.Stat(filepath.Join(masks, "masks_sp0.5.tsv")); err != nil {
		t.Errorf("prulong on a GGUF file wrote no masks: %v", err)
	}
}
