package slurm

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvfoot/kvfoot/eval"
)

// The study of the built-in model, small enough for two cores: full, streaming and
// SnapKV* on two recall tasks at 1024 tokens, two samples each; streaming passes at
// s = 0.05 and fails at 0.5, so the grid takes two stages (StopAtFail).
var studyArgs = []string{"eval", "--study", "default", "--tasks", "ruler_mk_needle,json_kv", "--lengths", "1024", "--samples", "2",
	"--grid", "0.05,0.5", "--probes", "1", "--bootstrap", "50", "--methods", "full;streaming;snapkv*"}

// Against a real one-node Slurm (tools/slurm/local.sh installs and starts it): the
// study submitted with --slurm, one task of its first stage cancelled mid-run
// (scancel), gives the report one process gives, byte for byte, with every sample in
// exactly one line of the shards' files; the driver recorded the cancelled attempt
// and reran it.
func TestSlurmIntegration(t *testing.T) {
	if os.Getenv("KVFOOT_SLURM_TEST") == "" {
		t.Skip("set KVFOOT_SLURM_TEST=1 to run against a real one-node Slurm (as root; installs slurm-wlm and munge when missing; .ci/run does)")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	setup := filepath.Join(root, "tools", "slurm", "local.sh")
	started := filepath.Join(t.TempDir(), "started")
	daemons := func(what string) ([]byte, error) {
		cmd := exec.Command(setup, what)
		// the script records the daemons this test starts there, and stops only them
		cmd.Env = append(os.Environ(), "KVFOOT_SLURM_STARTED="+started)
		return cmd.CombinedOutput()
	}
	out, err := daemons("start")
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 3 {
		t.Skipf("no Slurm here: %s", strings.TrimSpace(string(out)))
	}
	if err != nil {
		t.Fatalf("%s start: %v\n%s", setup, err, out)
	}
	t.Cleanup(func() {
		if out, err := daemons("stop"); err != nil {
			t.Errorf("%s stop: %v\n%s", setup, err, out)
		}
	})
	tmp := t.TempDir()
	kvfoot := filepath.Join(tmp, "kvfoot")
	build := exec.Command("go", "build", "-o", kvfoot, "./cmd/kvfoot")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(kvfoot, args...)
		cmd.Dir = root // the built-in model is found under the working directory
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kvfoot %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	one, many := filepath.Join(tmp, "one"), filepath.Join(tmp, "many")
	run(append(studyArgs, "--threads", "1", "--out", one)...)
	start := time.Now()
	t.Log(run(append(studyArgs, "--out", many, "--slurm", "--cpus-per-task", "1", "--shards", "2")...))

	// Cancel task 1 of the first stage once it has written a result but not all of them.
	first := readStage(t, many, 1)
	job := first.Jobs[0] + "_1"
	shard := eval.ShardPath(many, 1, 1, 2)
	want := len(first.Share(1, 2))
	for {
		if time.Since(start) > 3*time.Minute {
			t.Fatalf("task %s wrote no result in 3 minutes", job)
		}
		b, _ := os.ReadFile(shard)
		if n := bytes.Count(b, []byte("\n")); n >= 1 {
			if n >= want {
				t.Fatalf("task %s finished its %d samples before it could be cancelled", job, want)
			}
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out, err := exec.Command("scancel", job).CombinedOutput(); err != nil {
		t.Fatalf("scancel %s: %v\n%s", job, err, out)
	}
	t.Logf("cancelled %s after %s", job, time.Since(start).Round(time.Second))

	// The driver steps rerun the task, run the second stage and write the report.
	for {
		if _, err := os.Stat(filepath.Join(many, "report.md")); err == nil && len(queued(t)) == 0 {
			break
		}
		if time.Since(start) > 8*time.Minute {
			log, _ := os.ReadFile(filepath.Join(many, "slurm", "driver.log"))
			t.Fatalf("no report after 8 minutes; queue %q; driver log:\n%s", queued(t), log)
		}
		time.Sleep(time.Second)
	}
	t.Logf("study done through Slurm in %s", time.Since(start).Round(time.Second))
	first = readStage(t, many, 1)
	if len(first.Jobs) != 2 || len(first.Failures) != 1 || !strings.Contains(first.Failures[0], "task 1/2") {
		t.Errorf("stage 1: jobs %v, failures %q: want the cancelled attempt recorded and one rerun", first.Jobs, first.Failures)
	}
	for _, name := range []string{"report.md", "report.json", "results.csv", "critical.csv", "study.json", "score_vs_footprint_recall.png", "score_vs_footprint_recall.svg", "kv_timeline.png"} {
		a, errA := os.ReadFile(filepath.Join(one, name))
		b, errB := os.ReadFile(filepath.Join(many, name))
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Errorf("%s: the Slurm run's differs from the one-process run's (%v, %v)", name, errA, errB)
		}
	}
	single, _ := os.ReadFile(eval.ResultsPath(one))
	lines := 0
	for _, p := range eval.ResultsFiles(many) {
		b, _ := os.ReadFile(p)
		lines += bytes.Count(b, []byte("\n"))
	}
	if want := bytes.Count(single, []byte("\n")); lines != want {
		t.Errorf("%d result lines in the shards' files, want %d: every sample once", lines, want)
	}
	status := run("status", many)
	if !strings.Contains(status, "12/12") {
		t.Errorf("kvfoot status:\n%s", status)
	}
}

func readStage(t *testing.T, dir string, n int) *eval.Stage {
	t.Helper()
	b, err := os.ReadFile(eval.StagePath(dir, n))
	if err != nil {
		t.Fatal(err)
	}
	st := &eval.Stage{}
	if err := json.Unmarshal(b, st); err != nil {
		t.Fatal(err)
	}
	return st
}

// queued lists the jobs Slurm still has pending or running.
func queued(t *testing.T) []string {
	out, err := exec.Command("squeue", "-h", "-o", "%i %T").Output()
	if err != nil {
		t.Fatalf("squeue: %v", err)
	}
	return strings.Fields(string(out))
}
