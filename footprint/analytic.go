// Package footprint measures the KV footprint of a generation (Meter) and computes the
// paper's analytic footprint (Analytic), which the Meter reproduces exactly for the
// policies the formula models.
package footprint

import (
	"fmt"
	"math"
)

// Params are the inputs of the paper's get_kv_footprint (PL:eval/viz/kv_footprint.py,
// method-spec 1.2–1.5).
type Params struct {
	Prompt, Response int     // P and R
	Chunk            int     // pre-fill chunk C; ≤ 0 or ≥ P: one chunk
	Sink, Window     int     // streaming heads: S and W
	HeadSparsity     float64 // h: fraction of streaming heads
	KVSparsity       float64 // s: token sparsity of the global heads
	KVWindow         int     // kv_window of the global heads (the paper always uses 64)
}

// Result is a footprint and a peak, both fractions of full attention.
type Result struct {
	Footprint float64 `json:"footprint"`
	Peak      float64 `json:"peak"`
}

func causal(n int) float64 { return float64(n) * float64(n+1) / 2 }

// boundaries are np.arange(0, P, C) + [P].
func boundaries(p, c int) []int {
	if c <= 0 {
		c = p
	}
	var b []int
	for a := 0; a < p; a += c {
		b = append(b, a)
	}
	return append(b, p)
}

func (p Params) check() error {
	if p.Prompt < 1 || p.Response < 0 || p.Sink < 0 || p.Window < 0 || p.KVWindow < 0 {
		return fmt.Errorf("footprint: %+v: want prompt ≥ 1 and non-negative lengths", p)
	}
	if !(p.HeadSparsity >= 0 && p.HeadSparsity <= 1) || !(p.KVSparsity >= 0 && p.KVSparsity <= 1) {
		return fmt.Errorf("footprint: head sparsity %g, KV sparsity %g: want 0…1", p.HeadSparsity, p.KVSparsity)
	}
	return nil
}

// streamingStats is streaming_mask_stats: entries attended and peak per phase.
func streamingStats(p Params) (float64, []float64) {
	var entries float64
	var peaks []float64
	var local, sink int
	b := boundaries(p.Prompt, p.Chunk)
	for i := 0; i+1 < len(b); i++ {
		a, e := b[i], b[i+1]
		local = a - max(0, a-p.Window)
		sink = a - local - max(0, a-local-p.Sink)
		entries += causal(e-a) + float64((e-a)*(local+sink))
		peaks = append(peaks, float64(e-a+local+sink))
	}
	for a := p.Prompt; a < p.Prompt+p.Response; a++ {
		local = a - max(0, a-p.Window)
		sink = a - local - max(0, a-local-p.Sink)
		entries += float64(1 + local + sink)
	}
	// The paper's quirk: the decode peak is the last step's (or, with no decoding, the
	// last chunk's local+sink plus one).
	return entries, append(peaks, float64(1+local+sink))
}

// globalStats is global_mask_stats: chunk-wise eviction keeping
// min(round((1−s)·n) + kv_window, n) of every chunk, nothing evicted in decoding.
func globalStats(p Params) (float64, []float64) {
	var entries float64
	var peaks []float64
	past := 0
	b := boundaries(p.Prompt, p.Chunk)
	for i := 0; i+1 < len(b); i++ {
		n := b[i+1] - b[i]
		entries += causal(n) + float64(past*n)
		peaks = append(peaks, float64(past+n))
		past += min(int(math.RoundToEven((1-p.KVSparsity)*float64(n)))+p.KVWindow, n)
	}
	entries += causal(p.Response) + float64(past*p.Response)
	return entries, append(peaks, float64(past+p.Response))
}

// Analytic is get_kv_footprint: h·streaming + (1−h)·global over full causal attention.
func Analytic(p Params) (Result, error) {
	if err := p.check(); err != nil {
		return Result{}, err
	}
	se, sp := streamingStats(p)
	ge, gp := globalStats(p)
	full := causal(p.Prompt + p.Response)
	h := p.HeadSparsity
	r := Result{Footprint: se/full*h + ge/full*(1-h)}
	peak := math.Inf(-1)
	for i := range sp {
		peak = max(peak, h*sp[i]+(1-h)*gp[i])
	}
	r.Peak = peak / float64(p.Prompt+p.Response)
	return r, nil
}

// Locret is get_kv_footprint_locret (method-spec 1.6): chunks of C over P−localLen,
// then one chunk of localLen; each keeps min(round((1−s)·n) + stabilizers, n).
func Locret(prompt, response, chunk int, sparsity float64, localLen, stabilizers int) (Result, error) {
	p := Params{Prompt: prompt, Response: response, Chunk: chunk, KVSparsity: sparsity, KVWindow: stabilizers}
	if err := p.check(); err != nil || localLen < 0 {
		return Result{}, fmt.Errorf("footprint: locret: prompt %d, response %d, local %d, sparsity %g: want prompt ≥ 1, 0 ≤ sparsity ≤ 1, local ≥ 0",
			prompt, response, localLen, sparsity)
	}
	var b []int
	if localLen >= prompt {
		b = []int{0, prompt}
	} else {
		b = boundaries(prompt-localLen, chunk)
		b = append(b, prompt)
	}
	var entries float64
	peak := math.Inf(-1)
	past := 0
	for i := 0; i+1 < len(b); i++ {
		n := b[i+1] - b[i]
		entries += causal(n) + float64(past*n)
		peak = max(peak, float64(past+n))
		past += min(int(math.RoundToEven((1-sparsity)*float64(n)))+stabilizers, n)
	}
	entries += causal(response) + float64(past*response)
	peak = max(peak, float64(past+response))
	return Result{
		Footprint: entries / causal(prompt+response),
		Peak:      peak / float64(prompt+response),
	}, nil
}

// Mean is calculate_kv_statistics: the mean over samples of the per-sample footprint
// and peak (a mean of ratios, method-spec 1.7).
func Mean(rs []Result) Result {
	var m Result
	for _, r := range rs {
		m.Footprint += r.Footprint
		m.Peak += r.Peak
	}
	if len(rs) > 0 {
		m.Footprint /= float64(len(rs))
		m.Peak /= float64(len(rs))
	}
	return m
}
