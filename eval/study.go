package eval

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kvfoot/kvfoot/tasks"
)

// Method is one method of a study: a name and its policy spec, in which {s} stands for
// the sparsity knob (0…1) and {window} for streaming's window int((1−s)·length); a
// spec without them is one setting.
type Method struct {
	Name string `json:"name"`
	Spec string `json:"spec"`
	// Missing says why the method cannot run here (its masks are not trained yet, say):
	// it is listed in the report, not run.
	Missing string `json:"missing,omitempty"`
}

// Knob reports whether the method has a sparsity knob.
func (m Method) Knob() bool {
	return strings.Contains(m.Spec, "{s}") || strings.Contains(m.Spec, "{window}")
}

// At is the method's spec at knob x for prompts of length tokens.
func (m Method) At(x float64, length int) string {
	s := strings.ReplaceAll(m.Spec, "{s}", strconv.FormatFloat(x, 'g', -1, 64))
	return strings.ReplaceAll(s, "{window}", strconv.Itoa(int((1-x)*float64(length))))
}

// Study is the paper's experiment (its Table 2): every method's knob swept on a coarse
// grid, then bisected on each target (every category, and all of them when there are
// several) until the footprint at the threshold crossing is known to Tol, and the
// critical KV footprint reported per task, category and overall, with a bootstrap
// interval over samples. Config gives the tasks, lengths, samples, generation and
// results file; its Methods are ignored.
type Study struct {
	Config
	Methods   []Method
	Threshold float64   // a setting passes with a score ≥ Threshold × full attention's
	Grid      []float64 // the knob values every method with one runs first
	Tol       float64   // bisection stops once the crossing's bracket spans ≤ Tol of footprint
	Step      float64   // the knob's resolution: bisection never splits finer
	Probes    int       // the most bisection settings per method, target and length
	// StopAtFail ends a method's grid at the first setting that fails every target
	// (the sparser ones are taken to fail too), so that a short study spends its time
	// on bisection; off, the whole grid runs and shows a non-monotone sweep.
	StopAtFail bool
	Bootstrap  int // resamples for the intervals
	// Ctx, when set, stops the study between samples once it is done (SIGINT); what has
	// run is in the results file, and the same study resumes from it.
	Ctx context.Context
}

// MaxBootstrap bounds the bootstrap resamples: the paper's 1000 to 2000 are ample,
// and a million would run for hours after the study.
const MaxBootstrap = 100000

// ErrInterrupted is returned by RunStudy when its context ends it.
var ErrInterrupted = errors.New("interrupted")

// reference is the method every score is compared with.
const reference = "full"

// withReference returns the methods with full attention first.
func (st *Study) withReference() []Method {
	ms := slices.Clone(st.Methods)
	if i := slices.IndexFunc(ms, func(m Method) bool { return m.Name == reference }); i >= 0 {
		ms = append(ms[i:i+1], append(ms[:i:i], ms[i+1:]...)...)
	} else {
		ms = append([]Method{{Name: reference, Spec: "full"}}, ms...)
	}
	return ms
}

func (st *Study) check(b Backend) error {
	if !(st.Threshold > 0 && st.Threshold <= 1) {
		return fmt.Errorf("threshold %v: want a fraction in (0, 1]", st.Threshold)
	}
	if len(st.Grid) == 0 || !(st.Tol > 0) || !(st.Step > 0) || st.Probes < 0 {
		return fmt.Errorf("study: want a grid, a positive tolerance and step, and probes ≥ 0")
	}
	if st.Bootstrap < 1 || st.Bootstrap > MaxBootstrap {
		return fmt.Errorf("bootstrap %d: want 1 to %d resamples (the intervals settle long before; each resample redoes the analysis)", st.Bootstrap, MaxBootstrap)
	}
	for _, x := range st.Grid {
		if !(x >= 0 && x <= 1) {
			return fmt.Errorf("grid value %v: want a sparsity in [0, 1]", x)
		}
	}
	seen := map[string]bool{}
	var specs []string
	for _, m := range st.withReference() {
		if seen[m.Name] {
			return fmt.Errorf("method %q given twice", m.Name)
		}
		seen[m.Name] = true
		if m.Missing != "" {
			continue
		}
		for _, l := range st.lengths(b) {
			specs = append(specs, m.At(st.Grid[0], l))
		}
	}
	cfg := st.Config
	cfg.Methods = specs
	return Check(&cfg, b)
}

