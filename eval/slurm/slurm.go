// Package slurm runs a kvfoot study on a Slurm cluster: each stage of the study (see
// eval.Stage) as a job array whose tasks are its shards, and after it one small driver
// job that reads the results, reruns the tasks that did not finish (at most three
// attempts a stage), and plans and submits the next stage; the last writes the report.
package slurm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/kvfoot/kvfoot/eval"
	"github.com/kvfoot/kvfoot/internal/outfile"
)

// Options are the resources each task asks for; empty ones are left to the cluster's
// defaults.
type Options struct {
	Partition  string
	Time       string // a Slurm time limit: minutes, or [D-]HH:MM:SS
	CPUs       int    // --cpus-per-task
	GPUs       int    // --gpus-per-task
	Mem        string // --mem per task, e.g. 16G
	ArrayLimit int    // tasks of an array running at once (0: no limit)
	Shards     int    // tasks of a stage's array (0: one per sample, at most MaxShards)
}

// MaxShards is the most tasks a stage's array has by default: Slurm's default
// MaxArraySize is 1001.
const MaxShards = 1000

// MaxAttempts is how often a stage's tasks run before the study stops with their
// failures.
const MaxAttempts = 3

// Study is one study folder driven through Slurm.
type Study struct {
	Dir     string
	Options Options
	// Shard is the command line of a shard's task, to which "--shard i/N" is added;
	// Driver that of the driver step (this command again). Both run in WorkDir.
	Shard, Driver []string
	WorkDir       string
	// Plan returns the folder's unfinished stage, or plans and (with write) records the
	// next; nil when the study is complete (eval.CurrentStage).
	Plan func(write bool) (*eval.Stage, error)
	// Sbatch submits a script and returns its job id; Queue returns the states of a job's
	// tasks that Slurm still knows (squeue, then sacct); both default to the commands.
	Sbatch func(script string, args ...string) (string, error)
	Queue  func(job string) (map[int]string, error)
	Out    io.Writer
}

// Step does what is due: nothing left (done), or the current stage submitted (again,
// for its unfinished tasks) with the driver step after it. With dryRun it prints the
// scripts and submits and writes nothing.
func (s *Study) Step(dryRun bool) (done bool, err error) {
	if s.Sbatch == nil {
		s.Sbatch = sbatch
	}
	if s.Queue == nil {
		s.Queue = Queue
	}
	stage, err := s.Plan(!dryRun)
	if err != nil || stage == nil {
		return stage == nil && err == nil, err
	}
	prog, err := eval.ReadFinished(s.Dir)
	if err != nil {
		return false, err
	}
	n := stage.Shards
	if n == 0 {
		n = s.Options.Shards
		if n == 0 {
			n = min(stage.Samples(), MaxShards)
		}
	}
	var tasks []int
	for i := range n {
		if len(prog.Missing(stage.Share(i, n))) > 0 {
			tasks = append(tasks, i)
		}
	}
	if len(stage.Jobs) > 0 {
		last := stage.Jobs[len(stage.Jobs)-1]
		states, err := s.Queue(last)
		if err != nil {
			return false, err
		}
		for _, i := range tasks {
			if st := states[i]; st != "" && !Ended(st) {
				return false, fmt.Errorf("stage %d is still running as Slurm job %s (task %d %s): see kvfoot status %s", stage.Number, last, i, strings.ToLower(st), s.Dir)
			}
		}
		stage.Failures = append(stage.Failures, s.failures(stage, last, n, tasks, states))
		if len(stage.Jobs) >= MaxAttempts {
			if !dryRun {
				if err := eval.WriteStage(s.Dir, stage); err != nil {
					return false, err
				}
			}
			return false, fmt.Errorf("stage %d failed %d times; the study stops:\n%s", stage.Number, len(stage.Jobs), strings.Join(stage.Failures, "\n"))
		}
	}
	attempt := len(stage.Jobs) + 1
	array := s.arrayScript(stage.Number, attempt, n)
	driver := s.driverScript(stage.Number, attempt)
	arrayArg := "--array=" + ranges(tasks)
	if s.Options.ArrayLimit > 0 {
		arrayArg += "%" + strconv.Itoa(s.Options.ArrayLimit)
	}
	if dryRun {
		fmt.Fprintf(s.Out, "# stage %d, attempt %d: %d samples in %d cells, %d tasks\n# sbatch %s (the job array)\n%s\n# sbatch --dependency=afterany:<the array's job id> (the driver step)\n%s",
			stage.Number, attempt, stage.Samples(), len(stage.Cells), len(tasks), arrayArg, array, driver)
		return false, nil
	}
	logs := filepath.Join(s.Dir, "slurm")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return false, err
	}
	arrayPath := filepath.Join(logs, fmt.Sprintf("stage-%03d-try%d.sh", stage.Number, attempt))
	driverPath := filepath.Join(logs, fmt.Sprintf("driver-%03d-try%d.sh", stage.Number, attempt))
	for path, text := range map[string]string{arrayPath: array, driverPath: driver} {
		if err := outfile.Write(path, []byte(text), true); err != nil {
			return false, err
		}
	}
	job, err := s.Sbatch(arrayPath, arrayArg)
	if err != nil {
		return false, err
	}
	stage.Shards, stage.Jobs = n, append(stage.Jobs, job)
	if err := eval.WriteStage(s.Dir, stage); err != nil {
		return false, err
	}
	// afterany: the driver runs however the tasks end, to rerun the ones that did not
	// finish; the next stage is submitted only once every sample of this one is in.
	driverJob, err := s.Sbatch(driverPath, "--dependency=afterany:"+job)
	if err != nil {
		return false, err
	}
	fmt.Fprintf(s.Out, "stage %d (attempt %d): %d samples in %d cells as Slurm job array %s (%s), then driver job %s; see kvfoot status %s\n",
		stage.Number, attempt, stage.Samples(), len(stage.Cells), job, arrayArg, driverJob, s.Dir)
	return false, nil
}

