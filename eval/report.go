package eval

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// StudyReport is a study's outcome: per method, its critical KV footprint (overall at
// the longest length, and per category and task at every length) and the mean score,
// footprint and peak of every setting it ran.
type StudyReport struct {
	Model     string            `json:"model"`
	Threshold float64           `json:"threshold"`
	Lengths   []int             `json:"lengths"`
	Samples   int               `json:"samples"`
	Settings  map[string]string `json:"settings,omitempty"`
	Methods   []MethodStudy     `json:"methods"`
}

// MethodStudy is one method's part of the report.
type MethodStudy struct {
	Name    string `json:"name"`
	Spec    string `json:"spec"`
	Missing string `json:"missing,omitempty"`
	// The overall critical footprint and peak at the longest length (null: none passes).
	CriticalFootprint *float64 `json:"critical_footprint"`
	CriticalPeak      *float64 `json:"critical_peak"`
	// Categories holds the critical footprint of every category at the longest length,
	// and "overall" when there are several; Tasks that of every task; ByLength both for
	// every length.
	Categories map[string]Critical `json:"categories"`
	Tasks      map[string]Critical `json:"tasks"`
	ByLength   []LengthCritical    `json:"by_length,omitempty"`
	Results    []StudyResult       `json:"results"`
	timeline   []TimelineStep
	// curves: per category at the longest length, every setting's (footprint, score)
	curves map[string][][2]float64
	full   map[string]float64 // full attention's score per category
}

// LengthCritical is the critical footprints at one length.
type LengthCritical struct {
	Length     int                 `json:"length"`
	Categories map[string]Critical `json:"categories"`
	Tasks      map[string]Critical `json:"tasks"`
}

// Critical is the critical KV footprint for one target.
type Critical struct {
	// Footprint is the smallest footprint among the settings that pass (null: none does);
	// Below marks that the sparsest setting tried passes (the critical footprint is
	// below it: "< x").
	Footprint *float64 `json:"critical_footprint"`
	Peak      *float64 `json:"critical_peak"`
	Below     bool     `json:"below,omitempty"`
	// Bracket is the footprint of the failing setting just below: the crossing lies in
	// (Bracket, Footprint].
	Bracket  *float64 `json:"bracket,omitempty"`
	Sparsity *float64 `json:"sparsity,omitempty"` // the knob of the critical setting
	Setting  string   `json:"setting,omitempty"`
	Score    float64  `json:"score"`           // at the critical setting
	Full     float64  `json:"reference_score"` // full attention's
	// Interval is the 5th and 95th percentile of the critical footprint over bootstrap
	// resamples of the samples (null upper end: in more than 5% of them no setting passes).
	Interval [2]*float64 `json:"interval"`
	Settings int         `json:"settings"` // settings evaluated for the target
	// Densest is the largest footprint evaluated, when none passes (null otherwise).
	Densest *float64 `json:"densest,omitempty"`
	Fixed   bool     `json:"fixed,omitempty"` // the method has no knob: one setting
	Note    string   `json:"note,omitempty"`
	// Samples that failed on the device: Failed of the settings counted and full
	// attention's (each scored over the samples that ran); LeftOut settings, and
	// ReferenceLeftOut full attention, left out for more than MaxFailedFraction failed.
	Failed           int  `json:"failed_samples,omitempty"`
	LeftOut          int  `json:"left_out_settings,omitempty"`
	ReferenceLeftOut bool `json:"reference_left_out,omitempty"`
}

// MinReferenceScore is the least score (of 100) full attention needs on a target for a
// critical footprint to mean anything: below it, 90% of the reference is within a sample
// or two of chance, and every method "keeps" it.
const MinReferenceScore = 10.0

// failures reports whether samples that failed on the device shaped c.
func (c Critical) failures() bool { return c.Failed > 0 || c.LeftOut > 0 || c.ReferenceLeftOut }

