package kv

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
)

// TestWithFS: a spec's masks file is read from the cache's FS, not from disk (even
// with WithDir holding a file of the same name), and a name the FS lacks is an error
// that names only the name.
func TestWithFS(t *testing.T) {
	s := Shape{Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 8}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "m.tsv"), []byte("0\t0\n0\t0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fsys := fstest.MapFS{"m.tsv": {Data: []byte("1\t0.2\n0.9\t0\n")}}
	c, err := New(s, "headmask:masks=m.tsv", WithFS(fsys), WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	// the 0.5 rule on the FS's values; the disk's would make every head streaming
	if got, want := c.pol.(*headmask).stream, [][]bool{{false, true}, {false, true}}; !reflect.DeepEqual(got, want) {
		t.Errorf("streaming heads %v, want %v (the FS's masks)", got, want)
	}
	_, err = New(s, "headmask:masks=other.tsv", WithFS(fsys), WithDir(dir))
	if err == nil || !strings.Contains(err.Error(), "other.tsv") || strings.Contains(err.Error(), dir) {
		t.Errorf("a name the FS lacks: %v; want an error naming other.tsv and no folder", err)
	}
	if _, err := New(s, "headmask:masks=m.tsv", WithDir(dir)); err != nil {
		t.Errorf("without WithFS, WithDir's file: %v", err)
	}
}
