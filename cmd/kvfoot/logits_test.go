package main

import (
	"encoding/json"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kvfoot/kvfoot/format/safetensors"
)

const gqa = "../../testdata/models/llama-gqa"

// capture runs fn with os.Stdout redirected and returns what it printed.
func capture(t *testing.T, fn func() error) (string, error) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = w
	done := make(chan string)
	go func() { b, _ := io.ReadAll(r); done <- string(b) }()
	ferr := fn()
	w.Close()
	os.Stdout = old
	return <-done, ferr
}

// TestLogitsCommand: the file written by `kvfoot logits` holds the reference logits.
func TestLogitsCommand(t *testing.T) {
	ref, err := safetensors.Open(filepath.Join(gqa, "reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	it, _ := ref.Tensor("input_ids")
	ids, _ := it.Int64s()
	ids = ids[:20]
	var s []string
	for _, id := range ids {
		s = append(s, strconv.FormatInt(id, 10))
	}
	out := filepath.Join(t.TempDir(), "l.safetensors")
	if err := runLogits([]string{"--model", gqa, "--ids", strings.Join(s, ","), "--chunk", "7", "--out", out}); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lt, _ := f.Tensor("logits")
	got, _ := lt.Float32s()
	wt, _ := ref.Tensor("logits")
	want, _ := wt.Float32s()
	if lt.Shape[0] != 20 || lt.Shape[1] != 512 {
		t.Fatalf("shape %v", lt.Shape)
	}
	for i := range got {
		if math.Abs(float64(got[i]-want[i])) > 1e-3 {
			t.Fatalf("logit %d: %g, reference %g", i, got[i], want[i])
		}
	}
}

func TestGenerateJSON(t *testing.T) {
	out, err := capture(t, func() error {
		return runGenerate([]string{"--model", gqa, "--prompt-ids", "5,6,7", "--max-tokens", "5", "--format", "json", "--ignore-eos"})
	})
	if err != nil {
		t.Fatal(err)
	}
	var o struct {
		IDs          []int `json:"ids"`
		PromptTokens int   `json:"prompt_tokens"`
	}
	if err := json.Unmarshal([]byte(out), &o); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	if len(o.IDs) != 5 || o.PromptTokens != 3 {
		t.Errorf("output %s", out)
	}
}

// TestBadInput: every mistake is an error naming the flag, file, tensor or field.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	cut := filepath.Join(dir, "cut")
	os.Mkdir(cut, 0o755)
	cfg, _ := os.ReadFile(filepath.Join(gqa, "config.json"))
	os.WriteFile(filepath.Join(cut, "config.json"), cfg, 0o644)
	w, _ := os.ReadFile(filepath.Join(gqa, "model.safetensors"))
	os.WriteFile(filepath.Join(cut, "model.safetensors"), w[:len(w)/2], 0o644)
	out := filepath.Join(dir, "o.safetensors")
	cases := []struct {
		name string
		run  func([]string) error
		args []string
		want string
	}{
		{"built-in model not found", runLogits, []string{"--ids", "1", "--out", out}, "$KVFOOT_MODEL"},
		{"missing folder", runLogits, []string{"--model", filepath.Join(dir, "none"), "--ids", "1", "--out", out}, "no such file or folder"},
		{"truncated weights", runLogits, []string{"--model", cut, "--ids", "1", "--out", out}, "model.safetensors"},
		{"bad ids", runLogits, []string{"--model", gqa, "--ids", "1,x", "--out", out}, `--ids: "x"`},
		{"id outside vocab", runLogits, []string{"--model", gqa, "--ids", "1,512", "--out", out}, "outside the vocabulary"},
		{"no out", runLogits, []string{"--model", gqa, "--ids", "1"}, "--out"},
		{"unknown policy", runGenerate, []string{"--model", gqa, "--prompt-ids", "1", "--policy", "nonsense"}, "--policy"},
		{"bad top-p", runGenerate, []string{"--model", gqa, "--prompt-ids", "1", "--temperature", "1", "--top-p", "2"}, "top-p"},
		{"greedy and temperature", runGenerate, []string{"--model", gqa, "--prompt-ids", "1", "--greedy", "--temperature", "1"}, "--greedy"},
		{"bad format", runGenerate, []string{"--model", gqa, "--prompt-ids", "1", "--format", "xml"}, "--format"},
		{"bench without model", runBench, []string{"--ctx", "8"}, "--model DIR and --random"},
		{"bench unknown preset", runBench, []string{"--random", "gpt5"}, "unknown preset"},
		{"inspect missing", runInspect, []string{"--model", filepath.Join(dir, "none")}, "no such file or folder"},
	}
	t.Setenv("KVFOOT_MODEL", filepath.Join(dir, "none"))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := capture(t, func() error { return c.run(c.args) })
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}