// StudyResult is the mean over samples of one setting on one task and length.
type StudyResult struct {
	Task      string  `json:"task"`
	Category  string  `json:"category"`
	Length    int     `json:"length"`
	Setting   string  `json:"setting"`
	Sparsity  float64 `json:"sparsity"`
	Score     float64 `json:"score"`
	Footprint float64 `json:"footprint"`
	Peak      float64 `json:"peak"`
	PeakBytes float64 `json:"peak_bytes"`
	Samples   int     `json:"samples"` // that ran: the means are over them
	// Failed samples failed on the device, for Failures (each reason with its count);
	// LeftOut: more than MaxFailedFraction did, and the cell counts towards no critical
	// footprint.
	Failed   int      `json:"failed,omitempty"`
	Failures []string `json:"failures,omitempty"`
	LeftOut  bool     `json:"left_out,omitempty"`
}

// Analyze computes the report of a study from its results.
func Analyze(f StudyFile, samples []*Sample) *StudyReport {
	rep := &StudyReport{Model: f.Model, Threshold: f.Threshold, Lengths: f.Lengths, Samples: f.Samples, Settings: f.Settings}
	sweeps := collect(samples, f.Samples)
	bytes := peakBytes(samples, f.Samples)
	reasons := failureReasons(samples, f.Samples)
	longest := slices.Max(f.Lengths)
	targets := targetsOf(f.Tasks, f.Categories)
	for _, m := range f.Methods {
		ms := MethodStudy{Name: m.Name, Spec: m.Spec, Missing: m.Missing, Categories: map[string]Critical{}, Tasks: map[string]Critical{},
			Results: []StudyResult{}}
		for _, l := range f.Lengths {
			sw := sweeps[pointKey{m.Name, l}]
			ref := sweeps[pointKey{reference, l}]
			lc := LengthCritical{Length: l, Categories: map[string]Critical{}, Tasks: map[string]Critical{}}
			var rp *point // full attention's
			if ref != nil && len(ref.settings) > 0 {
				rp = ref.settings[0]
			}
			if sw != nil && rp != nil {
				for i, t := range targets {
					t = t.scored(rp, f.Samples)
					lc.Categories[t.name] = criticalFor(sw.settings, rp, t, f, uint64(i), !m.Knob())
				}
				for i, task := range f.Tasks {
					t := one(task)
					lc.Tasks[task] = criticalFor(sw.settings, rp, t, f, uint64(100+i), !m.Knob())
				}
			}
			if sw != nil {
				for _, p := range sw.settings {
					for _, task := range f.Tasks {
						ss := p.tasks[task]
						if len(ss) == 0 {
							continue
						}
						k := bytesKey{p.spec, task, l}
						failed := failedIn(ss)
						r := StudyResult{Task: task, Category: f.Categories[task], Length: l, Setting: p.spec, Sparsity: p.knob,
							PeakBytes: bytes[k], Samples: len(ss) - failed, Failed: failed, Failures: reasons[k], LeftOut: tooManyFailed(ss)}
						if r.Samples > 0 {
							r.Score, r.Footprint, r.Peak = p.aggregate(one(task), nil)
						}
						ms.Results = append(ms.Results, r)
					}
				}
			}
			if l == longest {
				ms.Categories, ms.Tasks = lc.Categories, lc.Tasks
				overall := targets[len(targets)-1].name
				if c, ok := lc.Categories[overall]; ok {
					ms.CriticalFootprint, ms.CriticalPeak = c.Footprint, c.Peak
				}
				ms.timeline = timelineOf(samples, m.Name, l, lc.Categories[overall], f.Tasks)
				ms.curves, ms.full = map[string][][2]float64{}, map[string]float64{}
				for _, t := range targets {
					if rp != nil {
						if t = t.scored(rp, f.Samples); rp.covers(t, f.Samples) {
							ms.full[t.name], _, _ = rp.aggregate(t, nil)
						}
					}
					for _, p := range sweepSettings(sw) {
						if p.covers(t, f.Samples) {
							sc, fp, _ := p.aggregate(t, nil)
							ms.curves[t.name] = append(ms.curves[t.name], [2]float64{fp, sc})
						}
					}
				}
			}
			if len(f.Lengths) > 1 {
				ms.ByLength = append(ms.ByLength, lc)
			}
		}
		rep.Methods = append(rep.Methods, ms)
	}
	return rep
}