// studyRun is a study in progress.
type studyRun struct {
	*Study
	r        *runner
	targets  []target
	progress *progress
	plan     *planner // set when planning the next stage instead of running
}

// RunStudy runs the study, skipping samples already in the results file, and returns
// its report; settings are recorded in it (the chunk size, the generation mode).
func RunStudy(st Study, b Backend, settings map[string]string) (*StudyReport, error) {
	s, err := startStudy(&st, b)
	if err != nil {
		return nil, err
	}
	defer s.r.close()
	s.progress = newProgress(st.Progress, s.maxSamples())
	err = s.walk()
	s.progress.finish()
	return Analyze(st.File(settings), s.r.samples()), err
}

// startStudy checks the study and opens its results.
func startStudy(st *Study, b Backend) (*studyRun, error) {
	if err := st.check(b); err != nil {
		return nil, err
	}
	r, err := newRunner(&st.Config, b)
	if err != nil {
		return nil, err
	}
	st.Tasks, st.Lengths = st.taskNames(), st.lengths(b)
	return &studyRun{Study: st, r: r, targets: targetsOf(st.Tasks, st.categories()), progress: newProgress(nil, 0)}, nil
}

// walk runs (or, planning, plans) every method at every length.
func (s *studyRun) walk() error {
	for _, l := range s.Lengths {
		for _, m := range s.withReference() {
			if err := s.method(m, l); err != nil {
				return err
			}
		}
	}
	return nil
}

// maxSamples is the number of samples a study runs at most: every setting of the grid on
// every task, and every probe on its target's tasks.
func (s *studyRun) maxSamples() int {
	all := 0
	for _, c := range s.r.cells {
		all += c.samples
	}
	n := 0
	for _, m := range s.withReference() {
		switch {
		case m.Missing != "":
		case m.Knob():
			n += len(s.Grid)*all + s.Probes*len(s.targets)*all
		default:
			n += all
		}
	}
	return n
}

// targetsOf are the categories of the tasks (cats gives each task's), and all of them
// together when there are several.
func targetsOf(taskList []string, cats map[string]string) []target {
	byCat := map[string][]string{}
	var order []string
	for _, t := range taskList {
		c := cats[t]
		if _, ok := byCat[c]; !ok {
			order = append(order, c)
		}
		if !slices.Contains(byCat[c], t) {
			byCat[c] = append(byCat[c], t)
		}
	}
	var ts []target
	for _, c := range order {
		ts = append(ts, target{name: c, cats: map[string][]string{c: byCat[c]}})
	}
	if len(order) > 1 {
		ts = append(ts, target{name: overallName, cats: byCat})
	}
	return ts
}

// overallName is the target of all the study's categories.
const overallName = "overall"

// canDo reports whether full attention (ref) reaches MinReferenceScore on t, or has
// not all of t's n samples in yet.
func canDo(t target, ref *point, n int) bool {
	if !ref.covers(t, n) {
		return true
	}
	sc, _, _ := ref.aggregate(t, nil)
	return sc >= MinReferenceScore
}

// within is t less the categories full attention cannot do (canDo).
func (t target) within(ref *point, n int) target {
	cats := map[string][]string{}
	for c, ts := range t.cats {
		if canDo(target{name: c, cats: map[string][]string{c: ts}}, ref, n) {
			cats[c] = ts
		}
	}
	return target{name: t.name, cats: cats}
}

// scored is t as scored against full attention (ref): overall counts only the categories
// full attention can do (all of them if it can do none, so that the report still says why).
func (t target) scored(ref *point, n int) target {
	if t.name != overallName {
		return t
	}
	if o := t.within(ref, n); len(o.cats) > 0 {
		return o
	}
	return t
}

// studied is targets less what full attention cannot do, overall within the rest: a
// category at chance has no critical footprint (MinReferenceScore), so it gets no
// bisection, holds no grid open and would only add noise to overall.
func studied(targets []target, ref *point, n int) []target {
	var out []target
	for _, t := range targets {
		if t = t.scored(ref, n); canDo(t, ref, n) {
			out = append(out, t)
		}
	}
	return out
}

// categories maps every task of the study to its category.
func (st *Study) categories() map[string]string {
	m := map[string]string{}
	for _, t := range st.Tasks {
		m[t] = tasks.Category(t)
	}
	for _, ds := range st.Data {
		m[ds.Name] = ds.Instances[0].Category
	}
	return m
}

