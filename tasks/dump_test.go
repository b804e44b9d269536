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
