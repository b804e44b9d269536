// Package outfile writes a command's output files safely: each is written under a
// temporary name in its folder and renamed into place only when it is complete, so
// that a reader never sees half a file and a failed or interrupted run leaves the old
// file (or nothing); and a file that already exists is replaced only when the user
// said so (--force).
package outfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// pending are the temporary files being written, for RemovePending.
var (
	mu      sync.Mutex
	pending = map[string]bool{}
)

// RemovePending removes every temporary file still being written: a command calls it
// when it is interrupted, so that a stopped run leaves no half file behind.
func RemovePending() {
	mu.Lock()
	defer mu.Unlock()
	for name := range pending {
		os.Remove(name)
	}
	clear(pending)
}

func track(name string, on bool) {
	mu.Lock()
	defer mu.Unlock()
	if on {
		pending[name] = true
	} else {
		delete(pending, name)
	}
}

// File is an output file being written.
type File struct {
	*os.File
	path  string
	force bool
}

// Create starts writing path. Without force it fails if path exists.
func Create(path string, force bool) (*File, error) {
	if err := Check(path, force); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, err
	}
	track(tmp.Name(), true)
	f := &File{File: tmp, path: path, force: force}
	if err := tmp.Chmod(0o644); err != nil { // CreateTemp's 0600 is for secrets
		f.Abort()
		return nil, err
	}
	return f, nil
}

// Check reports, without writing anything, whether path may be written: its folder
// exists, and path does not (unless force, and then it is not a folder).
func Check(path string, force bool) error {
	st, err := os.Stat(path)
	switch {
	case err == nil && st.IsDir():
		return fmt.Errorf("%s is a folder", path)
	case err == nil && !force:
		return fmt.Errorf("%s exists; pass --force to replace it", path)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return err
	}
	dir := filepath.Dir(path)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("%s: no folder %s", path, dir)
	}
	return nil
}

// Commit syncs and closes the file and moves it to its path. Without force it fails,
// leaving path as it was, if path was created meanwhile.
func (f *File) Commit() error {
	tmp := f.Name()
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = f.place(tmp)
	}
	os.Remove(tmp) // after a rename there is nothing to remove
	track(tmp, false)
	if err != nil {
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	return nil
}

// place moves tmp to the path: a rename with force; else a hard link, which fails if
// the path exists, or where links are not supported a check and a rename.
func (f *File) place(tmp string) error {
	if f.force {
		return os.Rename(tmp, f.path)
	}
	err := os.Link(tmp, f.path)
	if err == nil || errors.Is(err, fs.ErrExist) {
		if err != nil {
			err = fmt.Errorf("%s exists; pass --force to replace it", f.path)
		}
		return err
	}
	if err := Check(f.path, false); err != nil {
		return err
	}
	return os.Rename(tmp, f.path)
}

// Abort closes and removes the temporary file; path is untouched. It is a no-op
// after Commit.
func (f *File) Abort() {
	f.Close()
	os.Remove(f.Name())
	track(f.Name(), false)
}

// Write writes data to path as Create and Commit do.
func Write(path string, data []byte, force bool) error {
	f, err := Create(path, force)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Abort()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Commit()
}

// Path is where the file goes (Name is the temporary file's).
func (f *File) Path() string { return f.path }
