package model_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvfoot/kvfoot/format/gguf"
	"github.com/kvfoot/kvfoot/model"
)

// TestOpen: a folder loads as Load does, a GGUF file under any name as LoadGGUF
// does, a folder holding model.gguf as that file, and anything else is refused by name.
func TestOpen(t *testing.T) {
	dir := filepath.Join("..", "testdata", "models", "llama-gqa")
	m, err := model.Open(dir, model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m.Config.Arch != "LlamaForCausalLM" || m.Config.Layers == 0 {
		t.Errorf("folder: config %+v", m.Config)
	}
	blob := filepath.Join(t.TempDir(), "sha256-0123") // as Ollama names its blobs
	if err := os.Rename(writeTiny(t, func(kv []gguf.KV) []gguf.KV { return kv }, gguf.F32), blob); err != nil {
		t.Fatal(err)
	}
	g, err := model.Open(blob, model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want, err := model.LoadGGUF(blob, model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ids := []int{1, 2, 3}
	a, b := allLogits(t, g, ids, 0), allLogits(t, want, ids, 0)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("logit %d: Open %g, LoadGGUF %g", i, a[i], b[i])
		}
	}
	// a folder holding model.gguf (no config.json) is that file's model, through Load too
	folder := t.TempDir()
	data, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(folder, "model.gguf"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, load := range map[string]func(string, model.LoadOptions) (*model.Model, error){"Open": model.Open, "Load": model.Load} {
		f, err := load(folder, model.LoadOptions{})
		if err != nil {
			t.Fatalf("%s of a folder with model.gguf: %v", name, err)
		}
		for i, v := range allLogits(t, f, ids, 0) {
			if v != b[i] {
				t.Fatalf("%s of a folder with model.gguf: logit %d is %g, the file's %g", name, i, v, b[i])
			}
		}
	}
	if c, err := model.LoadConfig(folder); err != nil || c.Layers != want.Config.Layers {
		t.Errorf("LoadConfig of a folder with model.gguf: %+v, %v", c, err)
	}
	other := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(other, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{other, filepath.Join(t.TempDir(), "missing")} {
		if _, err := model.Open(p, model.LoadOptions{}); err == nil || !strings.Contains(err.Error(), filepath.Base(p)) {
			t.Errorf("Open(%s): %v, want an error naming it", p, err)
		}
	}
}
