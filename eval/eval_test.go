package eval

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kvfoot/kvfoot/tasks"
)

// byteTok is one token per byte.
type byteTok struct{}

func (byteTok) Encode(s string) []int {
	ids := make([]int, len(s))
	for i := range len(s) {
		ids[i] = int(s[i])
	}
	return ids
}

func (byteTok) Decode(ids []int) string {
	b := make([]byte, len(ids))
	for i, id := range ids {
		b[i] = byte(id)
	}
	return string(b)
}

// fake answers every prompt it knows with a canned text, token by token, and counts
// its runs. Its one method is "full"; chunk is its one setting.
type fake struct {
	answers map[string]string
	runs    int
	ctx     int
	chunk   int
}

func (f *fake) Context() int { return f.ctx }

func (f *fake) Check(method string) error {
	if method != "full" {
		return fmt.Errorf("unknown policy %q", method)
	}
	return nil
}

func (f *fake) Settings() (map[string]string, error) {
	return map[string]string{"chunk": strconv.Itoa(f.chunk)}, nil
}

func (f *fake) Run(method string, prompt []int, maxNew int, stop func([]int) bool) (Output, error) {
	f.runs++
	var out []int
	for _, id := range (byteTok{}).Encode(f.answers[(byteTok{}).Decode(prompt)]) {
		if len(out) == maxNew {
			break
		}
		out = append(out, id)
		if stop(out) {
			break
		}
	}
	return Output{IDs: out}, nil
}

func setup(t *testing.T, perfect bool) (Config, *fake) {
	t.Helper()
	c, err := tasks.DefaultCorpus()
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Model: "fake", Methods: []string{"full"}, Tasks: []string{"ruler_mv", "records_tsv"},
		Lengths: []int{1024, 2048}, Samples: 3, Seed: 4, BOS: -1,
		Gen: tasks.Options{Corpus: c, Tokenizer: byteTok{}}}
	f := &fake{answers: map[string]string{}, ctx: 4096}
	for _, task := range cfg.Tasks {
		for _, l := range cfg.Lengths {
			for i := range 5 {
				in, err := tasks.Generate(task, l, i, cfg.Seed, cfg.Gen)
				if err != nil {
					t.Fatal(err)
				}
				a := " wrong\n"
				if perfect || i == 0 {
					switch task {
					case "ruler_mv":
						a = " " + strings.Join(in.Answers, ", ") + "\nmore text after the stop"
					case "records_tsv":
						a = strings.TrimPrefix(in.Answers[0], in.Prefix) + "\n"
					}
				}
				f.answers[in.Prompt] = a
			}
		}
	}
	return cfg, f
}

func TestScoresAndReport(t *testing.T) {
	cfg, f := setup(t, false)
	rep, err := Run(cfg, f)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(rep)
	// Sample 0 of each cell is right, samples 1 and 2 wrong: 100/3.
	want := `{"model":"fake","methods":[{"name":"full","results":[` +
		`{"task":"ruler_mv","category":"recall","length":1024,"score":33.333333333333336,"samples":3},` +
		`{"task":"ruler_mv","category":"recall","length":2048,"score":33.333333333333336,"samples":3},` +
		`{"task":"records_tsv","category":"html_to_tsv","length":1024,"score":33.333333333333336,"samples":3},` +
		`{"task":"records_tsv","category":"html_to_tsv","length":2048,"score":33.333333333333336,"samples":3}]}]}`
	if string(b) != want {
		t.Errorf("report\n%s\nwant\n%s", b, want)
	}
}

