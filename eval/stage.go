package eval

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/kvfoot/kvfoot/internal/outfile"
)

// A study runs in stages when it is spread over processes (kvfoot eval --shard, a
// Slurm job array): a stage is every sample the study needs next whose running
// depends on nothing unfinished. The grid of every method runs at once (with
// StopAtFail, one grid setting per stage, each after the one before it passed); each
// bisection step depends on the results before it. A stage is planned from the
// results in the folder, written to stages/NNN.json, and split deterministically
// among its shards, each of which appends to a file of its own under shards/.

// errPending ends a step of the study while planning: its samples are not all in.
var errPending = errors.New("results pending")

// Unit is one sample of a stage: a method at one knob on one sample of a task.
type Unit struct {
	Name     string  `json:"name"`
	Template string  `json:"template"`
	Knob     float64 `json:"knob"`
	Task     string  `json:"task"`
	Length   int     `json:"length"`
	Index    int     `json:"index"`
}

func (u Unit) id() sampleID {
	return sampleID{Method{Spec: u.Template}.At(u.Knob, u.Length), u.Task, u.Length, u.Index}
}

// Cell is a method's setting on a range of samples of one task at one length, and the
// step of the study it is.
type Cell struct {
	Name     string  `json:"name"`
	Template string  `json:"template"`
	Knob     float64 `json:"knob"`
	Setting  string  `json:"setting"`
	Task     string  `json:"task"`
	Length   int     `json:"length"`
	First    int     `json:"first"` // samples First…Last
	Last     int     `json:"last"`
	Step     string  `json:"step"`
}

// Stage is one round of a study spread over processes.
type Stage struct {
	Number int    `json:"stage"`
	Cells  []Cell `json:"cells"`
	// The Slurm driver's record: the job array's size, its job ids (one per attempt)
	// and why the tasks of each failed attempt failed.
	Shards   int      `json:"shards,omitempty"`
	Jobs     []string `json:"jobs,omitempty"`
	Failures []string `json:"failures,omitempty"`
}

// planner collects the next stage's cells while the study is walked.
type planner struct {
	cells      []Cell
	refPending map[int]bool // lengths where full attention's results are not all in
}

func (p *planner) add(u Unit, step string) {
	if n := len(p.cells); n > 0 {
		c := &p.cells[n-1]
		if c.Name == u.Name && c.Knob == u.Knob && c.Task == u.Task && c.Length == u.Length && c.Last == u.Index-1 && c.Step == step {
			c.Last = u.Index
			return
		}
	}
	p.cells = append(p.cells, Cell{Name: u.Name, Template: u.Template, Knob: u.Knob, Setting: Method{Spec: u.Template}.At(u.Knob, u.Length),
		Task: u.Task, Length: u.Length, First: u.Index, Last: u.Index, Step: step})
}

// Units are the stage's samples in a fixed order.
func (st *Stage) Units() []Unit {
	var out []Unit
	for _, c := range st.Cells {
		for i := c.First; i <= c.Last; i++ {
			out = append(out, Unit{Name: c.Name, Template: c.Template, Knob: c.Knob, Task: c.Task, Length: c.Length, Index: i})
		}
	}
	return out
}

// Share is shard i's part (0 ≤ i < n) of the stage: every n-th sample from the i-th,
// so that each shard gets as many samples of each cell as any other.
func (st *Stage) Share(i, n int) []Unit {
	var out []Unit
	for j, u := range st.Units() {
		if j%n == i {
			out = append(out, u)
		}
	}
	return out
}

// Samples is the number of samples in the stage.
func (st *Stage) Samples() int {
	n := 0
	for _, c := range st.Cells {
		n += c.Last - c.First + 1
	}
	return n
}

// PlanNext returns the cells of the study's next stage given the results in its
// results files (Results and Also); none when the study is complete.
func PlanNext(st Study, b Backend) ([]Cell, error) {
	s, err := startStudy(&st, b)
	if err != nil {
		return nil, err
	}
	defer s.r.close()
	s.plan = &planner{refPending: map[int]bool{}}
	if err := s.walk(); err != nil {
		return nil, err
	}
	return s.plan.cells, nil
}

// RunUnits runs the given samples of a study that are not in its results files yet,
// appending them to Results.
func RunUnits(st Study, b Backend, units []Unit) error {
	s, err := startStudy(&st, b)
	if err != nil {
		return err
	}
	defer s.r.close()
	s.progress = newProgress(st.Progress, len(units))
	defer s.progress.finish()
	for _, run := range settingRuns(units, len(units)) {
		if err := s.runUnits(run); err != nil {
			return err
		}
	}
	return nil
}

// settingRuns splits units into runs of consecutive samples of one setting (which run
// together, batched), none longer than most.
func settingRuns(units []Unit, most int) [][]Unit {
	var out [][]Unit
	for len(units) > 0 {
		n := 1
		for n < len(units) && n < most && units[n].id().method == units[0].id().method && units[n].Length == units[0].Length &&
			units[n].Name == units[0].Name && units[n].Knob == units[0].Knob {
			n++
		}
		out = append(out, units[:n])
		units = units[n:]
	}
	return out
}

