// Package footprint measures the KV footprint of a generation (Meter) and computes the
// paper's analytic footprint (Analytic), which the Meter reproduces exactly for the
// policies the formula models.
package footprint

import (
	"fmt"
	"math"
	"slices"
)

// Params are the inputs of the paper's get_kv_footprint (PL:eval/viz/kv_footprint.py,
// docs/METHODS.md §1.2–1.5).
type Params struct {
	Prompt, Response int     // P and R
	Chunk            int     // pre-fill chunk C; ≤ 0 or ≥ P: one chunk
	Sink, Window     int     // streaming heads: S and W
	HeadSparsity     float64 // h: fraction of streaming heads
	KVSparsity       float64 // s: token sparsity of the global heads
	KVWindow         int     // kv_window of the global heads (the paper always uses 64)

	// Read by Exact only (the harness's arithmetic, not the published formula):
	PostFill bool // the global heads evict once, after the last pre-fill chunk (SnapKV/PyramidKV without chunking)
	Patch    bool // SnapKV's patch: every non-final chunk keeps exactly int((1−s)·n)
	Layers   int  // > 1: PyramidKV's per-layer budgets over this many layers (else SnapKV's uniform one)
	Beta     int  // PyramidKV's β (0: 20)
}

// Result is a footprint and a peak, both fractions of full attention.
type Result struct {
	Footprint float64 `json:"footprint"`
	Peak      float64 `json:"peak"`
}

// MaxTokens bounds P+R and every other length the calculator takes: 2^26 tokens
// (67M, five hundred times the paper's 128K). Up to it every count of entries, and
// every product of two lengths, is an integer below 2^53 and so exact in float64: the
// result is the paper's to the last bit (its Python counts in exact integers). The
// calculator works in closed form, so any size up to it costs the same few operations.
const MaxTokens = 1 << 26

func causal(n int) float64 { return float64(n) * float64(n+1) / 2 }

// run is k consecutive pre-fill chunks of n tokens each, the first starting at a.
type run struct{ a, n, k int }

// chunks are the pre-fill chunks of np.arange(0, P, C) + [P] as at most two runs:
// the whole chunks and the shorter last one.
func chunks(p, c int) []run {
	if c <= 0 || c >= p {
		return []run{{0, p, 1}}
	}
	rs := []run{{0, c, p / c}}
	if r := p % c; r > 0 {
		rs = append(rs, run{p - r, r, 1})
	}
	return rs
}

// sumMin is Σ_{j<k} min(a + j·step, t), for a, t ≥ 0 and step ≥ 1.
func sumMin(a, step, k, t int) float64 {
	m := 0 // terms below t
	if a < t {
		m = min(k, (t-a+step-1)/step)
	}
	return float64(m)*float64(a) + float64(step)*float64(m)*float64(m-1)/2 + float64(k-m)*float64(t)
}

func (p Params) check() error {
	for _, v := range []struct {
		name string
		n    int
	}{{"prompt", p.Prompt}, {"response", p.Response}, {"chunk", p.Chunk}, {"sink", p.Sink}, {"window", p.Window}, {"kv window", p.KVWindow}} {
		if v.n > MaxTokens {
			return fmt.Errorf("footprint: %s %d: want at most %d tokens (2^26)", v.name, v.n, MaxTokens)
		}
	}
	for _, v := range []struct {
		name   string
		n, min int
	}{{"prompt", p.Prompt, 1}, {"response", p.Response, 0}, {"sink", p.Sink, 0}, {"window", p.Window, 0}, {"kv window", p.KVWindow, 0}} {
		if v.n < v.min {
			return fmt.Errorf("footprint: %s %d: want at least %d", v.name, v.n, v.min)
		}
	}
	if p.Prompt+p.Response > MaxTokens {
		return fmt.Errorf("footprint: prompt %d + response %d: want at most %d tokens (2^26)", p.Prompt, p.Response, MaxTokens)
	}
	if !(p.HeadSparsity >= 0 && p.HeadSparsity <= 1) || !(p.KVSparsity >= 0 && p.KVSparsity <= 1) {
		return fmt.Errorf("footprint: head sparsity %g, KV sparsity %g: want 0…1", p.HeadSparsity, p.KVSparsity)
	}
	return nil
}

