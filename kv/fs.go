package kv

import (
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// WithFS opens the files a spec names (File keys: headmask's masks) from fsys instead
// of the operating system's files: a server reads its masks once into memory, so that
// nothing on disk can break them later and no error names a path of its own. Names
// are then fsys paths (fs.ValidPath), and WithDir does not apply.
func WithFS(fsys fs.FS) Option { return func(c *config) { c.fsys = fsys } }

// Open opens the file that File key names, and returns it with the name it was
// opened by: from the cache's WithFS, or else from disk relative to its WithDir.
func (a Args) Open(key string) (io.ReadCloser, string, error) {
	name := a.Text(key)
	if a.fsys != nil {
		f, err := a.fsys.Open(name)
		return f, name, err
	}
	if a.dir != "" && !filepath.IsAbs(name) {
		name = filepath.Join(a.dir, name)
	}
	f, err := os.Open(name)
	return f, name, err
}
