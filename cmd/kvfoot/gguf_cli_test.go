package main

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"
)

// TestGGUFModelEverywhere: the built-in model exported to a GGUF file runs through
// --model like its folder: generate gives the same greedy ids (f32 holds the bf16
// weights exactly), and eval studies it, its tokenizer read from the file's metadata.
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
}