// streamingStats is streaming_mask_stats: the entries attended, and the peak of the
// last chunk of every run and of decoding (within a run the peaks never fall, so
// these are the only candidates for the maximum). A chunk starting at a sees
// local + sink = min(a, W) + min(a − min(a, W), S) = min(a, S+W) older entries.
func streamingStats(p Params) (float64, []float64) {
	t := p.Sink + p.Window
	var entries float64
	var peaks []float64
	last := 0 // start of the last chunk
	for _, r := range chunks(p.Prompt, p.Chunk) {
		last = r.a + (r.k-1)*r.n
		entries += float64(r.k)*causal(r.n) + float64(r.n)*sumMin(r.a, r.n, r.k, t)
		peaks = append(peaks, float64(r.n+min(last, t)))
	}
	entries += float64(p.Response) + sumMin(p.Prompt, 1, p.Response, t)
	// The paper's quirk: the decode peak is the last step's (or, with no decoding, the
	// last chunk's local+sink plus one).
	if p.Response > 0 {
		last = p.Prompt + p.Response - 1
	}
	return entries, append(peaks, float64(1+min(last, t)))
}

// kept is how many of a chunk of n tokens the global heads keep:
// min(round((1−s)·n) + kv_window, n).
func kept(n int, s float64, kvWindow int) int {
	return int(min(math.RoundToEven((1-s)*float64(n))+float64(kvWindow), float64(n)))
}

// globalStats is global_mask_stats for the chunk runs rs: chunk-wise eviction keeping
// kept(n) of every chunk, nothing evicted in decoding; entries and the peak of the
// last chunk of every run and of decoding.
func globalStats(rs []run, response int, s float64, kvWindow int) (float64, []float64) {
	var entries float64
	var peaks []float64
	past := 0
	for _, r := range rs {
		kn := kept(r.n, s, kvWindow)
		entries += float64(r.k)*causal(r.n) + float64(r.n)*(float64(r.k)*float64(past)+float64(kn)*float64(r.k)*float64(r.k-1)/2)
		peaks = append(peaks, float64(past+(r.k-1)*kn+r.n))
		past += r.k * kn
	}
	entries += causal(response) + float64(past)*float64(response)
	return entries, append(peaks, float64(past+response))
}

// Analytic is get_kv_footprint: h·streaming + (1−h)·global over full causal attention.
func Analytic(p Params) (Result, error) {
	if err := p.check(); err != nil {
		return Result{}, err
	}
	se, sp := streamingStats(p)
	ge, gp := globalStats(chunks(p.Prompt, p.Chunk), p.Response, p.KVSparsity, p.KVWindow)
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

// Locret is get_kv_footprint_locret (docs/METHODS.md §1.6): chunks of C over
// P−localLen, then one chunk of localLen; each keeps min(round((1−s)·n) + stabilizers, n).
func Locret(prompt, response, chunk int, sparsity float64, localLen, stabilizers int) (Result, error) {
	p := Params{Prompt: prompt, Response: response, Chunk: chunk, KVSparsity: sparsity, KVWindow: stabilizers}
	if err := p.check(); err != nil || localLen < 0 {
		return Result{}, fmt.Errorf("footprint: locret: prompt %d, response %d, local %d, sparsity %g, stabilizers %d: want prompt ≥ 1, 0 ≤ sparsity ≤ 1, local ≥ 0, stabilizers ≥ 0, every length at most 2^26",
			prompt, response, localLen, sparsity, stabilizers)
	}
	rs := []run{{0, prompt, 1}}
	if localLen < prompt {
		rs = append(chunks(prompt-localLen, chunk), run{prompt - localLen, localLen, 1})
	}
	entries, peaks := globalStats(rs, response, sparsity, stabilizers)
	return Result{
		Footprint: entries / causal(prompt+response),
		Peak:      slices.Max(peaks) / float64(prompt+response),
	}, nil
}

// Mean is calculate_kv_statistics: the mean over samples of the per-sample footprint
// and peak (a mean of ratios, docs/METHODS.md §1.7).
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
