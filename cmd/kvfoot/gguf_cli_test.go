package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestGGUFModelEverywhere: the built-in model (a folder holding a Q8_0 GGUF and its
// tokenizer) exported to a lone GGUF file runs through --model like its folder: generate
// gives the same greedy ids from a Q8_0 export (the blocks come back as they were), eval
// studies an f32 export, its tokenizer read from the file's metadata, and PruLong trains
// masks on the Q8_0 export (its weights dequantized, frozen).
func TestGGUFModelEverywhere(t *testing.T) {
	if testing.Short() {
		t.Skip("exports the 28M-parameter built-in model")
	}
	dir := t.TempDir()
	file, q8 := filepath.Join(dir, "builtin.gguf"), filepath.Join(dir, "builtin-q8_0.gguf")
	for f, typ := range map[string]string{file: "f32", q8: "q8_0"} {
		if _, err := quiet(t, func() error {
			return runExport([]string{"--model", "../../models/kvfoot-small", "--out", f, "--type", typ})
		}); err != nil {
			t.Fatal(err)
		}
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
	if a, b := ids("../../models/kvfoot-small"), ids(q8); !slices.Equal(a, b) {
		t.Errorf("greedy ids: folder %v, GGUF %v", a, b)
	}
	if _, err := quiet(t, func() error {
		return runEval([]string{"--model", file, "--tasks", "ruler_mk_uuid", "--lengths", "512", "--samples", "1",
			"--methods", "full;streaming:sink=16,window=64", "--chunk", "128", "--out", filepath.Join(dir, "study")})
	}); err != nil {
		t.Fatalf("eval --model %s: %v", file, err)
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
