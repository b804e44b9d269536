package main

import (
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/kvfoot/kvfoot/eval"
	"github.com/kvfoot/kvfoot/eval/slurm"
)

func init() {
	register("status", "show each stage of a study run in shards or on Slurm: finished, running, pending and failed cells", runStatus)
}

func runStatus(args []string) error {
	fs := newFlags("status")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: kvfoot status DIR\n\nShows each stage of the study in DIR (kvfoot eval --shard or --slurm --out DIR): its cells and\nsamples finished, running, pending and failed, from Slurm (squeue, sacct) where the stage was\nsubmitted and Slurm is here, else from the folder's files; and why earlier attempts failed.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("want one study folder (kvfoot status DIR), got %d arguments", fs.NArg())
	}
	dir := fs.Arg(0)
	if _, err := eval.ReadStudyFile(dir); err != nil {
		return fmt.Errorf("%s: not a study folder: %w", dir, err)
	}
	stages, err := eval.ReadStages(dir)
	if err != nil {
		return err
	}
	prog, err := eval.ReadFinished(dir)
	if err != nil {
		return err
	}
	if len(stages) == 0 {
		fmt.Printf("%s: no stage planned yet (kvfoot eval --plan --out %s shows the first)\n", dir, dir)
		return nil
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "stage\tcells\tfinished\trunning\tpending\tfailed\tsamples finished\tslurm jobs")
	for _, st := range stages {
		c := stageStatus(dir, st, prog)
		jobs := "-"
		if len(st.Jobs) > 0 {
			jobs = fmt.Sprint(st.Jobs)
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%d\t%d/%d\t%s\n", st.Number, len(st.Cells), c[finished], c[running], c[pending], c[failed],
			c[samplesDone], st.Samples(), jobs)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, st := range stages {
		for _, f := range st.Failures {
			fmt.Println("failed:", f)
		}
	}
	last := stages[len(stages)-1]
	if len(prog.Missing(last.Units())) == 0 {
		fmt.Printf("stage %d is finished: the next one is planned by the driver step or the next --shard, or the study is complete (kvfoot eval --plan --out %s tells)\n", last.Number, dir)
	}
	return nil
}

// The states counted per stage: cells by their state, and samples finished.
const (
	finished = iota
	running
	pending
	failed
	samplesDone
)

// stageStatus counts a stage's cells by state. A cell is finished when all its samples
// are in; else failed if a shard holding one of its missing samples ended, running if
// one runs, pending otherwise. A shard's state is Slurm's when the stage was submitted
// and Slurm knows the task; else running while its process holds its lock, ended when
// its results file exists, and pending before.
func stageStatus(dir string, st *eval.Stage, prog *eval.Finished) [5]int {
	var out [5]int
	n := st.Shards
	if n == 0 {
		n = shardsByHand(dir, st.Number)
	}
	var states map[int]string
	if len(st.Jobs) > 0 && slurm.Available() {
		states, _ = slurm.Queue(st.Jobs[len(st.Jobs)-1])
	}
	shardOf := map[eval.Unit]int{}
	if n > 0 {
		for i := range n {
			for _, u := range st.Share(i, n) {
				shardOf[u] = i
			}
		}
	}
	shardState := func(u eval.Unit) int {
		i, ok := shardOf[u]
		if !ok {
			return pending
		}
		if s, known := states[i]; known {
			if !slurm.Ended(s) {
				if s == "RUNNING" || s == "COMPLETING" {
					return running
				}
				return pending
			}
			return failed
		}
		if eval.ShardRunning(dir, st.Number, i, n) {
			return running
		}
		// submitted and no longer queued, or begun by hand and stopped: it ended unfinished
		if _, err := os.Stat(eval.ShardPath(dir, st.Number, i, n)); err == nil || len(st.Jobs) > 0 {
			return failed
		}
		return pending
	}
	for _, c := range st.Cells {
		state := finished
		for i := c.First; i <= c.Last; i++ {
			u := eval.Unit{Name: c.Name, Template: c.Template, Knob: c.Knob, Task: c.Task, Length: c.Length, Index: i}
			if prog.Done(u) {
				out[samplesDone]++
				continue
			}
			switch s := shardState(u); {
			case s == failed:
				state = failed
			case s == running && state != failed:
				state = running
			case state == finished:
				state = pending
			}
		}
		out[state]++
	}
	return out
}

// shardsByHand is N of the shards (i/N) run by hand on a stage, from their files: 0
// when none ran.
func shardsByHand(dir string, stage int) int {
	paths, _ := filepath.Glob(filepath.Join(dir, "shards", fmt.Sprintf("%03d-*of*.*", stage)))
	for _, p := range paths {
		var s, i, n int
		if k, _ := fmt.Sscanf(filepath.Base(p), "%03d-%dof%d.", &s, &i, &n); k == 3 && n > 0 {
			return n
		}
	}
	return 0
}