// failures says why the unfinished tasks of a stage's attempt ended: Slurm's state
// when it still knows the task, and the last line of the task's log.
func (s *Study) failures(stage *eval.Stage, job string, n int, tasks []int, states map[int]string) string {
	var parts []string
	for _, i := range tasks {
		why := states[i]
		if why == "" {
			why = "ended unfinished"
		}
		if line := lastLine(filepath.Join(s.Dir, "slurm", fmt.Sprintf("stage-%03d-%d.log", stage.Number, i))); line != "" {
			why += ": " + line
		}
		parts = append(parts, fmt.Sprintf("task %d/%d %s", i, n, why))
	}
	return fmt.Sprintf("stage %d attempt %d (job %s): %s", stage.Number, len(stage.Jobs), job, strings.Join(parts, "; "))
}

func lastLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// header is the #SBATCH lines every job of the study shares.
func (s *Study) header(name string, cpus, gpus int) string {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n")
	fmt.Fprintf(&b, "#SBATCH --job-name=%s\n", name)
	fmt.Fprintf(&b, "#SBATCH --chdir=%s\n", quote(s.WorkDir))
	if s.Options.Partition != "" {
		fmt.Fprintf(&b, "#SBATCH --partition=%s\n", s.Options.Partition)
	}
	if s.Options.Time != "" {
		fmt.Fprintf(&b, "#SBATCH --time=%s\n", s.Options.Time)
	}
	if s.Options.Mem != "" {
		fmt.Fprintf(&b, "#SBATCH --mem=%s\n", s.Options.Mem)
	}
	if cpus > 0 {
		fmt.Fprintf(&b, "#SBATCH --cpus-per-task=%d\n", cpus)
	}
	if gpus > 0 {
		fmt.Fprintf(&b, "#SBATCH --gpus-per-task=%d\n", gpus)
	}
	return b.String()
}

// arrayScript is a stage's job array: task i runs shard i of n; a task a node failure
// kills is requeued by Slurm (--requeue) and resumes from its results file, and its
// log is appended to, not replaced.
func (s *Study) arrayScript(stage, attempt, n int) string {
	var b strings.Builder
	b.WriteString(s.header(fmt.Sprintf("kvfoot-s%03d", stage), s.Options.CPUs, s.Options.GPUs))
	logs := filepath.Join(absolute(s.Dir, s.WorkDir), "slurm")
	fmt.Fprintf(&b, "#SBATCH --output=%s\n#SBATCH --open-mode=append\n#SBATCH --requeue\n", quote(filepath.Join(logs, fmt.Sprintf("stage-%03d-%%a.log", stage))))
	fmt.Fprintf(&b, "# stage %d, attempt %d, %d shards\n", stage, attempt, n)
	fmt.Fprintf(&b, "exec %s --shard \"$SLURM_ARRAY_TASK_ID/%d\"\n", join(s.Shard), n)
	return b.String()
}