// stageChunkBatches is how many of a worker's batches one piece of a stage holds: pieces
// big enough that a batch stays full most of the time (it drains only at a piece's end),
// small enough that the workers finish a stage together.
const stageChunkBatches = 4

// RunStage runs the folder's stage on len(workers) backends at once, worker i into the
// shard file ShardPath(dir, stage, i, n), with one progress line for all. The samples not
// in yet are cut into pieces of one setting (a few batches each) that the workers take in
// turn as they finish the last, so that each runs full batches and none waits on another.
// Backends that each have their own GPU stream overlap their kernel launches, which bound
// a small model's forward. The first error (or st.Ctx ending) stops the other workers
// between samples; what finished stays in the shard files, and a later run resumes.
func RunStage(st Study, dir string, stage *Stage, workers []Backend) error {
	n := len(workers)
	if n == 0 {
		return errors.New("stage: no workers")
	}
	var unlocks []func()
	defer func() {
		for _, u := range unlocks {
			u()
		}
	}()
	for i := range n {
		unlock, err := LockShard(dir, stage.Number, i, n)
		if err != nil {
			return err
		}
		unlocks = append(unlocks, unlock)
	}
	fin, err := ReadFinished(dir)
	if err != nil {
		return err
	}
	todo := fin.Missing(stage.Units())
	size := 1
	if bb, ok := workers[0].(BatchBackend); ok {
		size = max(bb.BatchSize(), 1)
	}
	ctx, cancel := context.WithCancel(cmp.Or(st.Ctx, context.Background()))
	defer cancel()
	pieces := make(chan []Unit)
	go func() {
		defer close(pieces)
		for _, piece := range settingRuns(todo, stageChunkBatches*size) {
			select {
			case pieces <- piece:
			case <-ctx.Done():
				return
			}
		}
	}()
	p := newProgress(st.Progress, stage.Samples())
	p.done = stage.Samples() - len(todo)
	defer p.finish()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, b := range workers {
		sh := st
		sh.Ctx, sh.Results, sh.Also = ctx, ShardPath(dir, stage.Number, i, n), ResultsFiles(dir)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = work(sh, b, pieces, p); errs[i] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	// the error that stopped the others, not their ErrInterrupted
	for _, err := range errs {
		if err != nil && !errors.Is(err, ErrInterrupted) {
			return err
		}
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// work runs the pieces it takes into st.Results on b, counting them on p.
func work(st Study, b Backend, pieces <-chan []Unit, p *progress) error {
	s, err := startStudy(&st, b)
	if err != nil {
		return err
	}
	defer s.r.close()
	s.progress = p
	for piece := range pieces {
		if err := s.runUnits(piece); err != nil {
			return err
		}
	}
	return s.interrupted() // the pieces stopped coming because the stage was stopped
}

// runUnits runs samples of one setting.
func (s *studyRun) runUnits(units []Unit) error {
	u0 := units[0]
	m := Method{Name: u0.Name, Spec: u0.Template}
	tag := func(smp *Sample) { smp.Name, smp.Template, smp.Knob = u0.Name, u0.Template, u0.Knob }
	var reqs []sampleReq
	for _, u := range units {
		c := s.r.cell(u.Task, u.Length)
		if c == nil || u.Index >= c.samples {
			return fmt.Errorf("stage: %s, sample %d of %s at length %d is not part of this study: the stage was planned with other settings", u.Name, u.Index, u.Task, u.Length)
		}
		reqs = append(reqs, sampleReq{c, u.Index, tag})
	}
	return s.r.samplesOf(u0.id().method, reqs, s.interrupted, func(q sampleReq, smp *Sample, ran bool) error {
		s.progress.add(ran, fmt.Sprintf("%s %s %s #%d: %s", u0.Name, knobLabel(m, u0.Knob), q.c.task, q.i, outcome(smp)))
		return nil
	})
}

const (
	stageDir = "stages"
	shardDir = "shards"
)

// StagePath is stage n's file in a study folder.
func StagePath(dir string, n int) string {
	return filepath.Join(dir, stageDir, fmt.Sprintf("%03d.json", n))
}

// ShardPath is the results file of shard i of n of a stage: no two shards share one.
func ShardPath(dir string, stage, i, n int) string {
	return filepath.Join(dir, shardDir, fmt.Sprintf("%03d-%dof%d.jsonl", stage, i, n))
}

// ReadStages reads a study folder's stages, in order.
func ReadStages(dir string) ([]*Stage, error) {
	paths, _ := filepath.Glob(filepath.Join(dir, stageDir, "[0-9][0-9][0-9].json"))
	slices.Sort(paths)
	var out []*Stage
	for i, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("stage: %w", err)
		}
		st := &Stage{}
		if err := json.Unmarshal(b, st); err != nil {
			return nil, fmt.Errorf("stage %s: %w", p, err)
		}
		if st.Number != i+1 || filepath.Base(p) != fmt.Sprintf("%03d.json", st.Number) {
			return nil, fmt.Errorf("stage %s: numbered %d, want %d (stages are numbered from 1 without gaps)", p, st.Number, i+1)
		}
		out = append(out, st)
	}
	return out, nil
}

// WriteStage writes (or rewrites) a stage's file.
func WriteStage(dir string, st *Stage) error {
	if err := os.MkdirAll(filepath.Join(dir, stageDir), 0o755); err != nil {
		return fmt.Errorf("stage: %w", err)
	}
	js, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return outfile.Write(StagePath(dir, st.Number), append(js, '\n'), true)
}

// Finished is which samples a study folder holds, in any of its results files.
type Finished struct{ store *store }

// ReadFinished reads every results file of a study folder.
func ReadFinished(dir string) (*Finished, error) {
	s := &store{byID: map[sampleID][]stored{}}
	for _, p := range ResultsFiles(dir) {
		if err := s.readOther(p); err != nil {
			return nil, err
		}
	}
	return &Finished{s}, nil
}

// Done reports whether a sample is in.
func (p *Finished) Done(u Unit) bool { return p.store.has(u.id()) }

// Missing are the stage's samples not in yet.
func (p *Finished) Missing(units []Unit) []Unit {
	var out []Unit
	for _, u := range units {
		if !p.Done(u) {
			out = append(out, u)
		}
	}
	return out
}

// CurrentStage returns the folder's unfinished stage, or plans the next one from the
// results in it (and, with write, writes it and the study's settings f); nil when the
// study is complete. It holds the folder's planning lock meanwhile, so that shards
// starting together agree on one stage.
func CurrentStage(out *Folder, st Study, b Backend, f StudyFile, write bool) (*Stage, error) {
	dir := out.Dir
	unlock, err := lockFile(filepath.Join(dir, planLockName), syscall.LOCK_EX)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := sameStudy(dir, f); err != nil {
		return nil, err
	}
	stages, err := ReadStages(dir)
	if err != nil {
		return nil, err
	}
	next := 1
	if n := len(stages); n > 0 {
		last := stages[n-1]
		prog, err := ReadFinished(dir)
		if err != nil {
			return nil, err
		}
		if len(prog.Missing(last.Units())) > 0 {
			return last, nil
		}
		next = last.Number + 1
	}
	st.Results, st.Also = "", ResultsFiles(dir)
	cells, err := PlanNext(st, b)
	if err != nil || len(cells) == 0 {
		return nil, err
	}
	stage := &Stage{Number: next, Cells: cells}
	if write {
		if err := WriteStudyFile(out, f); err != nil {
			return nil, err
		}
		if err := WriteStage(dir, stage); err != nil {
			return nil, err
		}
	}
	return stage, nil
}

// lockFile takes a lock (blocking) on path, creating it.
func lockFile(path string, how int) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// LockShard marks shard i of n of a stage as running for as long as the process holds
// it; a second process on the same shard is refused.
func LockShard(dir string, stage, i, n int) (unlock func(), err error) {
	path := strings.TrimSuffix(ShardPath(dir, stage, i, n), ".jsonl") + ".lock"
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		who, _ := os.ReadFile(path)
		f.Close()
		return nil, fmt.Errorf("shard %d/%d of stage %d is running already (%s)", i, n, stage, strings.TrimSpace(string(who)))
	}
	host, _ := os.Hostname()
	f.Truncate(0)
	fmt.Fprintf(f, "kvfoot process %d on %s\n", os.Getpid(), host)
	return func() { f.Close() }, nil
}

