package eval

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runStages runs a study as the Slurm driver does, stage after stage, each split among
// n shards, into dir; it returns the number of stages.
func runStages(t *testing.T, st Study, f *knobFake, dir string, n int, before func(stage *Stage, i int, sh *Study)) int {
	t.Helper()
	stages := 0
	out, err := OpenFolder(dir, Shared, false)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close(false)
	for {
		stage, err := CurrentStage(out, st, f, st.File(nil), true)
		if err != nil {
			t.Fatal(err)
		}
		if stage == nil {
			return stages
		}
		stages++
		if stages > 20 {
			t.Fatal("more than 20 stages: the study does not advance")
		}
		for i := range n {
			sh := st
			sh.Results, sh.Also = ShardPath(dir, stage.Number, i, n), ResultsFiles(dir)
			if before != nil {
				before(stage, i, &sh)
			}
			if err := os.MkdirAll(filepath.Dir(sh.Results), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := RunUnits(sh, f, stage.Share(i, n)); err != nil && !errors.Is(err, ErrInterrupted) {
				t.Fatal(err)
			}
		}
	}
}

// A study run in stages by three shards runs every sample the one-process study runs,
// once, in the stages its dependencies ask for, and kvfoot report's merge of the shard
// files writes the one-process report byte for byte (tables, CSVs, JSON, plots).
func TestStudyShardsMatchOneProcess(t *testing.T) {
	for _, tc := range []struct {
		stopAtFail bool
		stages     int
	}{
		{false, 3}, // full and the whole grid at once, then two bisection steps
		{true, 5},  // the grid one setting a stage (0.25, 0.5, 0.75 fails), then two steps
	} {
		st, f := knobStudy(t)
		st.StopAtFail = tc.stopAtFail
		one := oneProcess(t, st, f)
		single := f.runs
		f.runs = 0
		many := t.TempDir()
		st.Results = ""
		if got := runStages(t, st, f, many, 3, nil); got != tc.stages {
			t.Errorf("stop at fail %v: %d stages, want %d", tc.stopAtFail, got, tc.stages)
		}
		if f.runs != single {
			t.Errorf("stop at fail %v: %d samples run in stages, %d in one process", tc.stopAtFail, f.runs, single)
		}
		compareReports(t, st, one, many)
	}
}

// oneProcess runs the study in one process into a new folder, writes its report there and
// returns the folder.
func oneProcess(t *testing.T, st Study, f Backend) string {
	t.Helper()
	one := t.TempDir()
	st.Results = ResultsPath(one)
	rep, err := RunStudy(st, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeStudy(t, one, st.File(nil), rep); err != nil {
		t.Fatal(err)
	}
	return one
}

// compareReports writes the report of folder many from its shard files as kvfoot
// report does and compares every report file with folder one's.
func compareReports(t *testing.T, st Study, one, many string) {
	t.Helper()
	out, err := OpenFolder(many, Exclusive, false)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close(false)
	file, samples, err := Reopen(many)
	if err != nil {
		t.Fatal(err)
	}
	if err := Analyze(file, samples).WriteReport(out); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(one)
	compared := 0
	for _, e := range ents {
		if !reportFile(e.Name()) {
			continue
		}
		a, _ := os.ReadFile(filepath.Join(one, e.Name()))
		b, err := os.ReadFile(filepath.Join(many, e.Name()))
		if err != nil || string(a) != string(b) {
			t.Errorf("%s differs between the one-process and the sharded run (%v)", e.Name(), err)
		}
		compared++
	}
	if compared < 6 {
		t.Errorf("compared %d report files, want the report, JSON, CSVs, study file and plots", compared)
	}
}

// A shard stopped mid-run (a killed Slurm task) and run again resumes from its file:
// every sample is in exactly one line of one file, and the report is the same.
func TestStudyShardRerun(t *testing.T) {
	st, f := knobStudy(t)
	one := oneProcess(t, st, f)
	single := f.runs
	f.runs = 0
	many := t.TempDir()
	st.Results = ""
	killed := false
	runStages(t, st, f, many, 2, func(stage *Stage, i int, sh *Study) {
		if stage.Number == 1 && i == 1 && !killed {
			// the shard is stopped after its first sample; the stage stays unfinished
			ctx, cancel := context.WithCancel(context.Background())
			sh.Ctx, f.cancelAt, f.cancel = ctx, f.runs+1, cancel
			killed = true
		}
	})
	if !killed || f.runs != single {
		t.Errorf("%d samples run with one shard killed and rerun, %d in one process", f.runs, single)
	}
	lines := 0
	for _, p := range ResultsFiles(many) {
		b, _ := os.ReadFile(p)
		lines += strings.Count(string(b), "\n")
	}
	if lines != single {
		t.Errorf("%d result lines in the shard files, want %d: each sample once", lines, single)
	}
	compareReports(t, st, one, many)
}

// --shard takes i/N with 0 ≤ i < N.
func TestParseShard(t *testing.T) {
	if i, n, err := ParseShard("2/4"); err != nil || i != 2 || n != 4 {
		t.Errorf("2/4: %d %d %v", i, n, err)
	}
	for _, bad := range []string{"4/4", "-1/2", "1", "a/b", "0/0", "1/2/3"} {
		if _, _, err := ParseShard(bad); err == nil || !strings.Contains(err.Error(), "--shard") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// A sample in the folder's results twice (two files, or twice in one) is counted once:
// the report is the same.
func TestReopenCountsSamplesOnce(t *testing.T) {
	st, f := knobStudy(t)
	dir := t.TempDir()
	st.Results = ResultsPath(dir)
	rep, err := RunStudy(st, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeStudy(t, dir, st.File(nil), rep); err != nil {
		t.Fatal(err)
	}
	_, once, err := Reopen(dir)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(st.Results)
	os.WriteFile(st.Results, append(data, data...), 0o644)
	os.MkdirAll(filepath.Join(dir, shardDir), 0o755)
	os.WriteFile(ShardPath(dir, 1, 0, 1), data, 0o644)
	file, twice, err := Reopen(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(twice) != len(once) || len(once) != f.runs {
		t.Fatalf("%d samples read from three copies, %d from one, %d run", len(twice), len(once), f.runs)
	}
	a, _ := json.Marshal(rep)
	b, _ := json.Marshal(Analyze(file, twice))
	if string(a) != string(b) {
		t.Errorf("the report of the doubled results differs:\n%s\n%s", a, b)
	}
}

// The stages of a folder go on only with the study they were planned for.
func TestStageRefusesAnotherStudy(t *testing.T) {
	st, f := knobStudy(t)
	dir := t.TempDir()
	st.Results = ""
	runStages(t, st, f, dir, 1, nil)
	out, err := OpenFolder(dir, Shared, false)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close(false)
	other := st
	other.Grid = []float64{0.1, 0.9}
	if _, err := CurrentStage(out, other, f, other.File(nil), true); err == nil || !strings.Contains(err.Error(), "holds another study's settings") {
		t.Errorf("another grid: %v", err)
	}
	if stage, err := CurrentStage(out, st, f, st.File(nil), true); err != nil || stage != nil {
		t.Errorf("the same study, complete: %v, %v", stage, err)
	}
}

// failFake fails its first run with err, after which it is a knobFake.
type failFake struct {
	*knobFake
	err error
}

func (f *failFake) Run(method string, prompt []int, maxNew int, stop func([]int) bool) (Output, error) {
	if f.err != nil {
		err := f.err
		f.err = nil
		return Output{}, err
	}
	return f.knobFake.Run(method, prompt, maxNew, stop)
}

// RunStage's workers, each on its own backend at once, share every sample of each stage
// (each runs some, none runs one twice), and the report is the one-process report byte for byte. A worker's
// error stops the stage and is what RunStage returns (not the others' interruption); the
// stage run again finishes what was left, each sample still once.
func TestRunStageWorkers(t *testing.T) {
	st, f := knobStudySamples(t, 6)
	one := oneProcess(t, st, f)
	st.Results = ""
	many := t.TempDir()
	out, err := OpenFolder(many, Exclusive, false)
	if err != nil {
		t.Fatal(err)
	}
	fakes := make([]*knobFake, 3)
	workers := make([]Backend, 3)
	for i := range fakes {
		fakes[i] = &knobFake{answers: f.answers, delay: 2 * time.Millisecond}
		workers[i] = fakes[i]
	}
	broken := errors.New("the device is on fire")
	workers[1] = &failFake{fakes[1], broken}
	stages, failed := 0, false
	for {
		stage, err := CurrentStage(out, st, f, st.File(nil), true)
		if err != nil {
			t.Fatal(err)
		}
		if stage == nil {
			break
		}
		if stages++; stages > 20 {
			t.Fatal("more than 20 stages: the study does not advance")
		}
		err = RunStage(st, many, stage, workers)
		if !failed {
			failed = true
			if !errors.Is(err, broken) {
				t.Fatalf("a worker failed with %q; RunStage returned %v", broken, err)
			}
			continue // the same stage again, resumed
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	out.Close(false)
	runs := 0
	for _, k := range fakes {
		if k.runs == 0 {
			t.Error("a worker ran nothing")
		}
		runs += k.runs
	}
	if runs != f.runs {
		t.Errorf("%d samples run by the workers, %d in one process", runs, f.runs)
	}
	compareReports(t, st, one, many)
}
