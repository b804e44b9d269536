package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/kvfoot/kvfoot/eval"
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
		{[]string{"--tasks", "json_kv", "--lengths", "900", "--batch", "-1"}, "--batch -1: want ≥ 1"},
	} {
		args := append([]string{"--model", "../../testdata/models/llama-gqa", "--tokenizer", "../../eval/testdata/bytes_tokenizer.json"}, tc.args...)
		if err := runEval(args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one mentioning %q", tc.args, err, tc.want)
		}
	}
}

// kvfoot eval with no task flags runs the default study; --format json ends standard
// output with the report object (model, threshold, methods with their critical
// footprints, categories and results); the folder holds the report and resumes.
func TestEvalDefaultStudy(t *testing.T) {
	dir := t.TempDir()
	args := []string{"--model", "../../testdata/models/llama-gqa", "--tokenizer", "../../eval/testdata/bytes_tokenizer.json",
		"--samples", "1", "--grid", "0.5", "--probes", "0", "--bootstrap", "20", "--format", "json", "--out", dir}
	run := func() string {
		r, w, _ := os.Pipe()
		stdout, stderr := os.Stdout, os.Stderr
		os.Stdout = w
		os.Stderr, _ = os.Open(os.DevNull)
		err := runEval(args)
		w.Close()
		os.Stdout, os.Stderr = stdout, stderr
		out, _ := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		return lines[len(lines)-1]
	}
	last := run()
	var rep struct {
		Model     string  `json:"model"`
		Threshold float64 `json:"threshold"`
		Methods   []struct {
			Name       string                     `json:"name"`
			Spec       string                     `json:"spec"`
			Missing    string                     `json:"missing"`
			Critical   *float64                   `json:"critical_footprint"`
			Peak       *float64                   `json:"critical_peak"`
			Categories map[string]json.RawMessage `json:"categories"`
			Results    []struct {
				Task      string  `json:"task"`
				Category  string  `json:"category"`
				Length    int     `json:"length"`
				Setting   string  `json:"setting"`
				Sparsity  float64 `json:"sparsity"`
				Score     float64 `json:"score"`
				Footprint float64 `json:"footprint"`
				Peak      float64 `json:"peak"`
				Samples   int     `json:"samples"`
			} `json:"results"`
		} `json:"methods"`
	}
	if err := json.Unmarshal([]byte(last), &rep); err != nil {
		t.Fatalf("last line %q: %v", last, err)
	}
	var names []string
	for _, m := range rep.Methods {
		names = append(names, m.Name)
		if m.Missing == "" && len(m.Results) != 6 {
			t.Errorf("%s: %d results, want the 6 tasks of the default study", m.Name, len(m.Results))
		}
		cats := map[string]bool{}
		for _, r := range m.Results {
			cats[r.Category] = true
			if r.Length != 1024-128 || r.Samples != 1 || !(r.Footprint > 0 && r.Footprint <= 1) {
				t.Errorf("%s: result %+v", m.Name, r)
			}
		}
		if m.Missing == "" && len(cats) != 6 {
			t.Errorf("%s: categories %v, want recall, rag, rerank, icl, vt and html_to_tsv", m.Name, cats)
		}
	}
	if want := "full streaming duo prulong snapkv snapkv* pyramidkv* int4 prulong+snapkv*+int4"; strings.Join(names, " ") != want || rep.Threshold != 0.9 {
		t.Errorf("methods %q, threshold %v; want %q, 0.9", strings.Join(names, " "), rep.Threshold, want)
	}
	for _, f := range []string{"results.jsonl", "study.json", "report.md", "report.json", "results.csv", "critical.csv", "score_vs_footprint_recall.png", "kv_timeline.svg"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("report folder: %v", err)
		}
	}
	results, _ := os.ReadFile(filepath.Join(dir, "results.jsonl"))
	if again := run(); again != last {
		t.Errorf("rerun changed the report:\n%s\n%s", again, last)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "results.jsonl")); string(after) != string(results) {
		t.Errorf("rerun ran samples again (%d bytes of results, before %d)", len(after), len(results))
	}
	os.Remove(filepath.Join(dir, "report.md"))
	if err := runReport([]string{dir}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "report.md")); err != nil {
		t.Errorf("kvfoot report did not write report.md: %v", err)
	}
	if err := runReport([]string{t.TempDir()}); err == nil || !strings.Contains(err.Error(), "study.json") {
		t.Errorf("report of an empty folder: %v", err)
	}
}

