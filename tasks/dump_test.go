package tasks

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func dumpTo(t *testing.T, workers int, format, path string) {
	t.Helper()
	c := testCorpus(t)
	var w DocWriter
	var err error
	if format == "bin" {
		w, err = NewBinWriter(BinBase(path), false)
	} else {
		w, err = NewJSONLWriter(path, false)
	}
	if err != nil {
		t.Fatal(err)
	}
	o := DumpOptions{Tasks: []string{"json_kv", CorpusTask, "ruler_vt"}, Lengths: []int{1024, 1536}, Count: 3, Seed: 11, Workers: workers}
	if err := Dump(o, Options{Corpus: c, Tokenizer: pairTok{}, Queries: 4}, w); err != nil {
		t.Fatal(err)
	}
}

// The output is the same whatever the number of workers, and the binary format
// holds the same ids and answer masks as the JSONL one.
func TestDumpDeterministicAndBinary(t *testing.T) {
	dir := t.TempDir()
	one, four := filepath.Join(dir, "one.jsonl"), filepath.Join(dir, "four.jsonl")
	dumpTo(t, 1, "jsonl", one)
	dumpTo(t, 4, "jsonl", four)
	a, _ := os.ReadFile(one)
	b, _ := os.ReadFile(four)
	if !bytes.Equal(a, b) || len(a) == 0 {
		t.Fatal("1 and 4 workers wrote different dumps")
	}
	dumpTo(t, 3, "bin", filepath.Join(dir, "d.jsonl"))
	ids, _ := os.ReadFile(filepath.Join(dir, "d.bin"))
	mask, _ := os.ReadFile(filepath.Join(dir, "d.mask"))
	offs, _ := os.ReadFile(filepath.Join(dir, "d.docs"))

	var docs []docJSON
	sc := bufio.NewScanner(bytes.NewReader(a))
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var d docJSON
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatal(err)
		}
		docs = append(docs, d)
	}
	if len(docs) != 18 || len(offs) != 8*len(docs) {
		t.Fatalf("%d documents, %d offset bytes; want 18 and %d", len(docs), len(offs), 8*18)
	}
	wantOrder := []string{"json_kv", CorpusTask, "ruler_vt"}
	total := 0
	for i, d := range docs {
		if d.Task != wantOrder[i%3] || d.Length != []int{1024, 1536}[i/9] {
			t.Errorf("document %d is %s/%d, out of order", i, d.Task, d.Length)
		}
		if off := int(binary.LittleEndian.Uint64(offs[8*i:])); off != total {
			t.Fatalf("document %d starts at %d, want %d", i, off, total)
		}
		inSpan := make([]byte, len(d.IDs))
		for _, s := range d.Spans {
			for j := s[0]; j < s[1]; j++ {
				inSpan[j] = 1
			}
		}
		for j, id := range d.IDs {
			if got := int(binary.LittleEndian.Uint16(ids[2*(total+j):])); got != id {
				t.Fatalf("document %d token %d: bin has %d, jsonl %d", i, j, got, id)
			}
		}
		if !bytes.Equal(mask[total:total+len(d.IDs)], inSpan) {
			t.Fatalf("document %d: mask differs from answer_spans", i)
		}
		total += len(d.IDs)
	}
	if 2*total != len(ids) || total != len(mask) {
		t.Errorf(".bin has %d bytes and .mask %d for %d tokens", len(ids), len(mask), total)
	}
}

