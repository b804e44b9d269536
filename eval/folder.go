package eval

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/kvfoot/kvfoot/internal/outfile"
)

// Folder is a study's --out folder held by one command: locked against other commands
// on it, and with a record (writtenName) of every file kvfoot wrote there with its
// SHA-256, so that a file kvfoot did not write, or one changed since, is replaced only
// with Force.
type Folder struct {
	Dir     string
	Force   bool
	lock    *os.File
	created bool
	written map[string]string // file name → SHA-256 of what kvfoot wrote
}

const (
	lockName     = ".kvfoot.lock"
	planLockName = ".kvfoot-plan.lock"
	writtenName  = ".kvfoot-written.json"
)

// Lock modes: a single process (eval, report, the Slurm driver) holds a folder
// exclusively; the shards of a stage share it with one another.
const (
	Exclusive = syscall.LOCK_EX
	Shared    = syscall.LOCK_SH
)

// OpenFolder creates dir when missing and locks it (mode Exclusive or Shared); a
// folder another command holds is refused, naming the process that holds it.
func OpenFolder(dir string, mode int, force bool) (*Folder, error) {
	f := &Folder{Dir: dir, Force: force, written: map[string]string{}}
	fi, err := os.Stat(dir)
	switch {
	case err == nil && !fi.IsDir():
		return nil, fmt.Errorf("--out %s is a file: give a folder (or a results file ending in .jsonl)", dir)
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("--out: %w", err)
		}
		f.created = true
	case err != nil:
		return nil, fmt.Errorf("--out: %w", err)
	}
	lf, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		f.removeIfCreated()
		return nil, fmt.Errorf("--out %s: %w", dir, err)
	}
	if err := syscall.Flock(int(lf.Fd()), mode|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(lf.Name())
		lf.Close()
		who := strings.TrimSpace(string(holder))
		if who == "" {
			who = "another process"
		}
		return nil, fmt.Errorf("--out %s is in use by another kvfoot command (%s, as %s records); wait for it to end or give another folder", dir, who, lf.Name())
	}
	host, _ := os.Hostname()
	lf.Truncate(0)
	fmt.Fprintf(lf, "kvfoot process %d on %s\n", os.Getpid(), host)
	f.lock = lf
	if err := f.readWritten(); err != nil {
		f.Close(false)
		return nil, err
	}
	return f, nil
}

// readWritten reads the record of kvfoot's files anew: the shards that share a folder
// may have added to it.
func (f *Folder) readWritten() error {
	b, err := os.ReadFile(filepath.Join(f.Dir, writtenName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err == nil {
		err = json.Unmarshal(b, &f.written)
	}
	if err != nil {
		return fmt.Errorf("--out %s: %s: %w", f.Dir, writtenName, err)
	}
	return nil
}

// Close releases the lock. After a failure (failed), a folder this command created is
// removed if nothing but its lock is left in it.
func (f *Folder) Close(failed bool) {
	if f.lock != nil {
		f.lock.Close()
		f.lock = nil
	}
	if failed {
		f.removeIfCreated()
	}
}

func (f *Folder) removeIfCreated() {
	if !f.created {
		return
	}
	ents, err := os.ReadDir(f.Dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if e.Name() != lockName && e.Name() != planLockName {
			return
		}
	}
	os.Remove(filepath.Join(f.Dir, lockName))
	os.Remove(filepath.Join(f.Dir, planLockName))
	os.Remove(f.Dir)
}

// Path is name inside the folder.
func (f *Folder) Path(name string) string { return filepath.Join(f.Dir, name) }

// mayWrite reports whether name may be (re)placed: it is absent, or holds what kvfoot
// last wrote there, or Force is set.
func (f *Folder) mayWrite(name string) error {
	if err := f.readWritten(); err != nil {
		return err
	}
	data, err := os.ReadFile(f.Path(name))
	switch {
	case errors.Is(err, fs.ErrNotExist) || f.Force:
		return nil
	case err != nil:
		return fmt.Errorf("--out: %w", err)
	case f.written[name] == hashOf(data):
		return nil
	case f.written[name] != "":
		return fmt.Errorf("--out: %s was changed since kvfoot wrote it; pass --force to replace it", f.Path(name))
	}
	return fmt.Errorf("--out: %s was not written by kvfoot; pass --force to replace it, or give another folder", f.Path(name))
}

// CheckWritable refuses, before any work, a folder holding files under the names a
// report takes that kvfoot did not write (a user's report.md, say).
func (f *Folder) CheckWritable() error {
	ents, err := os.ReadDir(f.Dir)
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	for _, e := range ents {
		if reportFile(e.Name()) {
			if err := f.mayWrite(e.Name()); err != nil {
				return err
			}
		}
	}
	return nil
}

// reportFile reports whether a report may write a file of this name.
func reportFile(name string) bool {
	if slices.Contains([]string{StudyFileName, "report.md", "report.json", "results.csv", "critical.csv"}, name) {
		return true
	}
	ext := filepath.Ext(name)
	return (ext == ".png" || ext == ".svg") && slices.ContainsFunc([]string{"score_vs_footprint_", "kv_timeline", "head_masks_"},
		func(p string) bool { return strings.HasPrefix(name, p) })
}

// write puts data under name through a temporary file and a rename (a full disk leaves
// the old file or none, never half of one) and records it as kvfoot's.
func (f *Folder) write(name string, data []byte) error {
	if err := f.mayWrite(name); err != nil {
		return err
	}
	if err := outfile.Write(f.Path(name), data, true); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	f.written[name] = hashOf(data)
	js, err := json.MarshalIndent(f.written, "", "  ")
	if err != nil {
		return err
	}
	if err := outfile.Write(f.Path(writtenName), append(js, '\n'), true); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

func hashOf(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}