func TestResume(t *testing.T) {
	cfg, f := setup(t, true)
	cfg.Results = filepath.Join(t.TempDir(), "r.jsonl")
	cfg.Samples = 2
	if _, err := Run(cfg, f); err != nil {
		t.Fatal(err)
	}
	if f.runs != 8 {
		t.Fatalf("%d runs, want 8", f.runs)
	}
	cfg.Samples = 3
	rep, err := Run(cfg, f)
	if err != nil {
		t.Fatal(err)
	}
	if f.runs != 12 {
		t.Errorf("%d runs after resuming, want 12 (4 new samples)", f.runs)
	}
	for _, r := range rep.Methods[0].Results {
		if r.Samples != 3 || r.Score != 100 {
			t.Errorf("%+v: want 3 samples scoring 100", r)
		}
	}
	data, _ := os.ReadFile(cfg.Results)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 12 {
		t.Fatalf("results file has %d lines, want 12", len(lines))
	}
	var s Sample
	// HELMET's generation: no cut at the newline, the whole answer is kept and scored.
	if err := json.Unmarshal([]byte(lines[0]), &s); err != nil || !strings.HasSuffix(s.Output, "\nmore text after the stop") {
		t.Errorf("first result %+v (%v): want the whole output, newline and all", s, err)
	}
	if s.Format != 1 || s.Settings["chunk"] != "0" || s.Settings["generation"] != "helmet" || s.Settings["seed"] != "4" || s.Settings["bos"] != "-1" ||
		!strings.Contains(s.Settings["corpus"], " files, ") || len(s.Prompt) != 64 || s.MaxNew == 0 {
		t.Errorf("first result does not record what it was made with: %+v", s)
	}
}

func TestCheck(t *testing.T) {
	cfg, f := setup(t, true)
	f.ctx = 1500
	if _, err := Run(cfg, f); err == nil || !strings.Contains(err.Error(), "beyond the model's context") {
		t.Errorf("length beyond context: %v", err)
	}
	cfg.Tasks = []string{"json_kv", "nope"}
	f.ctx = 4096
	if err := Check(&cfg, f); err == nil || !strings.Contains(err.Error(), "unknown task") {
		t.Errorf("unknown task: %v", err)
	}
	cfg, f = setup(t, true)
	cfg.Results = filepath.Join(t.TempDir(), "no", "such", "dir.jsonl")
	if _, err := Run(cfg, f); err == nil {
		t.Error("unwritable results file accepted")
	}
}

// Loaded (HELMET) data is cut to the context minus the generation budget, scored, and
// reported per dataset.
func TestLoadedData(t *testing.T) {
	ins, err := tasks.LoadHELMETFile("../tasks/testdata/helmet_ruler_mv.jsonl", "ruler_niah_mv")
	if err != nil {
		t.Fatal(err)
	}
	full := len(ins[0].Prompt)
	f := &fake{answers: map[string]string{}, ctx: full}
	cfg := Config{Model: "fake", Methods: []string{"full"}, Samples: 5, BOS: -1,
		Data: []Dataset{{Name: "ruler_niah_mv", Instances: ins}}, Gen: tasks.Options{Tokenizer: byteTok{}}}
	// the budget of 50 new tokens forces a cut: the fake knows the cut prompt only
	cut := *ins[0]
	if _, err := cut.Truncate(byteTok{}, full-ins[0].MaxNew); err != nil {
		t.Fatal(err)
	}
	f.answers[cut.Prompt] = " " + strings.Join(ins[0].Answers, " and ") + "\n"
	rep, err := Run(cfg, f)
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Methods[0].Results
	if len(r) != 1 || r[0].Task != "ruler_niah_mv" || r[0].Samples != len(ins) || r[0].Length != full {
		t.Fatalf("report %+v", r)
	}
	if want := 100 / float64(len(ins)); r[0].Score != want {
		t.Errorf("score %v, want %v (only the first, cut prompt is answered)", r[0].Score, want)
	}
}

// TaskStop stops at the task's stop string and scores the text before it; the results
// record the mode, and a file made in the other mode is refused.
func TestTaskStop(t *testing.T) {
	cfg, f := setup(t, true)
	cfg.Results = filepath.Join(t.TempDir(), "r.jsonl")
	cfg.Samples, cfg.Tasks, cfg.Lengths = 1, []string{"ruler_mv"}, []int{1024}
	cfg.TaskStop = true
	if _, err := Run(cfg, f); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(cfg.Results)
	var s Sample
	if err := json.Unmarshal(data, &s); err != nil || strings.Contains(s.Output, "\n") || s.Output == "" ||
		s.Settings["generation"] != "task_stop" || s.Score != 100 {
		t.Errorf("result %+v (%v): want the output cut before the newline, scoring 100", s, err)
	}
	cfg.TaskStop = false
	if _, err := Run(cfg, f); err == nil || !strings.Contains(err.Error(), "generation task_stop, this run helmet") {
		t.Errorf("a task_stop results file resumed without it: %v", err)
	}
}
