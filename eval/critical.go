package eval

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
)

// The critical KV footprint (docs/METHODS.md §1.8): for a method and a target (a task, a
// category or all of them), among its evaluated settings whose score is at least
// threshold × the full-attention score, the smallest KV footprint. Scores and
// footprints aggregate as the paper's gather_results.py does: per task the mean over
// samples (footprints are means of per-sample ratios), per category the mean over the
// category's tasks, overall the mean over categories.

// sampleStat is what the analysis needs of one sample; a failed one (on the device) has
// no score or footprint and is left out of every mean.
type sampleStat struct {
	score, footprint, peak float64
	failed                 bool
}

// MaxFailedFraction is the most of a cell's samples (one setting on one task at one
// length) that may have failed on the device for the cell to count towards a critical
// footprint, scored over the samples that ran; a cell with more failures is left out, as
// if it had not run (docs/STUDY.md).
const MaxFailedFraction = 0.25

// failedIn counts the failed samples of ss.
func failedIn(ss []sampleStat) int {
	n := 0
	for _, s := range ss {
		if s.failed {
			n++
		}
	}
	return n
}

// tooManyFailed reports whether a cell of these samples is left out for its failures.
func tooManyFailed(ss []sampleStat) bool {
	return float64(failedIn(ss)) > MaxFailedFraction*float64(len(ss))
}

// point is one evaluated setting of a method at one length: the samples of every task
// it was run on, by sample index.
type point struct {
	knob  float64 // the sparsity knob (0 for a method without one)
	spec  string  // the resolved policy spec
	tasks map[string][]sampleStat
}

// target is what a critical footprint is computed for: one task, one category, or
// every category (overall).
type target struct {
	name string
	cats map[string][]string // category → its tasks (one category of one task for a task target)
}

// one is the target of a single task.
func one(task string) target { return target{name: task, cats: map[string][]string{task: {task}}} }

func (t target) tasks() []string {
	var ts []string
	for _, c := range t.cats {
		ts = append(ts, c...)
	}
	sort.Strings(ts)
	return ts
}

// covers reports whether p holds samples of every task of t (n of each, or at least one
// when n is 0), with at most MaxFailedFraction of each task's failed.
func (p *point) covers(t target, n int) bool {
	if !p.complete(t, n) {
		return false
	}
	for _, task := range t.tasks() {
		if tooManyFailed(p.tasks[task]) {
			return false
		}
	}
	return true
}

// complete reports whether p holds samples of every task of t (n of each, or at least
// one when n is 0), failed or not.
func (p *point) complete(t target, n int) bool {
	for _, task := range t.tasks() {
		s := p.tasks[task]
		if len(s) == 0 || n > 0 && len(s) < n {
			return false
		}
	}
	return true
}

// failed counts p's failed samples on the tasks of t.
func (p *point) failed(t target) int {
	n := 0
	for _, task := range t.tasks() {
		n += failedIn(p.tasks[task])
	}
	return n
}

// aggregate is the target's mean score, footprint and peak at p, over the samples
// picked by idx (task → indices; nil: every sample once) that did not fail; NaN when
// every pick of a task failed (a bootstrap resample can pick only those).
func (p *point) aggregate(t target, idx map[string][]int) (score, fp, peak float64) {
	cats := 0
	for _, tasks := range t.cats {
		var cs, cf, cp float64
		for _, task := range tasks {
			s := p.tasks[task]
			pick := idx[task]
			n := len(s)
			if pick != nil {
				n = len(pick)
			}
			var ts, tf, tp float64
			ran := 0
			for i := range n {
				j := i
				if pick != nil {
					j = pick[i]
				}
				if s[j].failed {
					continue
				}
				ts += s[j].score
				tf += s[j].footprint
				tp += s[j].peak
				ran++
			}
			if ran == 0 {
				return math.NaN(), math.NaN(), math.NaN()
			}
			cs += ts / float64(ran)
			cf += tf / float64(ran)
			cp += tp / float64(ran)
		}
		k := float64(len(tasks))
		score, fp, peak = score+cs/k, fp+cf/k, peak+cp/k
		cats++
	}
	c := float64(cats)
	return score / c, fp / c, peak / c
}

