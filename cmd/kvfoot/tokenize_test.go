package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTokenizeCommands runs tokenize (--text and --input) and detokenize on the Llama
// 3.1 tokenizer against the Hugging Face library's encodings.
func TestTokenizeCommands(t *testing.T) {
	dir := filepath.Join("..", "..", "testdata", "tokenizers", "llama3_1")
	f, err := os.Open(filepath.Join(dir, "encodings.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type enc struct {
		Text        string `json:"text"`
		IDs         []int  `json:"ids"`
		WithSpecial []int  `json:"ids_with_special"`
		Decoded     string `json:"decoded"`
	}
	var refs []enc
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e enc
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, e)
	}
	refs = refs[:20]
	input := filepath.Join(t.TempDir(), "in.jsonl")
	var b strings.Builder
	for _, r := range refs {
		line, _ := json.Marshal(map[string]string{"text": r.Text})
		b.Write(append(line, '\n'))
	}
	if err := os.WriteFile(input, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := capture(t, func() error { return runTokenize([]string{"--tokenizer", dir, "--input", input, "--add-special"}) })
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(refs) {
		t.Fatalf("%d output lines for %d inputs", len(lines), len(refs))
	}
	for i, l := range lines {
		var got struct{ IDs []int }
		if err := json.Unmarshal([]byte(l), &got); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got.IDs) != fmt.Sprint(refs[i].WithSpecial) {
			t.Errorf("--input line %d %q: ids %v, want %v", i+1, refs[i].Text, got.IDs, refs[i].WithSpecial)
		}
	}
	for _, r := range refs[1:6] {
		out, err := capture(t, func() error { return runTokenize([]string{"--tokenizer", dir, "--text", r.Text}) })
		if err != nil {
			t.Fatal(err)
		}
		var ids []int
		if err := json.Unmarshal([]byte(out), &ids); err != nil || fmt.Sprint(ids) != fmt.Sprint(r.IDs) {
			t.Errorf("--text %q: %q (%v), want %v", r.Text, out, err, r.IDs)
		}
		s := strings.Trim(fmt.Sprint(r.IDs), "[]")
		text, err := capture(t, func() error {
			return runDetokenize([]string{"--tokenizer", dir, "--ids", strings.ReplaceAll(s, " ", ",")})
		})
		if err != nil || strings.TrimSuffix(text, "\n") != r.Decoded {
			t.Errorf("detokenize %v: %q (%v), want %q", r.IDs, text, err, r.Decoded)
		}
	}
	if _, err := capture(t, func() error {
		return runTokenize([]string{"--tokenizer", filepath.Join(dir, "none.json"), "--text", "x"})
	}); err == nil {
		t.Error("a missing tokenizer file was accepted")
	}
	if _, err := capture(t, func() error { return runDetokenize([]string{"--tokenizer", dir, "--ids", "1,x"}) }); err == nil {
		t.Error("a malformed id list was accepted")
	}
}