// taskNames are the study's tasks: the generated ones, or the loaded datasets.
func (st *Study) taskNames() []string {
	if len(st.Data) == 0 {
		return st.Tasks
	}
	var ns []string
	for _, ds := range st.Data {
		ns = append(ns, ds.Name)
	}
	return ns
}

// lengths are the study's lengths: the generated tasks', or the model's context for
// loaded data.
func (st *Study) lengths(b Backend) []int {
	if len(st.Data) == 0 {
		return st.Lengths
	}
	return []int{b.Context()}
}

// method runs one method at one length: its grid on every task, then bisection on
// every target. Planning (s.plan set), it stops at the first step whose samples are
// not all in yet and that a later step depends on.
func (s *studyRun) method(m Method, length int) error {
	if m.Missing != "" {
		return nil
	}
	if !m.Knob() {
		return s.pendingOK(s.setting(m, 0, length, s.Tasks, "its one setting"))
	}
	var grid []float64
	pending := false
	for i, x := range s.Grid {
		step := "grid"
		if s.StopAtFail && i > 0 {
			step = fmt.Sprintf("grid, after s=%g passed a target", s.Grid[i-1])
		}
		err := s.setting(m, x, length, s.Tasks, step)
		grid = append(grid, x)
		if errors.Is(err, errPending) {
			if s.StopAtFail {
				return nil // the next grid step depends on this one
			}
			pending = true
			continue
		}
		if err != nil {
			return err
		}
		if s.StopAtFail {
			if !s.decided(length) {
				return nil // the next grid step depends on full attention's results
			}
			if s.failsAll(m, length, x) {
				break // sparser settings are taken to fail too
			}
		}
	}
	if pending || !s.decided(length) {
		return nil
	}
	// Each target bisects over the grid and its own probes only, so that a resumed study
	// (whose results file may hold other targets' probes) asks for the same settings.
	for _, t := range studied(s.targets, s.reference(length), s.Samples) {
		knobs := slices.Clone(grid)
		for i := range s.Probes {
			pts, ref := s.points(m, length, t, knobs)
			x, ok := nextProbe(pts, ref, t, s.Threshold, s.Tol, s.Step)
			if !ok || slices.Contains(knobs, x) {
				break // no probe left, or one that ran and was left out for failed samples
			}
			err := s.setting(m, x, length, t.tasks(), fmt.Sprintf("bisection step %d for %s", i+1, t.name))
			if errors.Is(err, errPending) {
				break // this target's next step depends on this one
			}
			if err != nil {
				return err
			}
			knobs = append(knobs, x)
		}
	}
	return nil
}

// decided reports whether the study may take decisions at length: planning, full
// attention's results there (every score's reference) must all be in.
func (s *studyRun) decided(length int) bool {
	return s.plan == nil || !s.plan.refPending[length]
}

// pendingOK ignores errPending (a step nothing depends on).
func (s *studyRun) pendingOK(err error) error {
	if errors.Is(err, errPending) {
		return nil
	}
	return err
}

// failsAll reports whether m at knob x misses the threshold on every target studied.
func (s *studyRun) failsAll(m Method, length int, x float64) bool {
	for _, t := range studied(s.targets, s.reference(length), s.Samples) {
		pts, ref := s.points(m, length, t, []float64{x})
		if len(pts) == 0 || critical(pts, ref, t, s.Threshold, nil).found {
			return false
		}
	}
	return true
}

// setting runs method m at knob x on every sample of tasks at length. Planning, it
// runs nothing: it notes the samples not in yet as cells of the next stage (step says
// which step of the study they are) and returns errPending if there are any.
func (s *studyRun) setting(m Method, x float64, length int, tasks []string, step string) error {
	spec := m.At(x, length)
	pending := false
	var reqs []sampleReq
	tag := func(smp *Sample) { smp.Name, smp.Template, smp.Knob = m.Name, m.Spec, x }
	for _, task := range tasks {
		c := s.r.cell(task, length)
		if c == nil {
			return fmt.Errorf("study: no task %s at length %d", task, length)
		}
		for i := range c.samples {
			if s.plan == nil {
				reqs = append(reqs, sampleReq{c, i, tag})
			} else if !s.r.store.has(sampleID{spec, task, length, i}) {
				s.plan.add(Unit{Name: m.Name, Template: m.Spec, Knob: x, Task: task, Length: length, Index: i}, step)
				pending = true
			}
		}
	}
	if pending {
		if m.Name == reference {
			s.plan.refPending[length] = true
		}
		return errPending
	}
	return s.r.samplesOf(spec, reqs, s.interrupted, func(q sampleReq, smp *Sample, ran bool) error {
		s.progress.add(ran, fmt.Sprintf("%s %s %s #%d: %s", m.Name, knobLabel(m, x), q.c.task, q.i, outcome(smp)))
		return nil
	})
}