// criticalFor is the critical footprint of one target from the settings that cover it.
func criticalFor(all []*point, ref *point, t target, f StudyFile, seed uint64, fixed bool) Critical {
	c := Critical{Fixed: fixed}
	var pts []*point
	for _, p := range all {
		switch {
		case p.covers(t, f.Samples):
			pts = append(pts, p)
			c.Failed += p.failed(t)
		case p.complete(t, f.Samples):
			c.LeftOut++
		}
	}
	c.Settings = len(pts)
	if ref.complete(t, f.Samples) {
		c.Failed += ref.failed(t)
		c.ReferenceLeftOut = !ref.covers(t, f.Samples)
	}
	if len(pts) == 0 || !ref.covers(t, f.Samples) {
		return c
	}
	c.Full, _, _ = ref.aggregate(t, nil)
	if c.Full < MinReferenceScore {
		c.Note = fmt.Sprintf("full attention scores %.1f, below %g: a model that cannot do the task has no score to keep", c.Full, MinReferenceScore)
		return c
	}
	x := critical(pts, ref, t, f.Threshold, nil)
	bs := bootstrap(pts, ref, t, f.Threshold, f.Bootstrap, seed)
	c.Interval = [2]*float64{finite(quantile(bs, 0.05)), finite(quantile(bs, 0.95))}
	if !x.found {
		densest := 0.0
		for _, p := range pts {
			_, fp, _ := p.aggregate(t, nil)
			densest = max(densest, fp)
		}
		c.Densest = ptr(densest)
		return c
	}
	p := pts[x.pass]
	c.Footprint, c.Peak, c.Below = ptr(x.fp), ptr(x.peak), x.below
	c.Sparsity, c.Setting = ptr(p.knob), p.spec
	c.Score, _, _ = p.aggregate(t, nil)
	if !x.below {
		c.Bracket = ptr(x.lower)
	}
	return c
}

func ptr(x float64) *float64 { return &x }

func sweepSettings(sw *sweep) []*point {
	if sw == nil {
		return nil
	}
	return sw.settings
}

func finite(x float64) *float64 {
	if math.IsInf(x, 0) || math.IsNaN(x) {
		return nil
	}
	return &x
}

type bytesKey struct {
	spec, task string
	length     int
}

