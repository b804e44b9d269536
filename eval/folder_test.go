package eval

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// A report never replaces a file kvfoot did not write, or one changed since it wrote
// it, without Force.
func TestFolderRefusesForeignFiles(t *testing.T) {
	st, f := knobStudy(t)
	rep, err := RunStudy(st, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	mine := filepath.Join(dir, "report.md")
	os.WriteFile(mine, []byte("my notes\n"), 0o644)
	err = writeStudy(t, dir, st.File(nil), rep)
	if err == nil || !strings.Contains(err.Error(), "report.md was not written by kvfoot") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("a user's report.md: %v", err)
	}
	if b, _ := os.ReadFile(mine); string(b) != "my notes\n" {
		t.Fatalf("the user's report.md became %q", b)
	}
	out, err := OpenFolder(dir, Exclusive, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := out.CheckWritable(); err == nil || !strings.Contains(err.Error(), "report.md") {
		t.Errorf("CheckWritable: %v", err)
	}
	out.Close(false)
	os.Remove(mine)
	if err := writeStudy(t, dir, st.File(nil), rep); err != nil {
		t.Fatal(err)
	}
	if err := writeStudy(t, dir, st.File(nil), rep); err != nil {
		t.Fatalf("rewriting kvfoot's own report: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "critical.csv"), []byte("edited\n"), 0o644)
	if err := writeStudy(t, dir, st.File(nil), rep); err == nil || !strings.Contains(err.Error(), "changed since kvfoot wrote it") {
		t.Errorf("an edited critical.csv: %v", err)
	}
	forced, err := OpenFolder(dir, Exclusive, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteStudy(forced, st.File(nil), rep); err != nil {
		t.Errorf("with force: %v", err)
	}
	forced.Close(false)
}

// One command holds a folder: a second is refused with the process that holds it;
// the shards of a stage share it.
func TestFolderLock(t *testing.T) {
	dir := t.TempDir()
	a, err := OpenFolder(dir, Exclusive, false)
	if err != nil {
		t.Fatal(err)
	}
	_, err = OpenFolder(dir, Exclusive, false)
	if err == nil || !strings.Contains(err.Error(), "in use by another kvfoot command (kvfoot process "+strconv.Itoa(os.Getpid())) {
		t.Errorf("second exclusive open: %v", err)
	}
	if _, err := OpenFolder(dir, Shared, false); err == nil {
		t.Error("a shard opened a folder held by one process")
	}
	a.Close(false)
	s1, err := OpenFolder(dir, Shared, false)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := OpenFolder(dir, Shared, false)
	if err != nil {
		t.Errorf("two shards: %v", err)
	} else {
		s2.Close(false)
	}
	if _, err := OpenFolder(dir, Exclusive, false); err == nil {
		t.Error("one process opened a folder shards hold")
	}
	s1.Close(false)
	if b, err := OpenFolder(dir, Exclusive, false); err != nil {
		t.Errorf("after the others closed: %v", err)
	} else {
		b.Close(false)
	}
}

// A failed command leaves no empty folder it created; a folder that was there stays.
func TestFolderRemovedOnFailure(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "study")
	f, err := OpenFolder(dir, Exclusive, false)
	if err != nil {
		t.Fatal(err)
	}
	f.Close(true)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the failed command's new folder is left: %v", err)
	}
	old := t.TempDir()
	g, err := OpenFolder(old, Exclusive, false)
	if err != nil {
		t.Fatal(err)
	}
	g.Close(true)
	if _, err := os.Stat(old); err != nil {
		t.Errorf("a folder that was there before is gone: %v", err)
	}
}

// A disk that fills while a report is rewritten leaves every plot whole under its
// name (the old one): the process's file size limit stands in for the full disk.
func TestReportFullDisk(t *testing.T) {
	if dir := os.Getenv("KVFOOT_TEST_FULL_DISK"); dir != "" {
		limit, _ := strconv.ParseUint(os.Getenv("KVFOOT_TEST_FULL_DISK_LIMIT"), 10, 64)
		signal.Ignore(syscall.SIGXFSZ) // a write past the limit fails with EFBIG instead
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: limit, Max: limit}); err != nil {
			t.Fatal(err)
		}
		st, f := knobStudy(t)
		st.Threshold, st.Results = 0.5, "" // another report: every file is written anew
		rep, err := RunStudy(st, f, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := writeStudy(t, dir, st.File(nil), rep); err == nil {
			t.Fatal("the report was written past the file size limit")
		}
		return
	}
	st, f := knobStudy(t)
	rep, err := RunStudy(st, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := writeStudy(t, dir, st.File(nil), rep); err != nil {
		t.Fatal(err)
	}
	before := map[string][]byte{}
	var small, plot int64
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		fi, _ := e.Info()
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		before[e.Name()] = b
		if strings.HasSuffix(e.Name(), ".png") || strings.HasSuffix(e.Name(), ".svg") {
			plot = max(plot, fi.Size())
		} else {
			small = max(small, fi.Size())
		}
	}
	limit := small + 4096 // the tables fit, the largest plot does not
	if plot <= limit {
		t.Fatalf("largest plot %d bytes, the other files %d: no limit between them", plot, small)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestReportFullDisk$")
	cmd.Env = append(os.Environ(), "KVFOOT_TEST_FULL_DISK="+dir, fmt.Sprintf("KVFOOT_TEST_FULL_DISK_LIMIT=%d", limit))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the full-disk run: %v\n%s", err, out)
	}
	for name, old := range before {
		if !strings.HasSuffix(name, ".png") && !strings.HasSuffix(name, ".svg") {
			continue
		}
		now, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(now, old) && len(now) < len(old)/2 {
			t.Errorf("%s after the disk filled: %d bytes (was %d), %v", name, len(now), len(old), err)
		}
		if strings.HasSuffix(name, ".png") && !bytes.HasSuffix(now, []byte("IEND\xaeB`\x82")) {
			t.Errorf("%s is cut short: no PNG end chunk", name)
		}
	}
	if tmp, _ := filepath.Glob(filepath.Join(dir, ".*.tmp-*")); len(tmp) > 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
}

// The progress line estimates the time left from the mean so far and says so: never
// "at most", since later samples can take longer.
func TestProgressETA(t *testing.T) {
	var b bytes.Buffer
	p := newProgress(&b, 10)
	p.add(true, "one")
	p.done = 9
	p.add(true, "last")
	out := b.String()
	if strings.Contains(out, "at most") || !strings.Contains(out, "about") || !strings.Contains(out, "of up to 10 samples") {
		t.Errorf("progress:\n%s", out)
	}
}
