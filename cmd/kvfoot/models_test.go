package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvfoot/kvfoot/format/gguf"
)

// TestModelsList lists the built-in model (found from the working directory, as a
// command without --model finds it), a fake Ollama store holding a GGUF blob and a
// Hugging Face cache holding a test checkpoint, and reads their headers.
func TestModelsList(t *testing.T) {
	root := t.TempDir()
	ollama, hf := filepath.Join(root, "ollama"), filepath.Join(root, "hf")
	t.Setenv("OLLAMA_MODELS", ollama)
	t.Setenv("HF_HOME", hf)
	t.Setenv("HF_HUB_CACHE", "")
	digest := strings.Repeat("ab", 32)
	mkdir := func(p string) {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mkdir(filepath.Join(ollama, "blobs"))
	mkdir(filepath.Join(ollama, "manifests/registry.ollama.ai/library/tiny"))
	err := gguf.WriteFile(filepath.Join(ollama, "blobs", "sha256-"+digest), []gguf.KV{{Key: "general.architecture", Value: "qwen2"}},
		[]gguf.Tensor{{Name: "a", Dims: []uint64{64}, Type: gguf.Q8_0, Data: make([]byte, 68)}, {Name: "b", Dims: []uint64{1}, Type: gguf.F32, Data: make([]byte, 4)}}, false)
	if err != nil {
		t.Fatal(err)
	}
	manifest := `{"layers":[{"mediaType":"application/vnd.ollama.image.model","digest":"sha256:` + digest + `"}]}`
	if err := os.WriteFile(filepath.Join(ollama, "manifests/registry.ollama.ai/library/tiny/q8"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	commit := strings.Repeat("c", 40)
	repo := filepath.Join(hf, "hub", "models--test--llama-gqa")
	mkdir(filepath.Join(repo, "refs"))
	mkdir(filepath.Join(repo, "snapshots"))
	if err := os.WriteFile(filepath.Join(repo, "refs", "main"), []byte(commit), 0o644); err != nil {
		t.Fatal(err)
	}
	src, _ := filepath.Abs(filepath.Join("..", "..", "testdata", "models", "llama-gqa"))
	if err := os.Symlink(src, filepath.Join(repo, "snapshots", commit)); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := listModels(&out, "json"); err != nil {
		t.Fatal(err)
	}
	var got []modelEntry
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("%d entries, want 3: %s", len(got), out.String())
	}
	b, o, h := got[0], got[1], got[2]
	if b.Name != "kvfoot-small" || b.Store != "built-in" || b.Architecture != "llama" || strings.Join(b.WeightTypes, ",") != "Q8_0,F32" || b.Error != "" {
		t.Errorf("built-in entry %+v", b)
	}
	if o.Name != "tiny:q8" || o.Store != "ollama" || o.Architecture != "qwen2" || strings.Join(o.WeightTypes, ",") != "Q8_0,F32" || o.Error != "" {
		t.Errorf("ollama entry %+v", o)
	}
	if h.Name != "test/llama-gqa" || h.Store != "huggingface" || h.Architecture != "LlamaForCausalLM" || len(h.WeightTypes) == 0 || h.Bytes == 0 || h.Error != "" {
		t.Errorf("huggingface entry %+v", h)
	}
	out.Reset()
	if err := listModels(&out, "text"); err != nil || !strings.Contains(out.String(), "tiny:q8") {
		t.Errorf("text listing %q, %v", out.String(), err)
	}
}
