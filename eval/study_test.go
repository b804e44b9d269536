package eval

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvfoot/kvfoot/tasks"
)

// knobFake answers right while a spec's sparsity is below 0.6, with footprint
// 1 − 0.8·s, and counts its runs; after cancelAt runs it calls cancel.
type knobFake struct {
	answers  map[string]string
	runs     int
	cancelAt int
	cancel   func()
	delay    time.Duration // each run takes this long (concurrent workers take turns)
}

var sparsityKey = regexp.MustCompile(`sparsity=([0-9.e-]+)`)

func (f *knobFake) Context() int                         { return 4096 }
func (f *knobFake) Check(string) error                   { return nil }
func (f *knobFake) Settings() (map[string]string, error) { return map[string]string{}, nil }

func (f *knobFake) Run(method string, prompt []int, maxNew int, stop func([]int) bool) (Output, error) {
	f.runs++
	time.Sleep(f.delay)
	if f.runs == f.cancelAt && f.cancel != nil {
		f.cancel()
	}
	s := 0.0
	if m := sparsityKey.FindStringSubmatch(method); m != nil {
		s, _ = strconv.ParseFloat(m[1], 64)
	}
	a := " wrong"
	if s < 0.6 {
		a = f.answers[(byteTok{}).Decode(prompt)]
	}
	return Output{IDs: (byteTok{}).Encode(a), Footprint: 1 - 0.8*s, Peak: 0.5 - 0.4*s}, nil
}

func knobStudy(t *testing.T) (Study, *knobFake) {
	t.Helper()
	return knobStudySamples(t, 2)
}

// knobStudySamples is knobStudy with n samples of the task.
func knobStudySamples(t *testing.T, n int) (Study, *knobFake) {
	t.Helper()
	c, err := tasks.DefaultCorpus()
	if err != nil {
		t.Fatal(err)
	}
	st := Study{
		Config: Config{Model: "fake", Tasks: []string{"ruler_mv"}, Lengths: []int{1024}, Samples: n, Seed: 3, BOS: -1,
			Gen: tasks.Options{Corpus: c, Tokenizer: byteTok{}}, Results: filepath.Join(t.TempDir(), "results.jsonl")},
		Methods:   []Method{{Name: "full", Spec: "full"}, {Name: "snap", Spec: "snapkv:sparsity={s}"}, {Name: "gone", Spec: "x", Missing: "no masks"}},
		Threshold: 0.9, Grid: []float64{0.25, 0.5, 0.75}, Tol: 0.05, Step: 1.0 / 64, Probes: 2, Bootstrap: 200,
	}
	f := &knobFake{answers: map[string]string{}}
	for i := range n {
		in, err := tasks.Generate("ruler_mv", 1024, i, 3, st.Gen)
		if err != nil {
			t.Fatal(err)
		}
		f.answers[in.Prompt] = " " + strings.Join(in.Answers, ", ")
	}
	return st, f
}

// The grid brackets the crossing at 0.6 between 0.5 (passes, footprint 0.6) and 0.75
// (fails, 0.4); bisection probes 0.625 (fails, 0.5) and 0.5625 (passes, 0.55), and
// stops there: the bracket 0.5…0.55 is within the tolerance 0.05.
func TestStudyBisection(t *testing.T) {
	st, f := knobStudy(t)
	rep, err := RunStudy(st, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.runs != 2+3*2+2*2 {
		t.Errorf("%d runs, want 12 (full, the grid of 3, 2 probes; 2 samples each)", f.runs)
	}
	snap := rep.Methods[1]
	c := snap.Categories["recall"]
	if snap.Name != "snap" || c.Footprint == nil || *c.Footprint != 0.55 || c.Bracket == nil || *c.Bracket != 0.5 ||
		*c.Sparsity != 0.5625 || c.Below || c.Settings != 5 {
		t.Fatalf("recall: %+v", c)
	}
	if *snap.CriticalFootprint != 0.55 || *snap.CriticalPeak != 0.5-0.4*0.5625 {
		t.Errorf("method critical %v, peak %v", *snap.CriticalFootprint, *snap.CriticalPeak)
	}
	if c.Interval[0] == nil || c.Interval[1] == nil || *c.Interval[0] != 0.55 || *c.Interval[1] != 0.55 {
		t.Errorf("interval %v, want [0.55, 0.55] (scores do not vary)", c.Interval)
	}
	if rep.Methods[0].Name != "full" || rep.Methods[2].Missing != "no masks" || len(rep.Methods[2].Results) != 0 {
		t.Errorf("methods %+v", rep.Methods)
	}
	if got := rep.Table(); !strings.Contains(got, "0.550 [0.550, 0.550]") || !strings.Contains(got, "gone: no masks") {
		t.Errorf("table:\n%s", got)
	}
	// The results file alone redoes the report.
	samples, err := os.ReadFile(st.Results)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(samples), "\n"); n != 12 {
		t.Errorf("results file has %d lines, want 12", n)
	}
}