func TestDumpErrors(t *testing.T) {
	if _, err := NewJSONLWriter(filepath.Join(t.TempDir(), "missing", "x.jsonl"), false); err == nil {
		t.Error("unwritable output accepted")
	}
	w, _ := NewBinWriter(filepath.Join(t.TempDir(), "x"), false)
	if err := w.Write(&Doc{IDs: []int{70000}}); err == nil {
		t.Error("an id beyond uint16 was written")
	}
	w.Close()
	err := Dump(DumpOptions{Tasks: []string{"bogus"}, Lengths: []int{512}, Count: 1}, Options{}, w)
	if err == nil {
		t.Error("unknown task dumped")
	}
	// A failed dump leaves no output; an existing file is replaced only with force.
	dir := t.TempDir()
	j, _ := NewJSONLWriter(filepath.Join(dir, "x.jsonl"), false)
	if err := Dump(DumpOptions{Tasks: []string{"bogus"}, Lengths: []int{512}, Count: 1}, Options{}, j); err == nil {
		t.Error("unknown task dumped")
	}
	b, _ := NewBinWriter(filepath.Join(dir, "y"), false)
	b.Write(&Doc{IDs: []int{1, 2}})
	if err := Dump(DumpOptions{Tasks: []string{"bogus"}, Lengths: []int{512}, Count: 1}, Options{}, b); err == nil {
		t.Error("unknown task dumped")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("a failed dump left %d files", len(ents))
	}
	os.WriteFile(filepath.Join(dir, "y.mask"), []byte("mine"), 0o644)
	if _, err := NewBinWriter(filepath.Join(dir, "y"), false); err == nil || !strings.Contains(err.Error(), "y.mask exists") {
		t.Errorf("existing y.mask: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("a refused dump left %d files besides y.mask", len(ents)-1)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "y.mask")); string(got) != "mine" {
		t.Errorf("y.mask became %q", got)
	}
}

// collect keeps the documents Dump writes.
type collect struct{ docs []*Doc }

func (c *collect) Write(d *Doc) error { c.docs = append(c.docs, d); return nil }
func (c *collect) Close() error       { return nil }
func (c *collect) Abort()             {}

// With Jitter, every document is as long as its drawn length, the lengths spread
// uniformly over [⌈L·(1−jitter)⌉, L] (mean and both ends checked by hand), and the
// draw is independent of the number of workers; with no jitter every document is L.
func TestDumpJitter(t *testing.T) {
	c := testCorpus(t)
	gen := Options{Corpus: c, Tokenizer: pairTok{}, Queries: 2}
	run := func(workers int, jitter float64) []*Doc {
		w := &collect{}
		o := DumpOptions{Tasks: []string{"json_kv", CorpusTask}, Lengths: []int{1024}, Count: 60, Seed: 5, Jitter: jitter, Workers: workers}
		if err := Dump(o, gen, w); err != nil {
			t.Fatal(err)
		}
		return w.docs
	}
	if lo := ShortestJittered(1024, 0.25); lo != 768 {
		t.Fatalf("shortest of 1024 at jitter 0.25: %d, want 768", lo)
	}
	docs, again := run(1, 0.25), run(3, 0.25)
	sum, lo, hi := 0, 1024, 0
	for i, d := range docs {
		if len(d.IDs) != d.Length || d.Length < 768 || d.Length > 1024 {
			t.Fatalf("document %d: %d tokens, length %d; want equal, in [768, 1024]", i, len(d.IDs), d.Length)
		}
		if a := again[i]; a.Length != d.Length || a.Text != d.Text {
			t.Fatalf("document %d differs between 1 and 3 workers", i)
		}
		sum += d.Length
		lo, hi = min(lo, d.Length), max(hi, d.Length)
	}
	// 120 draws from 257 values: the mean is 896 ± 7 (one standard error), and each
	// end's outer 32 values are missed with probability (225/257)^120 < 1e-6.
	if mean := float64(sum) / float64(len(docs)); mean < 868 || mean > 924 || lo >= 800 || hi <= 992 {
		t.Fatalf("lengths: mean %.1f, range [%d, %d]; want mean 896 ± 28 and the range past [800, 992]", mean, lo, hi)
	}
	for i, d := range run(2, 0) {
		if d.Length != 1024 || len(d.IDs) != 1024 {
			t.Fatalf("no jitter: document %d has %d tokens, length %d", i, len(d.IDs), d.Length)
		}
	}
}