// quiet is capture with standard error dropped (the progress lines).
func quiet(t *testing.T, fn func() error) (string, error) {
	t.Helper()
	stderr := os.Stderr
	os.Stderr, _ = os.Open(os.DevNull)
	defer func() { os.Stderr = stderr }()
	return capture(t, fn)
}

// stderrOf runs fn and returns what it wrote on standard error (standard output is
// captured and dropped).
func stderrOf(t *testing.T, fn func() error) (string, error) {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stderr := os.Stderr
	os.Stderr = f
	_, err = capture(t, fn)
	os.Stderr = stderr
	b, _ := os.ReadFile(f.Name())
	return string(b), err
}

var smallStudy = []string{"--model", "../../testdata/models/llama-gqa", "--tokenizer", "../../eval/testdata/bytes_tokenizer.json",
	"--samples", "2", "--grid", "0.2,0.5", "--probes", "1", "--bootstrap", "20", "--methods", "full;streaming;snapkv*", "--tasks", "json_kv,ruler_mv", "--study", "default"}

// kvfoot eval --plan lists the next stage's cells; --shard i/N runs the stages in
// shards; kvfoot status shows them; kvfoot report merges the shards into the report
// one process writes, byte for byte.
func TestEvalPlanShardReport(t *testing.T) {
	one, many := t.TempDir(), filepath.Join(t.TempDir(), "many")
	if _, err := quiet(t, func() error { return runEval(append(smallStudy, "--out", one)) }); err != nil {
		t.Fatal(err)
	}
	plan, err := quiet(t, func() error { return runEval(append(smallStudy, "--plan")) })
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"stage 1 (next to run): 12 samples in 6 cells; it depends on nothing",
		"full full json_kv 896 0–1 its one setting", "streaming streaming:sink=16,window=716 ruler_mv 896 0–1 grid",
		"snapkv* snapkv:sparsity=0.2,window=64,chunked=true,patch=64 ruler_mv 896 0–1 grid", "bisection steps"} {
		if !strings.Contains(strings.Join(strings.Fields(plan), " "), want) {
			t.Errorf("plan lacks %q:\n%s", want, plan)
		}
	}
	if _, err := os.Stat(many); err == nil {
		t.Error("--plan created the folder")
	}
	for round := 0; ; round++ {
		if round == 10 {
			t.Fatal("the study is not complete after 10 rounds of shards")
		}
		for i := range 2 {
			if _, err := quiet(t, func() error { return runEval(append(smallStudy, "--out", many, "--shard", fmt.Sprintf("%d/2", i))) }); err != nil {
				t.Fatal(err)
			}
		}
		status, err := quiet(t, func() error { return runStatus([]string{many}) })
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(status, "samples finished") || strings.Contains(status, "pending") && !strings.Contains(status, "finished") {
			t.Errorf("status:\n%s", status)
		}
		plan, err := quiet(t, func() error { return runEval(append(smallStudy, "--out", many, "--plan")) })
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(plan, "the study is complete") {
			break
		}
	}
	if _, err := quiet(t, func() error { return runReport([]string{many}) }); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"report.md", "report.json", "results.csv", "critical.csv", "study.json", "score_vs_footprint_recall.png", "kv_timeline.svg"} {
		a, _ := os.ReadFile(filepath.Join(one, name))
		b, err := os.ReadFile(filepath.Join(many, name))
		if err != nil || string(a) != string(b) {
			t.Errorf("%s: the shards' report differs from one process's (%v)", name, err)
		}
	}
	status, _ := quiet(t, func() error { return runStatus([]string{many}) })
	if !strings.Contains(strings.Join(strings.Fields(status), " "), "1 6 6 0 0 0 12/12") {
		t.Errorf("status after the study:\n%s", status)
	}
	// --workers: the same stages, three shards at once in one process, and its report
	workers := filepath.Join(t.TempDir(), "workers")
	errOut, err := stderrOf(t, func() error { return runEval(append(smallStudy, "--out", workers, "--workers", "3")) })
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errOut, "stage 1: 12 samples on 3 workers") {
		t.Errorf("--workers 3 said:\n%s", errOut)
	}
	for _, name := range []string{"report.md", "report.json", "results.csv", "critical.csv", "study.json"} {
		a, _ := os.ReadFile(filepath.Join(one, name))
		b, err := os.ReadFile(filepath.Join(workers, name))
		if err != nil || string(a) != string(b) {
			t.Errorf("%s: --workers 3's report differs from one process's (%v)", name, err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(workers, "results.jsonl")); len(b) != 0 {
		t.Errorf("--workers left %d bytes in results.jsonl: every sample belongs in the shard files", len(b))
	}
}

// --out never replaces a file kvfoot did not write without --force; two commands on
// one folder are refused, naming the holder; a failed run leaves no folder it made.
func TestEvalOutFolder(t *testing.T) {
	dir := t.TempDir()
	mine := filepath.Join(dir, "report.md")
	os.WriteFile(mine, []byte("my notes\n"), 0o644)
	args := append(smallStudy, "--out", dir, "--probes", "0", "--grid", "0.5")
	_, err := quiet(t, func() error { return runEval(args) })
	if err == nil || !strings.Contains(err.Error(), "report.md was not written by kvfoot; pass --force") {
		t.Errorf("a user's report.md: %v", err)
	}
	if b, _ := os.ReadFile(mine); string(b) != "my notes\n" {
		t.Errorf("report.md is now %q", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "results.jsonl")); err == nil {
		t.Error("the refused run wrote results")
	}
	if _, err := quiet(t, func() error { return runEval(append(args, "--force")) }); err != nil {
		t.Errorf("with --force: %v", err)
	}
	held, err := eval.OpenFolder(dir, eval.Exclusive, false)
	if err != nil {
		t.Fatal(err)
	}
	_, err = quiet(t, func() error { return runEval(args) })
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("in use by another kvfoot command (kvfoot process %d", os.Getpid())) {
		t.Errorf("a second command on the folder: %v", err)
	}
	if _, err := quiet(t, func() error { return runReport([]string{dir}) }); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("kvfoot report on a held folder: %v", err)
	}
	held.Close(false)
	fresh := filepath.Join(t.TempDir(), "new")
	_, err = quiet(t, func() error { return runEval(append(smallStudy, "--out", fresh, "--methods", "full;nosuch:x=1")) })
	if err == nil {
		t.Fatal("a bad method ran")
	}
	if _, err := os.Stat(fresh); !os.IsNotExist(err) {
		t.Errorf("the failed run left its folder: %v", err)
	}
}

func TestEvalStageFlagsBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--bootstrap", "0"}, "--bootstrap 0: want 1 to 100000"},
		{[]string{"--bootstrap", "100000000"}, "--bootstrap 100000000: want 1 to 100000"},
		{[]string{"--shard", "2/2", "--out", "x"}, `--shard "2/2": want i/N`},
		{[]string{"--shard", "0/2"}, "give --out DIR"},
		{[]string{"--slurm", "--out", "r.jsonl"}, "give --out DIR"},
		{[]string{"--partition", "cpu"}, "--partition goes with --slurm"},
		{[]string{"--plan", "--slurm", "--out", "x"}, "give one"},
		{[]string{"--slurm", "--out", "x", "--shards", "5000"}, "--shards 5000"},
		{[]string{"--shard", "0/2", "--out", "x", "--retry-failed"}, "--retry-failed runs in one process"},
		{[]string{"--slurm", "--out", "x", "--retry-failed"}, "--retry-failed runs in one process"},
		{[]string{"--workers", "2"}, "--workers runs a study's stages in a folder: give --out DIR"},
		{[]string{"--workers", "2", "--out", "r.jsonl"}, "give --out DIR"},
		{[]string{"--workers", "-1", "--out", "x"}, "--workers -1: want 0 to 256"},
		{[]string{"--workers", "100000", "--out", "x"}, "--workers 100000: want 0 to 256"},
		{[]string{"--workers", "2", "--out", "x", "--shard", "0/2"}, "not with --shard, --slurm, --retry-failed or --plan"},
		{[]string{"--workers", "2", "--out", "x", "--plan"}, "not with --shard, --slurm, --retry-failed or --plan"},
	} {
		if _, err := quiet(t, func() error { return runEval(append(smallStudy, tc.args...)) }); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
	if err := runStatus([]string{t.TempDir()}); err == nil || !strings.Contains(err.Error(), "not a study folder") {
		t.Errorf("status of an empty folder: %v", err)
	}
}

