package tokenizer

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestOpen: a GGUF file under any name gives its metadata's tokenizer, a folder its
// tokenizer.json's, and a file that is neither is refused by name.
func TestOpen(t *testing.T) {
	dir := filepath.Join(testdataT, "llama3_1")
	blob := filepath.Join(t.TempDir(), "sha256-abcd")
	if err := os.Rename(hfToGGUF(t, dir, "llama-bpe"), blob); err != nil {
		t.Fatal(err)
	}
	g, err := Open(blob)
	if err != nil {
		t.Fatal(err)
	}
	hf := family(t, "llama3_1")
	const text = "Hello, world! 12345 ünïcödé"
	if got, want := g.Encode(text), hf.Encode(text); !slices.Equal(got, want) || len(want) < 5 {
		t.Errorf("GGUF tokenizer: Encode %v, tokenizer.json's %v", got, want)
	}
	folder, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := folder.Encode(text); !slices.Equal(got, hf.Encode(text)) {
		t.Errorf("folder tokenizer: Encode %v, want %v", got, hf.Encode(text))
	}
	other := filepath.Join(t.TempDir(), "weights.bin")
	if err := os.WriteFile(other, []byte("not a tokenizer"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(other); err == nil || !strings.Contains(err.Error(), "weights.bin") {
		t.Errorf("Open(%s): %v, want an error naming it", other, err)
	}
}