// interrupted is ErrInterrupted once the study's context is done.
func (s *Study) interrupted() error {
	if s.Ctx != nil && s.Ctx.Err() != nil {
		return ErrInterrupted
	}
	return nil
}

// outcome is a sample's score for the progress line, or why it failed.
func outcome(smp *Sample) string {
	if smp.Failed != "" {
		return "failed: " + smp.Failed
	}
	return fmt.Sprintf("%.0f", smp.Score)
}

func knobLabel(m Method, x float64) string {
	if !m.Knob() {
		return ""
	}
	return fmt.Sprintf("s=%.3g", x)
}

// points are the settings of m at length with a knob in knobs that cover target t, and
// the full attention reference, from the samples run so far.
func (s *studyRun) points(m Method, length int, t target, knobs []float64) ([]*point, *point) {
	byMethod := collect(s.r.samples(), s.Samples)
	var pts []*point
	for _, p := range sweepSettings(byMethod[pointKey{m.Name, length}]) {
		if p.covers(t, s.Samples) && slices.Contains(knobs, p.knob) {
			pts = append(pts, p)
		}
	}
	return pts, referenceOf(byMethod, length)
}

// reference is full attention's setting at length (empty before it has run).
func (s *studyRun) reference(length int) *point {
	return referenceOf(collect(s.r.samples(), s.Samples), length)
}

func referenceOf(byMethod map[pointKey]*sweep, length int) *point {
	ref := byMethod[pointKey{reference, length}]
	if ref == nil || len(ref.settings) == 0 {
		return &point{tasks: map[string][]sampleStat{}}
	}
	return ref.settings[0]
}

// samples are every result the runner holds (read from the files or run now).
func (r *runner) samples() []*Sample { return r.store.samples() }

// pointKey is a method at a length.
type pointKey struct {
	name   string
	length int
}

// sweep is one method's settings at one length, ascending in knob.
type sweep struct {
	template string
	settings []*point
}

// collect groups samples into settings: by method name (the spec when a result has no
// name), length and knob; each setting keeps its first n samples per task (n = 0:
// all), in index order.
func collect(samples []*Sample, n int) map[pointKey]*sweep {
	out := map[pointKey]*sweep{}
	type sk struct {
		pointKey
		knob float64
		spec string
	}
	byKey := map[sk]*point{}
	for _, smp := range samples {
		name := smp.Name
		if name == "" {
			name = smp.Method
		}
		k := sk{pointKey{name, smp.Length}, smp.Knob, smp.Method}
		p := byKey[k]
		if p == nil {
			p = &point{knob: smp.Knob, spec: smp.Method, tasks: map[string][]sampleStat{}}
			byKey[k] = p
			sw := out[k.pointKey]
			if sw == nil {
				sw = &sweep{template: smp.Template}
				out[k.pointKey] = sw
			}
			sw.settings = append(sw.settings, p)
		}
		if n > 0 && smp.Index >= n || smp.Index != len(p.tasks[smp.Task]) {
			continue // beyond the study's samples, or a gap in the indices
		}
		p.tasks[smp.Task] = append(p.tasks[smp.Task], sampleStat{smp.Score, smp.Footprint, smp.Peak, smp.Failed != ""})
	}
	for _, sw := range out {
		slices.SortFunc(sw.settings, func(a, b *point) int {
			if a.knob != b.knob {
				return cmp.Compare(a.knob, b.knob)
			}
			return strings.Compare(a.spec, b.spec)
		})
	}
	return out
}

// progress draws a bar with an ETA on a terminal, and a line every ten seconds
// otherwise.
type progress struct {
	mu         sync.Mutex // a stage's workers share one
	w          io.Writer
	tty        bool
	total      int
	done, runs int
	start      time.Time
	ranFor     time.Duration
	last       time.Time
}

