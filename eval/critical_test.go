package eval

import (
	"math"
	"testing"
)

// pt makes a point whose tasks have the given per-sample scores, all samples with the
// same footprint and peak.
func pt(knob, fp float64, scores map[string][]float64) *point {
	p := &point{knob: knob, tasks: map[string][]sampleStat{}}
	for task, ss := range scores {
		for _, s := range ss {
			p.tasks[task] = append(p.tasks[task], sampleStat{score: s, footprint: fp, peak: fp / 2})
		}
	}
	return p
}

func TestCriticalCrossing(t *testing.T) {
	ref := pt(0, 1, map[string][]float64{"a": {100, 100}})
	pts := []*point{
		pt(0.2, 0.8, map[string][]float64{"a": {100, 100}}),
		pt(0.5, 0.5, map[string][]float64{"a": {100, 90}}), // 95 ≥ 90: passes
		pt(0.8, 0.2, map[string][]float64{"a": {100, 0}}),  // 50: fails
	}
	c := critical(pts, ref, one("a"), 0.9, nil)
	if !c.found || c.below || c.pass != 1 || c.fail != 2 || c.fp != 0.5 || c.lower != 0.2 || c.peak != 0.25 {
		t.Fatalf("got %+v, want pass 1 (0.5, peak 0.25), fail 2 (0.2)", c)
	}
	// Bisection probes halfway between the knobs, on the grid of minStep.
	if x, ok := nextProbe(pts, ref, one("a"), 0.9, 0.05, 0.01); !ok || math.Abs(x-0.65) > 1e-12 {
		t.Errorf("probe %v %v, want 0.65", x, ok)
	}
	// Within tolerance: no probe.
	if _, ok := nextProbe(pts, ref, one("a"), 0.9, 0.3, 0.01); ok {
		t.Error("probed although the bracket 0.2…0.5 is within 0.3")
	}
	// Knobs too close to split.
	if _, ok := nextProbe(pts, ref, one("a"), 0.9, 0.05, 0.2); ok {
		t.Error("probed between knobs 0.5 and 0.8 at step 0.2")
	}
}

// A non-monotone sweep: the operational definition takes the smallest passing
// footprint, and the bracket is the nearest failing footprint below it.
func TestCriticalNonMonotone(t *testing.T) {
	ref := pt(0, 1, map[string][]float64{"a": {100}})
	pts := []*point{
		pt(0.2, 0.8, map[string][]float64{"a": {0}}),
		pt(0.4, 0.6, map[string][]float64{"a": {100}}),
		pt(0.6, 0.4, map[string][]float64{"a": {0}}),
		pt(0.7, 0.3, map[string][]float64{"a": {100}}),
		pt(0.9, 0.1, map[string][]float64{"a": {0}}),
	}
	c := critical(pts, ref, one("a"), 0.9, nil)
	if c.fp != 0.3 || c.lower != 0.1 {
		t.Errorf("got %+v, want critical 0.3 bracketed by 0.1", c)
	}
}

func TestCriticalNoneAndBelow(t *testing.T) {
	ref := pt(0, 1, map[string][]float64{"a": {100}})
	if c := critical([]*point{pt(0.2, 0.8, map[string][]float64{"a": {80}})}, ref, one("a"), 0.9, nil); c.found {
		t.Errorf("80 < 90 passes: %+v", c)
	}
	c := critical([]*point{pt(0.2, 0.8, map[string][]float64{"a": {95}}), pt(0.5, 0.4, map[string][]float64{"a": {90}})}, ref, one("a"), 0.9, nil)
	if !c.found || !c.below || c.fp != 0.4 {
		t.Errorf("every setting passes: got %+v, want below 0.4", c)
	}
	if _, ok := nextProbe([]*point{pt(0.5, 0.4, map[string][]float64{"a": {90}})}, ref, one("a"), 0.9, 0.01, 0.01); ok {
		t.Error("probed with no failing setting to bracket")
	}
}

// A category's score is the mean over its tasks of their means (gather_results.py),
// not the mean over all samples: task a (2 samples) and b (1 sample).
func TestAggregateCategoryMeanOfTasks(t *testing.T) {
	p := pt(0, 0.5, map[string][]float64{"a": {100, 0}, "b": {100}})
	tg := target{name: "recall", cats: map[string][]string{"recall": {"a", "b"}}}
	s, f, pk := p.aggregate(tg, nil)
	if s != 75 || f != 0.5 || pk != 0.25 {
		t.Errorf("got %v %v %v, want 75 (mean of 50 and 100), 0.5, 0.25", s, f, pk)
	}
	// overall: the mean over categories of their means
	q := pt(0, 0.5, map[string][]float64{"a": {100, 0}, "b": {100}, "c": {0}})
	all := target{name: "overall", cats: map[string][]string{"recall": {"a", "b"}, "icl": {"c"}}}
	if s, _, _ := q.aggregate(all, nil); s != 37.5 {
		t.Errorf("overall %v, want 37.5", s)
	}
	// picked samples: sample 0 of a twice
	if s, _, _ := p.aggregate(tg, map[string][]int{"a": {0, 0}, "b": {0}}); s != 100 {
		t.Errorf("resampled %v, want 100", s)
	}
}

// The bootstrap of a two-sample task: the sparse setting passes only when both draws
// are its good sample (probability 1/4), else the dense setting is critical.
func TestBootstrapTwoSamples(t *testing.T) {
	ref := pt(0, 1, map[string][]float64{"a": {100, 100}})
	pts := []*point{
		pt(0.2, 0.8, map[string][]float64{"a": {100, 100}}),
		pt(0.5, 0.5, map[string][]float64{"a": {100, 0}}),
	}
	bs := bootstrap(pts, ref, one("a"), 0.9, 4000, 1)
	low := 0
	for _, x := range bs {
		switch x {
		case 0.5:
			low++
		case 0.8:
		default:
			t.Fatalf("resample critical %v, want 0.5 or 0.8", x)
		}
	}
	if f := float64(low) / float64(len(bs)); f < 0.22 || f > 0.28 {
		t.Errorf("share of resamples with critical 0.5: %v, want about 1/4", f)
	}
	if lo, hi := quantile(bs, 0.05), quantile(bs, 0.95); lo != 0.5 || hi != 0.8 {
		t.Errorf("90%% interval [%v, %v], want [0.5, 0.8]", lo, hi)
	}
	// Resamples where nothing passes count as +Inf.
	bad := []*point{pt(0.5, 0.5, map[string][]float64{"a": {100, 0}})}
	bs = bootstrap(bad, ref, one("a"), 0.9, 400, 2)
	if !math.IsInf(quantile(bs, 0.95), 1) || quantile(bs, 0.0) != 0.5 {
		t.Errorf("interval [%v, %v], want [0.5, +Inf]", quantile(bs, 0), quantile(bs, 0.95))
	}
}

func TestQuantile(t *testing.T) {
	xs := []float64{1, 2, 3, 4}
	if q := quantile(xs, 0.5); q != 2.5 {
		t.Errorf("median %v, want 2.5", q)
	}
	if q := quantile([]float64{1, math.Inf(1)}, 0.5); !math.IsInf(q, 1) {
		t.Errorf("between 1 and +Inf: %v, want +Inf", q)
	}
}
