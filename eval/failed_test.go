package eval

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/kvfoot/kvfoot/tasks"
)

// faultyFake is knobFake whose runs fail on the device for chosen samples: failAt maps a
// spec and a sample's prompt index to the fault, returned once (a retry succeeds).
type faultyFake struct {
	*knobFake
	prompts map[string]int // prompt text → sample index
	failAt  map[string]error
	failed  []string
}

func failKey(spec string, index int) string { return fmt.Sprintf("%s #%d", spec, index) }

func (f *faultyFake) Run(method string, prompt []int, maxNew int, stop func([]int) bool) (Output, error) {
	k := failKey(method, f.prompts[(byteTok{}).Decode(prompt)])
	if err, ok := f.failAt[k]; ok {
		delete(f.failAt, k)
		f.failed = append(f.failed, k)
		f.runs++
		return Output{}, err
	}
	return f.knobFake.Run(method, prompt, maxNew, stop)
}

// faultyStudy is knobStudy with n samples per cell.
func faultyStudy(t *testing.T, n int) (Study, *faultyFake) {
	t.Helper()
	st, kf := knobStudy(t)
	st.Samples = n
	f := &faultyFake{knobFake: kf, prompts: map[string]int{}, failAt: map[string]error{}}
	for i := range n {
		in, err := tasks.Generate("ruler_mv", 1024, i, 3, st.Gen)
		if err != nil {
			t.Fatal(err)
		}
		kf.answers[in.Prompt] = " " + strings.Join(in.Answers, ", ")
		f.prompts[in.Prompt] = i
	}
	return st, f
}

var errOOM = errors.New("cuMemAlloc: CUDA_ERROR_OUT_OF_MEMORY")

func resultOf(t *testing.T, rep *StudyReport, method string, knob float64) StudyResult {
	t.Helper()
	for _, m := range rep.Methods {
		for _, r := range m.Results {
			if m.Name == method && r.Sparsity == knob {
				return r
			}
		}
	}
	t.Fatalf("no result of %s at s=%g", method, knob)
	return StudyResult{}
}