func newProgress(w io.Writer, total int) *progress {
	p := &progress{w: w, total: max(total, 1), start: time.Now(), last: time.Now()}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

// add counts one sample: run now (ran) or found in the results file.
func (p *progress) add(ran bool, what string) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	p.done++
	if ran {
		p.runs++
		p.ranFor = now.Sub(p.start)
	}
	if !p.tty && now.Sub(p.last) < 10*time.Second && p.done < p.total {
		return
	}
	p.last = now
	// The total counts every bisection step a study may take, so the samples left are
	// an upper bound; the time they take is an estimate from the mean so far, which
	// later samples can change either way: it is said as "about", never "at most".
	eta := "unknown"
	if p.runs > 0 {
		left := time.Duration(float64(p.ranFor) / float64(p.runs) * float64(max(p.total-p.done, 0)))
		eta = "about " + left.Round(time.Second).String()
	}
	const width = 30
	fill := min(width, width*p.done/p.total)
	bar := strings.Repeat("=", fill) + strings.Repeat(" ", width-fill)
	line := fmt.Sprintf("[%s] %d of up to %d samples, %s elapsed, %s left if all are needed: %s", bar, p.done, p.total,
		now.Sub(p.start).Round(time.Second), eta, what)
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		return
	}
	fmt.Fprintln(p.w, line)
}

func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.w != nil && p.tty {
		fmt.Fprintln(p.w)
	}
}

// StudyFile is the study's settings as written next to its results, so that
// `kvfoot report DIR` can redo the analysis.
type StudyFile struct {
	Model      string            `json:"model"`
	Methods    []Method          `json:"methods"`
	Tasks      []string          `json:"tasks"`
	Categories map[string]string `json:"categories"` // of every task
	Lengths    []int             `json:"lengths"`
	Samples    int               `json:"samples"`
	Threshold  float64           `json:"threshold"`
	Grid       []float64         `json:"grid"`
	StopAtFail bool              `json:"stop_at_fail,omitempty"`
	Tol        float64           `json:"tolerance"`
	Step       float64           `json:"step"`
	Probes     int               `json:"probes"`
	Bootstrap  int               `json:"bootstrap"`
	Settings   map[string]string `json:"settings"` // chunk, generation, BOS, …
}

// File is the study's StudyFile.
func (st *Study) File(settings map[string]string) StudyFile {
	return StudyFile{Model: st.Model, Methods: st.withReference(), Tasks: st.Tasks, Categories: st.categories(), Lengths: st.Lengths, Samples: st.Samples,
		Threshold: st.Threshold, Grid: st.Grid, StopAtFail: st.StopAtFail, Tol: st.Tol, Step: st.Step, Probes: st.Probes, Bootstrap: st.Bootstrap,
		Settings: settings}
}

// ResultsPath is where a study or an evaluation with --out DIR keeps its results.
func ResultsPath(dir string) string { return filepath.Join(dir, "results.jsonl") }

// Preset returns a named study for a model with the given context, without its
// methods and data. "default" fits ten minutes on a 2-core machine: one task of every
// category, at the model's length less 512 (less an eighth of a shorter context), 2
// samples per task, a grid of four from 20% to 95% that stops at the first setting
// failing every category, one bisection step per category; a category the model cannot
// do reports n/a (MinReferenceScore). "full" is the whole study for a bigger machine:
// every task at 2K and at the model's length less 512, 20 samples, a grid of seven, four
// bisection steps to 0.02.
func Preset(name string, context int) (Study, error) {
	st := Study{Threshold: 0.9, Bootstrap: 1000}
	switch name {
	case "default":
		st.Tasks = []string{"json_kv", "rag", "rerank", "icl_labels", "ruler_vt", "records_tsv"}
		st.Lengths = []int{context - min(512, context/8)}
		st.Samples = 2
		st.Grid, st.Tol, st.Step, st.Probes, st.StopAtFail = []float64{0.2, 0.5, 0.8, 0.95}, 0.05, 1.0/64, 1, true
	case "full":
		st.Tasks = tasks.Names()
		st.Lengths = []int{2048, context - 512}
		st.Samples = 20
		st.Grid, st.Tol, st.Step, st.Probes = []float64{0.05, 0.1, 0.3, 0.5, 0.7, 0.9, 0.95}, 0.02, 1.0/256, 4
		st.Bootstrap = 2000
	default:
		return Study{}, fmt.Errorf("study %q: want default or full", name)
	}
	if slices.Min(st.Lengths) < 1 {
		return Study{}, fmt.Errorf("study %s: the model's context of %d tokens is too short", name, context)
	}
	return st, nil
}
