package model

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvfoot/kvfoot/format/gguf"
)

// A GGUF file whose weights outgrow the memory the machine has is refused before a byte
// of them is read, naming the file, what it needs and what there is; with enough memory,
// or where the memory is unknown, nothing is refused. The weights counted are the file's
// as stored, or four bytes an element when LoadOptions.F32 widens them.
func TestGGUFMemoryCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.gguf")
	tensors := []gguf.Tensor{
		{Name: "a", Dims: []uint64{32, 4}, Type: gguf.Q8_0, Data: make([]byte, 4*34)}, // 136 bytes, 128 elements
		{Name: "b", Dims: []uint64{8}, Type: gguf.F32, Data: make([]byte, 32)},
	}
	if err := gguf.WriteFile(path, []gguf.KV{{Key: "general.architecture", Value: "llama"}}, tensors, false); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	old := memAvailable
	t.Cleanup(func() { memAvailable = old })
	for _, c := range []struct {
		avail  uint64
		known  bool
		f32    bool
		refuse bool
	}{
		{168, true, false, false}, // 136 + 32 bytes stored
		{167, true, false, true},
		{544, true, true, false}, // (128 + 8) elements x 4 bytes
		{543, true, true, true},
		{1, false, true, false},
	} {
		memAvailable = func() (uint64, bool) { return c.avail, c.known }
		err := checkGGUFMemory(f, LoadOptions{F32: c.f32})
		if c.refuse != (err != nil) {
			t.Errorf("%d bytes available (known %v), F32 %v: %v", c.avail, c.known, c.f32, err)
		}
		if err != nil && (!strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "available")) {
			t.Errorf("the error should name the file and the memory available: %v", err)
		}
	}
	// this machine's own answer: known on Linux, and more than nothing
	if _, err := os.Stat("/proc/meminfo"); err == nil {
		if n, ok := old(); !ok || n == 0 {
			t.Errorf("/proc/meminfo gives %d bytes available (ok %v)", n, ok)
		}
	}
}
