package modeldir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mkModel(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFind(t *testing.T) {
	root := t.TempDir()
	sub := filepath.Join(root, "a", "b")
	os.MkdirAll(sub, 0o755)
	t.Chdir(sub)
	t.Setenv("KVFOOT_MODEL", "")

	if _, err := Find(""); err == nil || !strings.Contains(err.Error(), "KVFOOT_MODEL") {
		t.Errorf("nothing there: %v", err)
	}
	mkModel(t, filepath.Join(root, Builtin))
	got, err := Find("")
	if err != nil || got != filepath.Join(root, Builtin) {
		t.Errorf("checkout parent: got %q, %v", got, err)
	}
	env := filepath.Join(root, "envmodel")
	mkModel(t, env)
	t.Setenv("KVFOOT_MODEL", env)
	if got, err := Find(""); err != nil || got != env {
		t.Errorf("$KVFOOT_MODEL: got %q, %v", got, err)
	}
	t.Setenv("KVFOOT_MODEL", filepath.Join(root, "missing"))
	if _, err := Find(""); err == nil {
		t.Error("a missing $KVFOOT_MODEL was accepted")
	}
	if got, err := Find(env); err != nil || got != env {
		t.Errorf("explicit: got %q, %v", got, err)
	}
	if _, err := Find(root); err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("explicit folder without config.json: %v", err)
	}
	// a folder whose model is model.gguf: found, and hashed as that file
	gg := filepath.Join(root, "gguf")
	os.MkdirAll(gg, 0o755)
	if err := os.WriteFile(filepath.Join(gg, "model.gguf"), []byte("GGUF weights"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := Find(gg); err != nil || got != gg {
		t.Errorf("a folder with model.gguf: got %q, %v", got, err)
	}
	h, err := Hash(gg)
	if want, _ := Hash(filepath.Join(gg, "model.gguf")); err != nil || h != want || h == "" {
		t.Errorf("Hash of a folder with model.gguf: %q, %v; the file's %q", h, err, want)
	}
}
