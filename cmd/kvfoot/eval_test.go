package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// kvfoot eval --format json ends its standard output with the report object.
func TestEvalJSONLastLine(t *testing.T) {
	r, w, _ := os.Pipe()
	stdout, stderr := os.Stdout, os.Stderr
	os.Stdout = w
	os.Stderr, _ = os.Open(os.DevNull)
	results := filepath.Join(t.TempDir(), "r.jsonl")
	err := runEval([]string{"--model", "../../testdata/models/llama-gqa", "--tokenizer", "../../eval/testdata/bytes_tokenizer.json",
		"--tasks", "ruler_mk_uuid,icl_labels", "--lengths", "900", "--samples", "2", "--chunk", "256", "--format", "json", "--out", results})
	w.Close()
	os.Stdout, os.Stderr = stdout, stderr
	out, _ := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var rep struct {
		Model   string `json:"model"`
		Methods []struct {
			Name    string `json:"name"`
			Results []struct {
				Task     string   `json:"task"`
				Category string   `json:"category"`
				Length   int      `json:"length"`
				Score    *float64 `json:"score"`
				Samples  int      `json:"samples"`
			} `json:"results"`
		} `json:"methods"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rep); err != nil {
		t.Fatalf("last line %q: %v", lines[len(lines)-1], err)
	}
	if len(rep.Methods) != 1 || rep.Methods[0].Name != "full" || len(rep.Methods[0].Results) != 2 {
		t.Fatalf("report %+v", rep)
	}
	for i, want := range []string{"ruler_mk_uuid", "icl_labels"} {
		res := rep.Methods[0].Results[i]
		if res.Task != want || res.Length != 900 || res.Samples != 2 || res.Score == nil || *res.Score < 0 || *res.Score > 100 {
			t.Errorf("result %d: %+v", i, res)
		}
	}
	data, _ := os.ReadFile(results)
	if n := strings.Count(string(data), "\n"); n != 4 {
		t.Errorf("results file has %d lines, want 4", n)
	}
}

func TestEvalBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--tasks", "nope", "--lengths", "900"}, "unknown task"},
		{[]string{"--tasks", "json_kv", "--lengths", "x"}, "--lengths"},
		{[]string{"--tasks", "json_kv", "--lengths", "4096"}, "beyond the model's context"},
		{[]string{"--tasks", "ruler_mv", "--lengths", "200"}, "too short"},
		{[]string{"--tasks", "json_kv", "--lengths", "900", "--out", "/nonexistent/dir/r.jsonl"}, "--out"},
		{[]string{"--tasks", "json_kv", "--lengths", "900", "--corpus", "/nonexistent/dir"}, "--corpus"},
		{[]string{"--helmet", "json_kv"}, "NAME=FILE"},
		{[]string{"--helmet", "json_kv=../../tasks/testdata/none.jsonl"}, "none.jsonl"},
		{[]string{"--helmet", "squad=../../tasks/testdata/helmet_json_kv.jsonl"}, "squad"},
		{[]string{"--helmet", "json_kv=../../tasks/testdata/helmet_json_kv.jsonl", "--tasks", "json_kv"}, "--helmet replaces"},
		{[]string{"--tasks", "json_kv", "--lengths", "900", "extra"}, `unexpected arguments ["extra"]`},
		{[]string{"--tasks", "json_kv", "--lengths", "900", "--methods", "full,streaming:sink=4,window=-1"}, `"streaming:sink=4,window=-1"`},
		{[]string{"--tasks", "json_kv", "--lengths", "1000"}, "context of 1024 tokens"},
		{[]string{"--tasks", "json_kv", "--lengths", "900", "--out", "../../README.md"}, "--out ../../README.md is a file: give a folder"},
	} {
		args := append([]string{"--model", "../../testdata/models/llama-gqa", "--tokenizer", "../../eval/testdata/bytes_tokenizer.json"}, tc.args...)
		if err := runEval(args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one mentioning %q", tc.args, err, tc.want)
		}
	}
}
