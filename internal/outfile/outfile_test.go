package outfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out.bin")
	if err := Write(p, []byte("one"), false); err != nil {
		t.Fatal(err)
	}
	if err := Write(p, []byte("two"), false); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("overwrite without force: %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "one" {
		t.Errorf("refused overwrite changed the file to %q", b)
	}
	if err := Write(p, []byte("three"), true); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "three" {
		t.Errorf("forced overwrite: %q", b)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", st.Mode().Perm())
	}
	for _, bad := range []string{dir, filepath.Join(dir, "none", "x")} {
		if err := Write(bad, nil, true); err == nil {
			t.Errorf("%s: written", bad)
		}
	}
	// Abort leaves nothing; a file created while writing is not replaced.
	f, err := Create(filepath.Join(dir, "late"), false)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("mine")
	os.WriteFile(filepath.Join(dir, "late"), []byte("theirs"), 0o644)
	if err := f.Commit(); err == nil {
		t.Error("commit replaced a file created meanwhile")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "late")); string(b) != "theirs" {
		t.Errorf("late file is %q", b)
	}
	g, _ := Create(filepath.Join(dir, "aborted"), false)
	g.WriteString("x")
	g.Abort()
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("files left: %v, want out.bin and late", names)
	}
}