// --slurm --dry-run prints the stage's job array (every study flag passed through, the
// threads set to the task's CPUs) and the driver step, and leaves no folder.
func TestEvalSlurmDryRun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "study")
	out, err := quiet(t, func() error {
		return runEval(append(smallStudy, "--out", dir, "--slurm", "--dry-run", "--cpus-per-task", "2", "--partition", "cpu", "--shards", "4"))
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# sbatch --array=0-3 (the job array)", "#SBATCH --partition=cpu", "#SBATCH --cpus-per-task=2",
		"--model=../../testdata/models/llama-gqa", "--out=" + dir + " --probes=1", `--threads=2 --shard "$SLURM_ARRAY_TASK_ID/4"`,
		"--slurm=true", "# sbatch --dependency=afterany:"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "--dry-run") {
		t.Errorf("the driver step would be a dry run:\n%s", out)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the dry run left the folder: %v", err)
	}
}

// kvfoot eval --batch N (and --step-rows, several samples' chunks in one forward) gives
// an evaluation's results (and a study's, with its report) as --batch 1 does, but for
// the timings.
func TestEvalBatch(t *testing.T) {
	dir := t.TempDir()
	eval1 := []string{"--model", "../../testdata/models/llama-gqa", "--tokenizer", "../../eval/testdata/bytes_tokenizer.json",
		"--samples", "3", "--methods", "full;snapkv:sparsity=0.5,window=8,chunked=true,patch=8", "--tasks", "json_kv,ruler_mv", "--lengths", "600", "--chunk", "128"}
	for _, tc := range []struct {
		name string
		args []string
	}{{"eval", eval1}, {"study", smallStudy}} {
		lines := map[string][]string{}
		for batch, flags := range map[string][]string{"1": {"--batch", "1"}, "4": {"--batch", "4"}, "4x": {"--batch", "4", "--step-rows", "512"}} {
			out := filepath.Join(dir, tc.name+batch)
			if _, err := quiet(t, func() error { return runEval(append(append(tc.args, flags...), "--out", out)) }); err != nil {
				t.Fatalf("%s --batch %s: %v", tc.name, batch, err)
			}
			b, err := os.ReadFile(filepath.Join(out, "results.jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			timings := regexp.MustCompile(`"(prefill|decode)_seconds":[0-9.e+-]+`)
			for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				lines[batch] = append(lines[batch], timings.ReplaceAllString(l, ""))
			}
			slices.Sort(lines[batch])
			if rep, err := os.ReadFile(filepath.Join(out, "report.md")); err == nil {
				lines[batch] = append(lines[batch], string(rep))
			}
		}
		for _, batch := range []string{"4", "4x"} {
			if len(lines["1"]) < 12 || !slices.Equal(lines["1"], lines[batch]) {
				t.Errorf("%s: %s gives other results than --batch 1:\n%s\n\nwant\n%s", tc.name, batch, strings.Join(lines[batch], "\n"), strings.Join(lines["1"], "\n"))
			}
		}
	}
}