// failureReasons are, per setting, task and length, the reasons its samples failed on
// the device, each with its count, in order.
func failureReasons(samples []*Sample, n int) map[bytesKey][]string {
	counts := map[bytesKey]map[string]int{}
	for _, s := range samples {
		if s.Failed == "" || n > 0 && s.Index >= n {
			continue
		}
		k := bytesKey{s.Method, s.Task, s.Length}
		if counts[k] == nil {
			counts[k] = map[string]int{}
		}
		counts[k][s.Failed]++
	}
	out := map[bytesKey][]string{}
	for k, byReason := range counts {
		for _, r := range slices.Sorted(maps.Keys(byReason)) {
			out[k] = append(out[k], fmt.Sprintf("%s (%s)", r, plural(byReason[r], "sample")))
		}
	}
	return out
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// peakBytes is the mean peak bytes per setting, task and length, over the samples that ran.
func peakBytes(samples []*Sample, n int) map[bytesKey]float64 {
	sum, cnt := map[bytesKey]float64{}, map[bytesKey]int{}
	for _, s := range samples {
		if n > 0 && s.Index >= n || s.Failed != "" {
			continue
		}
		k := bytesKey{s.Method, s.Task, s.Length}
		sum[k] += float64(s.PeakBytes)
		cnt[k]++
	}
	for k := range sum {
		sum[k] /= float64(cnt[k])
	}
	return sum
}

// timelineOf is the KV entries over time of one request of the method: the first
// sample of the first task, at the critical setting (else the densest one run).
func timelineOf(samples []*Sample, name string, length int, c Critical, taskList []string) []TimelineStep {
	var best *Sample
	for _, s := range samples {
		if s.Index != 0 || s.Length != length || len(s.Timeline) == 0 || len(taskList) == 0 || s.Task != taskList[0] {
			continue
		}
		if n := s.Name; n != name && !(n == "" && s.Method == name) {
			continue
		}
		if c.Setting != "" && s.Method == c.Setting {
			return s.Timeline
		}
		if best == nil || s.Knob < best.Knob {
			best = s
		}
	}
	if best == nil {
		return nil
	}
	return best.Timeline
}

// fmtCritical renders a critical footprint for a table: "0.312 (0.28–0.35)", "< 0.120",
// "none".
func fmtCritical(c Critical, peak bool) string {
	v := c.Footprint
	if peak {
		v = c.Peak
	}
	mark := ""
	if c.failures() {
		mark = " " + failedMark
	}
	switch {
	case c.ReferenceLeftOut:
		return "n/a (full attention failed)" + mark
	case c.Settings == 0 && c.LeftOut > 0:
		return "left out (failed)" + mark
	case c.Settings == 0:
		return "not run"
	case c.Full < MinReferenceScore:
		return fmt.Sprintf("n/a (full scores %.1f)", c.Full) + mark
	}
	if v == nil {
		if c.Densest != nil && !peak {
			return fmt.Sprintf("none (%.3f fails)", *c.Densest)
		}
		return "none"
	}
	s := fmt.Sprintf("%.3f", *v)
	switch {
	case c.Fixed:
		s += " (one setting)"
	case c.Below:
		s = "< " + s
	}
	if !peak {
		lo, hi := "?", "none"
		if c.Interval[0] != nil {
			lo = fmt.Sprintf("%.3f", *c.Interval[0])
		}
		if c.Interval[1] != nil {
			hi = fmt.Sprintf("%.3f", *c.Interval[1])
		}
		s += fmt.Sprintf(" [%s, %s]", lo, hi)
	}
	return s + mark
}

// failedMark marks a critical footprint that samples failed on the device shaped.
const failedMark = "†"

// failedNote explains failedMark.
const failedNote = failedMark + ": samples failed on the device (out of memory, a kernel fault) in the settings counted or in full attention's; " +
	"their cells are scored over the samples that ran, and a cell where more than a quarter failed is left out"

// anyFailures reports whether samples failed on the device anywhere in the report.
func (r *StudyReport) anyFailures() bool {
	for _, m := range r.Methods {
		for _, x := range m.Results {
			if x.Failed > 0 {
				return true
			}
		}
	}
	return false
}

// categoryColumns are the report's categories in the study's order, overall last.
func (r *StudyReport) categoryColumns() []string {
	var cols []string
	for _, m := range r.Methods {
		for c := range m.Categories {
			if !slices.Contains(cols, c) {
				cols = append(cols, c)
			}
		}
	}
	slices.SortFunc(cols, func(a, b string) int {
		if (a == "overall") != (b == "overall") {
			if a == "overall" {
				return 1
			}
			return -1
		}
		return strings.Compare(a, b)
	})
	return cols
}

// Table is the critical-footprint table as text (the paper's Table 2): a row per
// method, a column per category.
func (r *StudyReport) Table() string {
	cols := r.categoryColumns()
	var b strings.Builder
	rows := [][]string{append([]string{"method"}, cols...)}
	for _, m := range r.Methods {
		row := []string{m.Name}
		for _, c := range cols {
			if m.Missing != "" {
				row = append(row, "missing")
				continue
			}
			row = append(row, fmtCritical(m.Categories[c], false))
		}
		rows = append(rows, row)
	}
	widths := make([]int, len(cols)+1)
	for _, row := range rows {
		for i, cell := range row {
			widths[i] = max(widths[i], len([]rune(cell)))
		}
	}
	for _, row := range rows {
		for i, cell := range row {
			fmt.Fprintf(&b, "%-*s", widths[i]+2, cell)
		}
		b.WriteString("\n")
	}
	for _, m := range r.Methods {
		if m.Missing != "" {
			fmt.Fprintf(&b, "%s: %s\n", m.Name, m.Missing)
		}
	}
	if r.anyFailures() {
		b.WriteString(failedNote + ".\n")
	}
	return b.String()
}

// Markdown is the report as a markdown document.
func (r *StudyReport) Markdown() string {
	var b strings.Builder
	longest := slices.Max(r.Lengths)
	fmt.Fprintf(&b, "# Critical KV footprints\n\nModel `%s`; prompts of %s tokens; %d samples per task; a setting passes with a score ≥ %.0f%% of full attention's.\n",
		r.Model, joinInts(r.Lengths), r.Samples, 100*r.Threshold)
	if len(r.Settings) > 0 {
		var keys []string
		for k := range r.Settings {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b.WriteString("Settings:")
		for _, k := range keys {
			fmt.Fprintf(&b, " %s=%s", k, r.Settings[k])
		}
		b.WriteString(".\n")
	}
	fmt.Fprintf(&b, "\n## Critical KV footprint at %d tokens (the paper's Table 2)\n\n", longest)
	b.WriteString("The smallest measured KV footprint among a method's settings that keep the threshold, with the 5–95% interval over bootstrap resamples of the samples in brackets (`none` as the upper end: in more than 5% of resamples no setting passes); `none (x fails)`: no setting passes, the densest tried having footprint x; `< x`: the sparsest setting tried still passes; `(one setting)`: a method without a knob, at its only setting.\n\n")
	cols := r.categoryColumns()
	// criticalTable writes every method's critical footprint (or peak) per category, at
	// the longest length (length 0) or at another one.
	criticalTable := func(peak bool, length int) {
		writeTable(&b, append([]string{"method"}, cols...), func(add func(...string)) {
			for _, m := range r.Methods {
				cats := m.Categories
				if length != 0 {
					cats = nil
					for _, lc := range m.ByLength {
						if lc.Length == length {
							cats = lc.Categories
						}
					}
				}
				row := []string{m.Name}
				for _, c := range cols {
					if m.Missing != "" {
						row = append(row, "missing")
					} else {
						row = append(row, fmtCritical(cats[c], peak))
					}
				}
				add(row...)
			}
		})
	}
	criticalTable(false, 0)
	if r.anyFailures() {
		b.WriteString("\n" + failedNote + " (see Failed samples).\n")
	}
	b.WriteString("\nCritical KV peak (the peak at the critical setting):\n\n")
	criticalTable(true, 0)
	var missing []string
	for _, m := range r.Methods {
		if m.Missing != "" {
			missing = append(missing, fmt.Sprintf("- %s: %s", m.Name, m.Missing))
		}
	}
	if len(missing) > 0 {
		b.WriteString("\nMissing methods:\n\n" + strings.Join(missing, "\n") + "\n")
	}
	b.WriteString("\n## Per task\n\n")
	taskCols := r.taskColumns()
	writeTable(&b, append([]string{"method"}, taskCols...), func(add func(...string)) {
		for _, m := range r.Methods {
			if m.Missing != "" {
				continue
			}
			row := []string{m.Name}
			for _, t := range taskCols {
				row = append(row, fmtCritical(m.Tasks[t], false))
			}
			add(row...)
		}
	})
	for _, l := range r.Lengths {
		if l == longest {
			continue
		}
		fmt.Fprintf(&b, "\n## Critical KV footprint at %d tokens\n\n", l)
		criticalTable(false, l)
	}
	b.WriteString("\n## Every setting\n\nMeans over the samples that ran; footprint and peak are the meter's, as fractions of full attention; peak bytes is the most storage the cache held; failed: samples that failed on the device.\n\n")
	writeTable(&b, []string{"method", "sparsity", "task", "length", "score", "footprint", "peak", "peak KiB", "samples", "failed", "setting"}, func(add func(...string)) {
		for _, m := range r.Methods {
			for _, x := range m.Results {
				score, fp, peak, kib := fmt.Sprintf("%.1f", x.Score), fmt.Sprintf("%.3f", x.Footprint), fmt.Sprintf("%.3f", x.Peak), fmt.Sprintf("%.0f", x.PeakBytes/1024)
				if x.Samples == 0 { // every sample failed: nothing to average
					score, fp, peak, kib = "—", "—", "—", "—"
				}
				add(m.Name, fmt.Sprintf("%.3g", x.Sparsity), x.Task, strconv.Itoa(x.Length), score, fp, peak, kib,
					strconv.Itoa(x.Samples), x.failedCell(), "`"+x.Setting+"`")
			}
		}
	})
	if r.anyFailures() {
		fmt.Fprintf(&b, "\n## Failed samples\n\nSamples that failed on the device, per cell, with the reasons. A cell is scored over the samples that ran; one where more than %.0f%% failed is left out of every critical footprint (marked %s there), as if it had not run. `kvfoot eval --retry-failed` with the same flags runs them again.\n\n",
			100*MaxFailedFraction, failedMark)
		writeTable(&b, []string{"method", "setting", "task", "length", "failed", "reasons"}, func(add func(...string)) {
			for _, m := range r.Methods {
				for _, x := range m.Results {
					if x.Failed > 0 {
						add(m.Name, "`"+x.Setting+"`", x.Task, strconv.Itoa(x.Length), x.failedCell(), strings.ReplaceAll(strings.Join(x.Failures, "; "), "|", "\\|"))
					}
				}
			}
		})
	}
	return b.String()
}

// failedCell is a cell's failed samples for a table: "", "1 of 3", "2 of 3, left out".
func (x StudyResult) failedCell() string {
	if x.Failed == 0 {
		return ""
	}
	s := fmt.Sprintf("%d of %d", x.Failed, x.Failed+x.Samples)
	if x.LeftOut {
		s += ", left out"
	}
	return s
}

func (r *StudyReport) taskColumns() []string {
	var cols []string
	for _, m := range r.Methods {
		for t := range m.Tasks {
			if !slices.Contains(cols, t) {
				cols = append(cols, t)
			}
		}
	}
	slices.Sort(cols)
	return cols
}

func writeTable(b *strings.Builder, header []string, rows func(add func(...string))) {
	b.WriteString("| " + strings.Join(header, " | ") + " |\n|")
	for range header {
		b.WriteString(" --- |")
	}
	b.WriteString("\n")
	rows(func(cells ...string) { b.WriteString("| " + strings.Join(cells, " | ") + " |\n") })
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ", ")
}

// WriteReport writes the report into the folder: report.md, report.json, results.csv,
// critical.csv and the plots (PNG and SVG).
func (r *StudyReport) WriteReport(out *Folder) error {
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	files := map[string][]byte{"report.md": []byte(r.Markdown()), "report.json": append(js, '\n')}
	var rows, crit [][]string
	rows = append(rows, []string{"method", "task", "category", "length", "sparsity", "setting", "score", "footprint", "peak", "peak_bytes", "samples", "failed", "left_out"})
	crit = append(crit, []string{"method", "length", "target", "critical_footprint", "critical_peak", "below", "bracket", "interval_low", "interval_high", "sparsity", "score", "reference_score",
		"failed_samples", "left_out_settings", "reference_left_out"})
	num := func(p *float64) string {
		if p == nil {
			return ""
		}
		return strconv.FormatFloat(*p, 'g', 6, 64)
	}
	for _, m := range r.Methods {
		for _, x := range m.Results {
			rows = append(rows, []string{m.Name, x.Task, x.Category, strconv.Itoa(x.Length), strconv.FormatFloat(x.Sparsity, 'g', -1, 64),
				x.Setting, fmt.Sprintf("%.4f", x.Score), fmt.Sprintf("%.6f", x.Footprint), fmt.Sprintf("%.6f", x.Peak),
				fmt.Sprintf("%.0f", x.PeakBytes), strconv.Itoa(x.Samples), strconv.Itoa(x.Failed), strconv.FormatBool(x.LeftOut)})
		}
		lengths := m.ByLength
		if len(lengths) == 0 && len(r.Lengths) > 0 {
			lengths = []LengthCritical{{Length: r.Lengths[0], Categories: m.Categories, Tasks: m.Tasks}}
		}
		for _, lc := range lengths {
			for _, group := range []map[string]Critical{lc.Categories, lc.Tasks} {
				var names []string
				for k := range group {
					names = append(names, k)
				}
				slices.Sort(names)
				for _, k := range names {
					c := group[k]
					crit = append(crit, []string{m.Name, strconv.Itoa(lc.Length), k, num(c.Footprint), num(c.Peak), strconv.FormatBool(c.Below),
						num(c.Bracket), num(c.Interval[0]), num(c.Interval[1]), num(c.Sparsity), fmt.Sprintf("%.4f", c.Score), fmt.Sprintf("%.4f", c.Full),
						strconv.Itoa(c.Failed), strconv.Itoa(c.LeftOut), strconv.FormatBool(c.ReferenceLeftOut)})
				}
			}
		}
	}
	for name, recs := range map[string][][]string{"results.csv": rows, "critical.csv": crit} {
		var sb strings.Builder
		w := csv.NewWriter(&sb)
		w.WriteAll(recs)
		files[name] = []byte(sb.String())
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if err := out.write(name, files[name]); err != nil {
			return err
		}
	}
	return r.plots(out)
}

// StudyFileName is the study's settings in its folder (StudyFile).
const StudyFileName = "study.json"

// WriteStudy writes a study's settings and its report into the folder (kvfoot report
// DIR reads the first and the results to redo the second).
func WriteStudy(out *Folder, f StudyFile, r *StudyReport) error {
	if err := WriteStudyFile(out, f); err != nil {
		return err
	}
	return r.WriteReport(out)
}

// WriteStudyFile writes a study's settings into the folder.
func WriteStudyFile(out *Folder, f StudyFile) error {
	js, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return out.write(StudyFileName, append(js, '\n'))
}

// Reopen reads a study's folder: its settings and every result in its results files
// (results.jsonl and the shards' files), each sample once, for kvfoot report.
func Reopen(dir string) (StudyFile, []*Sample, error) {
	f, err := ReadStudyFile(dir)
	if err != nil {
		return f, nil, err
	}
	st := &store{byID: map[sampleID][]stored{}}
	if len(ResultsFiles(dir)) == 0 {
		return f, nil, fmt.Errorf("report: %s holds no results (results.jsonl or shards/*.jsonl)", dir)
	}
	for _, path := range ResultsFiles(dir) {
		if err := st.readOther(path); err != nil {
			return f, nil, fmt.Errorf("report: %w", err)
		}
	}
	return f, st.samples(), nil
}

// ReadStudyFile reads a study's settings from its folder.
func ReadStudyFile(dir string) (StudyFile, error) {
	var f StudyFile
	data, err := os.ReadFile(filepath.Join(dir, StudyFileName))
	if err != nil {
		return f, fmt.Errorf("report: %w (a folder written by kvfoot eval --out DIR holds it)", err)
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return f, fmt.Errorf("report: %s: %w", filepath.Join(dir, StudyFileName), err)
	}
	if len(f.Methods) == 0 || len(f.Lengths) == 0 || len(f.Tasks) == 0 || f.Samples < 1 || !(f.Threshold > 0) || f.Bootstrap < 1 {
		return f, fmt.Errorf("report: %s lacks methods, tasks, lengths, samples, threshold or bootstrap", filepath.Join(dir, StudyFileName))
	}
	if f.Bootstrap > MaxBootstrap {
		return f, fmt.Errorf("report: %s: bootstrap %d: want at most %d resamples", filepath.Join(dir, StudyFileName), f.Bootstrap, MaxBootstrap)
	}
	return f, nil
}