// crossing is the critical footprint of one method for one target, from its evaluated
// settings.
type crossing struct {
	found bool    // some setting passes the threshold
	below bool    // the sparsest setting evaluated passes: the critical footprint is below it
	pass  int     // index (into the points) of the passing setting with the smallest footprint
	fail  int     // the failing setting with the largest footprint below it (−1: none)
	fp    float64 // the critical footprint: the footprint of pass
	peak  float64 // its peak
	lower float64 // the footprint of fail: the crossing lies in (lower, fp]
}

// critical finds the crossing among pts, which must all cover t, against the full
// attention reference ref, with the samples picked by idx.
func critical(pts []*point, ref *point, t target, threshold float64, idx map[string][]int) crossing {
	refScore, _, _ := ref.aggregate(t, idx)
	c := crossing{pass: -1, fail: -1, fp: math.Inf(1)}
	fps := make([]float64, len(pts))
	passes := make([]bool, len(pts))
	for i, p := range pts {
		s, f, pk := p.aggregate(t, idx)
		fps[i] = f
		passes[i] = s >= threshold*refScore
		if passes[i] && f < c.fp {
			c.found, c.pass, c.fp, c.peak = true, i, f, pk
		}
	}
	if !c.found {
		return c
	}
	c.lower = math.Inf(-1)
	for i, f := range fps {
		if !passes[i] && f < c.fp && f > c.lower {
			c.fail, c.lower = i, f
		}
	}
	c.below = c.fail < 0
	return c
}

// bootstrap resamples the samples of every task of t (with replacement, the same
// indices for every setting: they are the same instances) and returns the critical
// footprint of each resample, +Inf where no setting passes, sorted.
func bootstrap(pts []*point, ref *point, t target, threshold float64, n int, seed uint64) []float64 {
	rng := rand.New(rand.NewPCG(seed, 0x626f6f74))
	tasks := t.tasks()
	out := make([]float64, n)
	idx := map[string][]int{}
	for b := range n {
		for _, task := range tasks {
			k := len(ref.tasks[task])
			pick := idx[task][:0]
			for range k {
				pick = append(pick, rng.IntN(k))
			}
			idx[task] = pick
		}
		out[b] = critical(pts, ref, t, threshold, idx).fp
	}
	slices.Sort(out)
	return out
}

// quantile is the q-quantile of sorted xs (linear interpolation, numpy's default).
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	pos := q * float64(len(xs)-1)
	lo := int(math.Floor(pos))
	hi := min(lo+1, len(xs)-1)
	if math.IsInf(xs[lo], 1) || math.IsInf(xs[hi], 1) {
		if pos == float64(lo) || math.IsInf(xs[lo], 1) {
			return xs[lo]
		}
		return xs[hi]
	}
	return xs[lo] + (pos-float64(lo))*(xs[hi]-xs[lo])
}

// nextProbe is where bisection evaluates next for t: the knob halfway between the
// critical setting and the failing one just below it, or false once their footprints
// are within tol (or their knobs within minStep, or there is no crossing to refine).
func nextProbe(pts []*point, ref *point, t target, threshold, tol, minStep float64) (float64, bool) {
	c := critical(pts, ref, t, threshold, nil)
	if !c.found || c.below || c.fp-c.lower <= tol+1e-9 { // footprints are means: allow their rounding
		return 0, false
	}
	a, b := pts[c.pass].knob, pts[c.fail].knob
	if math.Abs(a-b) < 2*minStep {
		return 0, false
	}
	m := (a + b) / 2
	// knobs are kept on a grid of minStep so that a resumed study asks for the same ones
	return math.Round(m/minStep) * minStep, true
}
