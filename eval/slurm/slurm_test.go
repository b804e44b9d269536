package slurm

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvfoot/kvfoot/eval"
)

func TestRanges(t *testing.T) {
	for _, tc := range []struct {
		in   []int
		want string
	}{
		{[]int{0, 1, 2, 3}, "0-3"},
		{[]int{0, 1, 2, 3, 5, 7, 8}, "0-3,5,7-8"},
		{[]int{4}, "4"},
	} {
		if got := ranges(tc.in); got != tc.want {
			t.Errorf("ranges(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"--tasks=json_kv,ruler_mv": "--tasks=json_kv,ruler_mv",
		"--methods=full;snapkv*":   "'--methods=full;snapkv*'",
		"it's":                     `'it'\''s'`,
		"":                         "''",
		"/a b/kvfoot":              "'/a b/kvfoot'",
	} {
		if got := quote(in); got != want {
			t.Errorf("quote(%q) = %s, want %s", in, got, want)
		}
	}
}

// fakeCluster answers sbatch with job ids and squeue with the states the test sets.
type fakeCluster struct {
	submitted [][]string // script and arguments
	states    map[int]string
}

func (c *fakeCluster) sbatch(script string, args ...string) (string, error) {
	c.submitted = append(c.submitted, append([]string{script}, args...))
	return fmt.Sprint(100 + len(c.submitted)), nil
}

func (c *fakeCluster) queue(string) (map[int]string, error) { return c.states, nil }

// A stage goes to Slurm as a job array of its shards and a driver job after it; the
// driver reruns only the tasks whose samples are not all in, and a stage that failed
// three times stops the study with every attempt's reasons; a task still queued is
// never submitted twice.
func TestStepAttempts(t *testing.T) {
	dir := t.TempDir()
	stage := &eval.Stage{Number: 1, Cells: []eval.Cell{{Name: "full", Template: "full", Setting: "full", Task: "json_kv", Length: 900, First: 0, Last: 3, Step: "its one setting"}}}
	c := &fakeCluster{states: map[int]string{}}
	var out bytes.Buffer
	s := &Study{Dir: dir, WorkDir: "/work", Shard: []string{"/bin/kvfoot", "eval", "--out=" + dir}, Driver: []string{"/bin/kvfoot", "eval", "--slurm=true"},
		Options: Options{Partition: "cpu", Time: "1:00:00", CPUs: 4, Mem: "8G", ArrayLimit: 2, Shards: 2},
		Plan:    func(bool) (*eval.Stage, error) { return stage, nil }, Sbatch: c.sbatch, Queue: c.queue, Out: &out}
	if done, err := s.Step(false); err != nil || done {
		t.Fatalf("first step: %v, %v", done, err)
	}
	if len(c.submitted) != 2 || c.submitted[0][1] != "--array=0-1%2" || c.submitted[1][1] != "--dependency=afterany:101" {
		t.Fatalf("submitted %q", c.submitted)
	}
	script, _ := os.ReadFile(c.submitted[0][0])
	for _, want := range []string{"#SBATCH --partition=cpu", "#SBATCH --time=1:00:00", "#SBATCH --cpus-per-task=4", "#SBATCH --mem=8G",
		"#SBATCH --requeue", "#SBATCH --chdir=/work", `exec /bin/kvfoot eval --out=` + dir + ` --shard "$SLURM_ARRAY_TASK_ID/2"`} {
		if !strings.Contains(string(script), want) {
			t.Errorf("array script lacks %q:\n%s", want, script)
		}
	}
	if stage.Shards != 2 || len(stage.Jobs) != 1 {
		t.Errorf("stage after submitting: %+v", stage)
	}
	// A task still running: the driver, started again by hand, refuses.
	c.states = map[int]string{1: "RUNNING"}
	if _, err := s.Step(false); err == nil || !strings.Contains(err.Error(), "still running as Slurm job 101") {
		t.Errorf("with a running task: %v", err)
	}
	// Shard 0's samples are in: only task 1 runs again, twice more, then the study stops.
	results := eval.ShardPath(dir, 1, 0, 2)
	os.MkdirAll(filepath.Dir(results), 0o755)
	var lines []string
	for _, i := range []int{0, 2} {
		lines = append(lines, fmt.Sprintf(`{"kvfoot_results":1,"method":"full","task":"json_kv","length":900,"index":%d}`, i))
	}
	os.WriteFile(results, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	os.MkdirAll(filepath.Join(dir, "slurm"), 0o755)
	os.WriteFile(filepath.Join(dir, "slurm", "stage-001-1.log"), []byte("stage 1, shard 1/2\nkvfoot eval: terminated\n"), 0o644)
	c.states = map[int]string{1: "CANCELLED"}
	for attempt := 2; attempt <= 3; attempt++ {
		if _, err := s.Step(false); err != nil {
			t.Fatalf("attempt %d: %v", attempt, err)
		}
		if got := c.submitted[len(c.submitted)-2][1]; got != "--array=1%2" {
			t.Errorf("attempt %d: %s, want only task 1", attempt, got)
		}
	}
	_, err := s.Step(false)
	if err == nil || !strings.Contains(err.Error(), "stage 1 failed 3 times") || !strings.Contains(err.Error(), "task 1/2 CANCELLED: kvfoot eval: terminated") {
		t.Fatalf("after three attempts: %v", err)
	}
	if len(stage.Failures) != 3 || len(c.submitted) != 6 {
		t.Errorf("failures %q, %d submissions", stage.Failures, len(c.submitted))
	}
	// The stage file holds the record for kvfoot status.
	if stages, err := eval.ReadStages(dir); err != nil || len(stages) != 1 || len(stages[0].Failures) != 3 {
		t.Errorf("stage file: %v %+v", err, stages)
	}
}

// --dry-run prints both scripts and submits and writes nothing.
func TestStepDryRun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "study")
	stage := &eval.Stage{Number: 1, Cells: []eval.Cell{{Name: "full", Template: "full", Setting: "full", Task: "json_kv", Length: 900, First: 0, Last: 2}}}
	c := &fakeCluster{}
	var out bytes.Buffer
	s := &Study{Dir: dir, WorkDir: "/work", Shard: []string{"kvfoot", "eval"}, Driver: []string{"kvfoot", "eval", "--slurm=true"},
		Options: Options{GPUs: 1}, Plan: func(write bool) (*eval.Stage, error) {
			if write {
				t.Error("a dry run asked to write the stage")
			}
			return stage, nil
		}, Sbatch: c.sbatch, Queue: c.queue, Out: &out}
	if _, err := s.Step(true); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{"--array=0-2", "#SBATCH --gpus-per-task=1", `--shard "$SLURM_ARRAY_TASK_ID/3"`, "exec kvfoot eval --slurm=true"} {
		if !strings.Contains(got, want) {
			t.Errorf("dry run lacks %q:\n%s", want, got)
		}
	}
	if len(c.submitted) != 0 {
		t.Errorf("a dry run submitted %q", c.submitted)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Error("a dry run wrote into the folder")
	}
}