// ShardRunning reports whether a process holds shard i of n of a stage.
func ShardRunning(dir string, stage, i, n int) bool {
	f, err := os.Open(strings.TrimSuffix(ShardPath(dir, stage, i, n), ".jsonl") + ".lock")
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return true
	}
	return false
}

// ParseShard reads "i/n" (0 ≤ i < n).
func ParseShard(s string) (i, n int, err error) {
	a, b, ok := strings.Cut(s, "/")
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || n < 1 || i < 0 || i >= n {
		return 0, 0, fmt.Errorf("--shard %q: want i/N with 0 ≤ i < N (Slurm's $SLURM_ARRAY_TASK_ID/N)", s)
	}
	return i, n, nil
}

// sameStudy refuses to go on, in a folder whose stages were planned, with other study
// settings than the folder's: its stages would not be the ones the settings ask for.
func sameStudy(dir string, f StudyFile) error {
	old, err := os.ReadFile(filepath.Join(dir, StudyFileName))
	if err != nil {
		return nil // a new study
	}
	cur, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if string(bytes.TrimSpace(old)) != string(cur) {
		return fmt.Errorf("%s holds another study's settings (methods, tasks, lengths, samples, grid, chunk, …): give the flags it was started with, or another --out", filepath.Join(dir, StudyFileName))
	}
	return nil
}