// An interrupted study keeps what it ran and resumes where it stopped: the same
// report, each sample run once; a finished study reruns nothing.
func TestStudyInterruptAndResume(t *testing.T) {
	st, f := knobStudy(t)
	ctx, cancel := context.WithCancel(context.Background())
	st.Ctx, f.cancelAt, f.cancel = ctx, 5, cancel
	part, err := RunStudy(st, f, nil)
	if !errors.Is(err, ErrInterrupted) || part == nil {
		t.Fatalf("interrupted study: %v, report %v", err, part)
	}
	if f.runs != 5 {
		t.Fatalf("%d runs before stopping, want 5", f.runs)
	}
	st.Ctx = nil
	rep, err := RunStudy(st, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.runs != 12 {
		t.Errorf("%d runs in all, want 12: every sample once", f.runs)
	}
	again, err := RunStudy(st, f, nil)
	if err != nil || f.runs != 12 {
		t.Fatalf("rerun: %v, %d runs", err, f.runs)
	}
	a, _ := json.Marshal(rep)
	b, _ := json.Marshal(again)
	if string(a) != string(b) {
		t.Errorf("resumed report differs:\n%s\n%s", a, b)
	}
	// kvfoot report's path: the folder's settings and results give the same report.
	dir := filepath.Dir(st.Results)
	if err := writeStudy(t, dir, st.File(nil), rep); err != nil {
		t.Fatal(err)
	}
	file, samples, err := Reopen(dir)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := json.Marshal(Analyze(file, samples))
	if string(c) != string(a) {
		t.Errorf("report from the folder differs:\n%s\n%s", c, a)
	}
	for _, name := range []string{"report.md", "report.json", "results.csv", "critical.csv", "score_vs_footprint_recall.png",
		"score_vs_footprint_recall.svg", "kv_timeline.png"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil && name != "kv_timeline.png" {
			t.Errorf("report file %s: %v", name, err)
		}
	}
}

// A study checks its settings before running anything.
func TestStudyBadInput(t *testing.T) {
	for _, tc := range []struct {
		edit func(*Study)
		want string
	}{
		{func(s *Study) { s.Threshold = 1.5 }, "threshold"},
		{func(s *Study) { s.Grid = []float64{2} }, "grid value 2"},
		{func(s *Study) { s.Grid = nil }, "want a grid"},
		{func(s *Study) { s.Tasks = []string{"nope"} }, "unknown task"},
		{func(s *Study) { s.Lengths = []int{5000} }, "beyond the model's context"},
		{func(s *Study) { s.Methods = append(s.Methods, Method{Name: "snap", Spec: "full"}) }, `method "snap" given twice`},
	} {
		st, f := knobStudy(t)
		tc.edit(&st)
		if _, err := RunStudy(st, f, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want one mentioning %q", err, tc.want)
		}
		if f.runs != 0 {
			t.Errorf("%q: %d runs before the error", tc.want, f.runs)
		}
	}
}

// A results file made with other settings is refused, not mixed in.
func TestStudyRefusesOtherSettings(t *testing.T) {
	st, f := knobStudy(t)
	if _, err := RunStudy(st, f, nil); err != nil {
		t.Fatal(err)
	}
	st.Seed = 4 // other instances
	if _, err := RunStudy(st, f, nil); err == nil || !strings.Contains(err.Error(), "refusing to mix") {
		t.Errorf("error %v, want a refusal to mix settings", err)
	}
}

func TestMethodSpecs(t *testing.T) {
	m := Method{Name: "streaming", Spec: "streaming:sink=16,window={window}"}
	if !m.Knob() || m.At(0.25, 1000) != "streaming:sink=16,window=750" {
		t.Errorf("streaming at 0.25: %q", m.At(0.25, 1000))
	}
	b := BuiltinMethods(t.TempDir())
	ms, err := ParseMethods("full;snapkv*,int4;snapkv:sparsity={s},chunked=true,window=32", b)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 4 || ms[1].Spec != "snapkv:sparsity={s},window=64,chunked=true,patch=64" || ms[2].Spec != "quant:bits=4" ||
		ms[3].Name != "snapkv:sparsity={s},chunked=true,window=32" || !ms[3].Knob() {
		t.Errorf("methods %+v", ms)
	}
	if _, err := ParseMethods("nope", b); err == nil || !strings.Contains(err.Error(), `unknown method "nope"`) {
		t.Errorf("unknown method: %v", err)
	}
	for _, m := range b {
		if (m.Name == "duo" || m.Name == "prulong" || m.Name == "prulong+snapkv*+int4") != (m.Missing != "") {
			t.Errorf("%s: missing %q (no masks in an empty folder)", m.Name, m.Missing)
		}
	}
	// masks in DuoAttention's layout, with its config.json
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "masks", "duo"), 0o755)
	os.WriteFile(filepath.Join(dir, "masks", "duo", "full_attention_heads.tsv"), []byte("1\t0\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "masks", "duo", "config.json"), []byte(`{"sink_size": 8, "recent_size": 128}`), 0o644)
	for _, m := range BuiltinMethods(dir) {
		if m.Name == "duo" && (m.Missing != "" || !strings.Contains(m.Spec, "sparsity={s},sink=8,window=128")) {
			t.Errorf("duo: %+v", m)
		}
		if m.Name == "streaming" && m.Spec != "streaming:sink=8,window={window}" {
			t.Errorf("streaming: %+v", m)
		}
	}
}

// StopAtFail ends the grid at the first setting failing everywhere: 0.9 is not run.
func TestStudyStopAtFail(t *testing.T) {
	st, f := knobStudy(t)
	st.Grid, st.StopAtFail = []float64{0.25, 0.5, 0.75, 0.9}, true
	rep, err := RunStudy(st, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.runs != 12 {
		t.Errorf("%d runs, want 12 (0.9 skipped)", f.runs)
	}
	for _, r := range rep.Methods[1].Results {
		if r.Sparsity == 0.9 {
			t.Errorf("ran %s after a failing setting", r.Setting)
		}
	}
	if c := rep.Methods[1].Categories["recall"]; c.Footprint == nil || *c.Footprint != 0.55 {
		t.Errorf("recall %+v, want the same crossing", c)
	}
}

// A headmask method's masks file is drawn as a layer × KV head map, its streaming heads
// at the critical setting marked; every figure is written as PNG and SVG.
func TestStudyMaskPlot(t *testing.T) {
	st, f := knobStudy(t)
	masks := filepath.Join(t.TempDir(), "masks.tsv")
	if err := os.WriteFile(masks, []byte("1\t0.2\n0.9\t0\n0.4\t0.6\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	st.Methods = []Method{{Name: "full", Spec: "full"}, {Name: "duo", Spec: "headmask:masks=" + masks + ",sparsity={s}"}}
	rep, err := RunStudy(st, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := writeStudy(t, dir, st.File(nil), rep); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"head_masks_duo.png", "head_masks_duo.svg", "score_vs_footprint_recall.svg"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", name, err)
		}
	}
	svg, _ := os.ReadFile(filepath.Join(dir, "head_masks_duo.svg"))
	// at the critical sparsity 0.5625, ceil(0.5625·5) = 3 of the 6 heads are streaming
	if n := strings.Count(string(svg), ">s</text>"); n != 3 {
		t.Errorf("%d heads marked streaming in the SVG, want 3", n)
	}
}

// writeStudy writes a study's report into dir as kvfoot eval --out does.
func writeStudy(t *testing.T, dir string, f StudyFile, rep *StudyReport) error {
	t.Helper()
	out, err := OpenFolder(dir, Exclusive, false)
	if err != nil {
		return err
	}
	defer out.Close(false)
	return WriteStudy(out, f, rep)
}

// A model that cannot do a task has no score to keep: with full attention right on 1 of
// 20 samples (5 of 100, below MinReferenceScore) the category has no critical footprint
// and says why; right on 2 of 20 (10) it has one.
func TestStudyReferenceBelowFloor(t *testing.T) {
	for _, right := range []int{1, 2} {
		st, f := knobStudySamples(t, 20)
		n := 0
		for p := range f.answers {
			if n++; n > right {
				f.answers[p] = " wrong"
			}
		}
		rep, err := RunStudy(st, f, nil)
		if err != nil {
			t.Fatal(err)
		}
		c := rep.Methods[1].Categories["recall"]
		got := fmtCritical(c, false)
		if right == 1 && (c.Footprint != nil || c.Full != 5 || got != "n/a (full scores 5.0)" || c.Note == "") {
			t.Errorf("full attention at 5: %+v (%q), want n/a with a note", c, got)
		}
		if right == 2 && (c.Footprint == nil || c.Full != 10) {
			t.Errorf("full attention at 10: %+v (%q), want a critical footprint", c, got)
		}
	}
}

// A category full attention cannot do is not studied: no bisection, no vote on where the
// grid stops, and not part of overall; one whose reference is not all in yet still is.
func TestStudiedLeavesOutWhatFullCannotDo(t *testing.T) {
	targets := targetsOf([]string{"json_kv", "rerank", "ruler_vt"}, map[string]string{"json_kv": "recall", "rerank": "rerank", "ruler_vt": "vt"})
	ref := &point{tasks: map[string][]sampleStat{"json_kv": {{score: 100}, {score: 100}}, "rerank": {{score: 5}, {score: 5}}, "ruler_vt": {{score: 90}, {score: 80}}}}
	names := func(ts []target) (out []string) {
		for _, t := range ts {
			cats := slices.Sorted(maps.Keys(t.cats))
			out = append(out, t.name+"="+strings.Join(cats, "+"))
		}
		return out
	}
	if got, want := names(studied(targets, ref, 2)), []string{"recall=recall", "vt=vt", "overall=recall+vt"}; !slices.Equal(got, want) {
		t.Errorf("studied: %v, want %v", got, want)
	}
	ref.tasks["rerank"] = ref.tasks["rerank"][:1] // one of its two samples in: not decided
	if got, want := names(studied(targets, ref, 2)), []string{"recall=recall", "rerank=rerank", "vt=vt", "overall=recall+rerank+vt"}; !slices.Equal(got, want) {
		t.Errorf("studied with rerank's reference incomplete: %v, want %v", got, want)
	}
}