// driverScript is the step after a stage: this command again, which reruns what did
// not finish or plans and submits the next stage, or writes the report.
func (s *Study) driverScript(stage, attempt int) string {
	var b strings.Builder
	b.WriteString(s.header(fmt.Sprintf("kvfoot-d%03d", stage), 1, 0))
	logs := filepath.Join(absolute(s.Dir, s.WorkDir), "slurm")
	fmt.Fprintf(&b, "#SBATCH --output=%s\n#SBATCH --open-mode=append\n", quote(filepath.Join(logs, "driver.log")))
	fmt.Fprintf(&b, "# after stage %d, attempt %d\n", stage, attempt)
	fmt.Fprintf(&b, "exec %s\n", join(s.Driver))
	return b.String()
}

func absolute(path, wd string) string {
	if filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(wd, path)
}

// ranges writes task indices as Slurm's --array list: 0-3,5,7-8.
func ranges(xs []int) string {
	var parts []string
	for i := 0; i < len(xs); {
		j := i
		for j+1 < len(xs) && xs[j+1] == xs[j]+1 {
			j++
		}
		if j > i {
			parts = append(parts, fmt.Sprintf("%d-%d", xs[i], xs[j]))
		} else {
			parts = append(parts, strconv.Itoa(xs[i]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}

// quote quotes a word for sh.
func quote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func join(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = quote(w)
	}
	return strings.Join(q, " ")
}

// Available reports whether Slurm's commands are here.
func Available() bool {
	_, err := exec.LookPath("sbatch")
	return err == nil
}

func sbatch(script string, args ...string) (string, error) {
	cmd := exec.Command("sbatch", append(append([]string{"--parsable"}, args...), script)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("sbatch %s: %v: %s", script, err, strings.TrimSpace(stderr.String()))
	}
	id, _, _ := strings.Cut(strings.TrimSpace(string(out)), ";") // "id;cluster" on a federation
	if id == "" {
		return "", fmt.Errorf("sbatch %s printed no job id", script)
	}
	return id, nil
}

// Queue returns the state of each task of a job array that Slurm knows: squeue's for
// the queued and running ones, sacct's for the ended ones where accounting is on.
func Queue(job string) (map[int]string, error) {
	states := map[int]string{}
	if _, err := exec.LookPath("squeue"); err != nil {
		return states, nil
	}
	out, err := exec.Command("squeue", "-h", "-r", "-j", job, "-o", "%K %T").Output()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return nil, fmt.Errorf("squeue: %w", err)
	}
	parse(states, string(out), " ")
	// sacct fails where accounting is off: the ended tasks are then told by their files
	if out, err := exec.Command("sacct", "-n", "-P", "-X", "-j", job, "-o", "JobID,State").Output(); err == nil {
		var lines []string
		for _, l := range strings.Split(string(out), "\n") {
			id, state, ok := strings.Cut(l, "|")
			if _, task, ok2 := strings.Cut(id, "_"); ok && ok2 {
				lines = append(lines, task+"|"+strings.Fields(state + " ")[0])
			}
		}
		known := map[int]string{}
		parse(known, strings.Join(lines, "\n"), "|")
		for i, st := range known {
			if _, ok := states[i]; !ok {
				states[i] = st
			}
		}
	}
	return states, nil
}

// parse reads "index SEP state" lines.
func parse(into map[int]string, text, sep string) {
	for _, l := range strings.Split(strings.TrimSpace(text), "\n") {
		a, b, ok := strings.Cut(strings.TrimSpace(l), sep)
		if i, err := strconv.Atoi(a); ok && err == nil {
			into[i] = strings.TrimSpace(b)
		}
	}
}

// notEnded are the task states of a task that has not ended.
var notEnded = []string{"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED"}

// Ended reports whether a task state is final.
func Ended(state string) bool { return !slices.Contains(notEnded, state) }
