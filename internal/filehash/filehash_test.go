package filehash

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestFile(t *testing.T) {
	dir := t.TempDir()
	cacheFile = filepath.Join(dir, "cache", "sha256.json")
	p := filepath.Join(dir, "a")
	os.WriteFile(p, []byte("abc"), 0o644)
	// sha256("abc"), FIPS 180-2 appendix B.1
	const abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	for range 2 { // computed, then from the cache
		if got, err := File(p); err != nil || got != abc {
			t.Fatalf("File = %s, %v; want %s", got, err, abc)
		}
	}
	if _, err := os.Stat(cacheFile); err != nil {
		t.Errorf("no cache written: %v", err)
	}
	// a changed file (size or time) is read again
	os.WriteFile(p, []byte("abd"), 0o644)
	later := time.Now().Add(time.Hour)
	os.Chtimes(p, later, later)
	if got, _ := File(p); got == abc {
		t.Error("changed file: the cached digest was returned")
	}
	if _, err := File(dir); err == nil {
		t.Error("a folder was hashed")
	}
	if _, err := File(filepath.Join(dir, "none")); err == nil {
		t.Error("a missing file was hashed")
	}
	// Files depends on the order and names of the files, not their folder
	q := filepath.Join(dir, "b")
	os.WriteFile(q, []byte("abc"), 0o644)
	ab, _ := Files(p, q)
	ba, _ := Files(q, p)
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o755)
	os.WriteFile(filepath.Join(sub, "a"), []byte("abd"), 0o644)
	os.WriteFile(filepath.Join(sub, "b"), []byte("abc"), 0o644)
	moved, _ := Files(filepath.Join(sub, "a"), filepath.Join(sub, "b"))
	if ab == ba || ab != moved {
		t.Errorf("Files: %s %s %s; want the first two different, the first and last equal", ab, ba, moved)
	}
}