// A setting that fails on half its samples (more than a quarter) is left out: the grid's
// passing 0.5 (footprint 0.6) gone, the crossing lies between 0.25 (passes, 0.8) and 0.75
// (fails, 0.4), and bisection's probe 0.5 is the setting left out, so it stops. The study
// goes on past the failure, the results file holds it as a format-2 line with its reason,
// a resumed study reruns nothing, and one with RetryFailed runs it again and finds the
// crossing of a study without failures (TestStudyBisection's 0.55).
func TestStudyFailedSampleLeftOut(t *testing.T) {
	st, f := faultyStudy(t, 2)
	f.failAt[failKey("snapkv:sparsity=0.5", 1)] = &DeviceFault{Err: errOOM}
	rep, err := RunStudy(st, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.runs != 2+3*2 || len(f.failed) != 1 {
		t.Errorf("%d runs (%v failed), want 8: full and the grid of 3, 2 samples each, and no probe", f.runs, f.failed)
	}
	r := resultOf(t, rep, "snap", 0.5)
	if r.Samples != 1 || r.Failed != 1 || !r.LeftOut || r.Score != 100 || len(r.Failures) != 1 ||
		!strings.Contains(r.Failures[0], "CUDA_ERROR_OUT_OF_MEMORY") || !strings.HasSuffix(r.Failures[0], "(1 sample)") {
		t.Errorf("the failed cell: %+v; want 1 ran (score 100), 1 failed with its reason, left out", r)
	}
	c := rep.Methods[1].Categories["recall"]
	near := func(p *float64, want float64) bool { return p != nil && math.Abs(*p-want) < 1e-12 }
	if !near(c.Footprint, 0.8) || !near(c.Bracket, 0.4) || c.LeftOut != 1 || c.Settings != 2 || c.Failed != 0 {
		t.Fatalf("recall with s=0.5 left out: %+v (footprint %v, bracket %v); want 0.8 bracketed by 0.4, 2 settings counted, 1 left out", c, *c.Footprint, *c.Bracket)
	}
	if got := rep.Table(); !strings.Contains(got, "0.800 [0.800, 0.800] †") || !strings.Contains(got, "†: samples failed on the device") {
		t.Errorf("table:\n%s", got)
	}
	md := rep.Markdown()
	if !strings.Contains(md, "## Failed samples") || !strings.Contains(md, "| snap | `snapkv:sparsity=0.5` | ruler_mv | 1024 | 1 of 2, left out | the device failed: cuMemAlloc: CUDA_ERROR_OUT_OF_MEMORY (1 sample) |") {
		t.Errorf("markdown lacks the failed cell:\n%s", md)
	}
	data, err := os.ReadFile(st.Results)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(data), `{"kvfoot_results":2,`); n != 1 || !strings.Contains(string(data), `"failed":"the device failed: cuMemAlloc: CUDA_ERROR_OUT_OF_MEMORY"`) {
		t.Errorf("results file: %d format-2 lines, want the failed sample's with its reason:\n%s", n, data)
	}

	runs := f.runs
	again, err := RunStudy(st, f, nil)
	if err != nil || f.runs != runs {
		t.Fatalf("resumed study: %v, %d runs, want none", err, f.runs-runs)
	}
	if c2 := again.Methods[1].Categories["recall"]; !near(c2.Footprint, 0.8) || c2.LeftOut != 1 {
		t.Errorf("resumed study's recall: %+v, want the same", c2)
	}

	st.RetryFailed = true
	retried, err := RunStudy(st, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.runs != runs+1+2*2 {
		t.Errorf("retrying: %d runs, want 5 (the failed sample, then 2 probes of 2 samples)", f.runs-runs)
	}
	c = retried.Methods[1].Categories["recall"]
	if c.Footprint == nil || *c.Footprint != 0.55 || c.failures() {
		t.Errorf("recall after the retry: %+v, want 0.55 and no failures", c)
	}
	if r := resultOf(t, retried, "snap", 0.5); r.Samples != 2 || r.Failed != 0 {
		t.Errorf("the retried cell: %+v, want 2 ran", r)
	}
}

// A cell where at most a quarter of the samples failed counts, scored over the samples
// that ran (100, not the 75 of a failure taken as a wrong answer), and its critical
// footprint is marked. Full attention's failed sample counts the same way.
func TestStudyFailedSampleScoredOverTheRest(t *testing.T) {
	st, f := faultyStudy(t, 4)
	f.failAt[failKey("snapkv:sparsity=0.5", 3)] = &DeviceFault{Err: errOOM}
	f.failAt[failKey("full", 0)] = &DeviceFault{Err: errOOM}
	rep, err := RunStudy(st, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := resultOf(t, rep, "snap", 0.5)
	if r.Samples != 3 || r.Failed != 1 || r.LeftOut || r.Score != 100 || r.Footprint != 0.6 {
		t.Errorf("the cell with 1 of 4 failed: %+v; want 3 ran, score 100, footprint 0.6, not left out", r)
	}
	c := rep.Methods[1].Categories["recall"]
	if c.Footprint == nil || *c.Footprint != 0.55 || c.Failed != 2 || c.LeftOut != 0 || c.ReferenceLeftOut {
		t.Errorf("recall: %+v; want 0.55 with 2 failed samples (the setting's and full attention's) counted", c)
	}
	if got := fmtCritical(c, false); got != "0.550 [0.550, 0.550] †" {
		t.Errorf("critical cell %q", got)
	}
}

// Full attention left out (every sample failed) leaves no reference: no critical footprint,
// said as such; its cell has no means to show, and the report is still valid JSON.
func TestStudyReferenceLeftOut(t *testing.T) {
	st, f := faultyStudy(t, 2)
	f.failAt[failKey("full", 0)] = &DeviceFault{Err: errOOM}
	f.failAt[failKey("full", 1)] = &DeviceFault{Err: errOOM}
	rep, err := RunStudy(st, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := rep.Methods[1].Categories["recall"]
	if c.Footprint != nil || !c.ReferenceLeftOut || fmtCritical(c, false) != "n/a (full attention failed) †" {
		t.Errorf("recall without a reference: %+v (%q)", c, fmtCritical(c, false))
	}
	if md := rep.Markdown(); !strings.Contains(md, "| full | 0 | ruler_mv | 1024 | — | — | — | — | 0 | 2 of 2, left out | `full` |") {
		t.Errorf("markdown lacks full attention's failed cell:\n%s", md)
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Errorf("the report as JSON: %v", err)
	}
}

// A device unusable after a fault stops the study with an error naming both, the sample
// recorded as failed; a resumed study goes on without running it again. An error that is
// not a device fault stops the study and records nothing.
func TestStudyStopsOnUnusableDeviceAndBugs(t *testing.T) {
	st, f := faultyStudy(t, 2)
	sticky := &DeviceFault{Err: errors.New("cuLaunchKernel: CUDA_ERROR_ILLEGAL_ADDRESS"), Unusable: errors.New("cuStreamSynchronize: CUDA_ERROR_ILLEGAL_ADDRESS")}
	f.failAt[failKey("snapkv:sparsity=0.25", 0)] = sticky
	_, err := RunStudy(st, f, nil)
	if err == nil || !strings.Contains(err.Error(), "unusable") || !strings.Contains(err.Error(), "snapkv:sparsity=0.25, ruler_mv, length 1024, sample 0") ||
		!strings.Contains(err.Error(), "CUDA_ERROR_ILLEGAL_ADDRESS") {
		t.Fatalf("a study on a device unusable after a fault: %v", err)
	}
	if f.runs != 3 {
		t.Errorf("%d runs before stopping, want 3 (full's 2, the failed one)", f.runs)
	}
	rep, err := RunStudy(st, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := resultOf(t, rep, "snap", 0.25); r.Failed != 1 || !strings.Contains(r.Failures[0], "CUDA_ERROR_ILLEGAL_ADDRESS") {
		t.Errorf("the sample that broke the device: %+v, want it failed", r)
	}

	st2, f2 := faultyStudy(t, 2)
	f2.failAt[failKey("snapkv:sparsity=0.25", 0)] = errors.New("attention: index out of range")
	if _, err := RunStudy(st2, f2, nil); err == nil || !strings.Contains(err.Error(), "index out of range") {
		t.Fatalf("a bug: %v, want the study stopped with it", err)
	}
	if data, _ := os.ReadFile(st2.Results); strings.Contains(string(data), `"failed"`) {
		t.Errorf("a bug recorded as a failed sample:\n%s", data)
	}
}

// The results file refuses a failed line in the wrong format, and a format it does not know.
func TestResultsFailedFormat(t *testing.T) {
	for _, c := range []struct{ line, want string }{
		{`{"kvfoot_results":1,"method":"full","task":"t","failed":"oom"}`, "a failed sample is format 2"},
		{`{"kvfoot_results":2,"method":"full","task":"t"}`, "a failed sample is format 2"},
		{`{"kvfoot_results":3,"method":"full","task":"t"}`, "this kvfoot reads 1 and 2"},
	} {
		if _, err := parseResult([]byte(c.line)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.line, err, c.want)
		}
	}
	if s, err := parseResult([]byte(`{"kvfoot_results":2,"method":"full","task":"t","failed":"oom"}`)); err != nil || s.Failed != "oom" {
		t.Errorf("a failed line: %+v, %v", s, err)
	}
}
