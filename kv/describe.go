package kv

import (
	"fmt"
	"math"

	"github.com/kvfoot/kvfoot/footprint"
)

// Facts is everything the rest of kvfoot asks about a policy for one model: the
// server's admission, the evaluation, the chunk planner and generate read them here
// and never switch on a policy's name or copy its formulas. Each policy answers for
// itself (an optional method on its type); compositions forward to their parts; a
// policy added in one file without those methods gets safe answers (its peak bounded
// by full attention's, no patch, no local chunk).
type Facts struct {
	Spec        string
	StoredHeads int       // heads stored per layer: the KV heads, or the query heads when expanded
	PatchLen    int       // prompt tokens appended to every non-final pre-fill chunk
	LocalChunk  int       // prompt tokens pre-filled last as a chunk of their own
	Precision   Precision // how entries are stored
	// Streaming are the model's (layer, KV head)s that a head role makes streaming;
	// nil without one.
	Streaming [][]bool
	Files     []FileArg // the files the spec reads

	shape Shape // the model's
	pol   Policy
}

// FileArg is a spec key whose value is a file.
type FileArg struct{ Policy, Key, Name string }

// Workload is what a request feeds a cache: a prompt pre-filled in chunks of Chunk
// (0: at once), then up to MaxTokens generated (the last of which is never fed).
type Workload struct{ Prompt, MaxTokens, Chunk int }

// bounder is implemented by selectors that bound the entries a stored head holds at
// any moment more tightly than full attention does (the mean over layers of the
// per-head bound, rounded up).
type bounder interface {
	peakEntries(s Shape, w Workload) (int64, error)
}

// Describe parses spec for a model of shape s, reading the files it names as New
// would (WithDir), and returns its facts.
func Describe(s Shape, spec string, options ...Option) (*Facts, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	var cfg config
	for _, o := range options {
		o(&cfg)
	}
	parts, err := parseSpec(spec)
	if err != nil {
		return nil, fmt.Errorf("kv: policy %q: %w", spec, err)
	}
	pol, prec, err := compose(parts, s, cfg)
	if err != nil {
		return nil, fmt.Errorf("kv: policy %q: %w", spec, err)
	}
	f := &Facts{Spec: spec, StoredHeads: s.KVHeads, Precision: prec, shape: s, pol: pol}
	if e, ok := pol.(expander); ok && e.expand() {
		f.StoredHeads = s.Heads
	}
	if p, ok := pol.(patcher); ok {
		f.PatchLen = p.patchLen()
	}
	f.LocalChunk = localChunk(pol)
	if h, ok := pol.(*headmask); ok {
		f.Streaming = h.stream
	}
	f.Files = files(parts)
	return f, nil
}

// Files lists the files spec names, without reading them: a server checks them
// against what it may read before anything opens them.
func Files(spec string) ([]FileArg, error) {
	parts, err := parseSpec(spec)
	if err != nil {
		return nil, fmt.Errorf("kv: policy %q: %w", spec, err)
	}
	return files(parts), nil
}

func files(parts []part) []FileArg {
	var out []FileArg
	for _, p := range parts {
		for _, q := range p.reg.Params {
			if v, ok := p.vals[q.Key]; ok && q.Type == File {
				out = append(out, FileArg{p.reg.Name, q.Key, v.s})
			}
		}
	}
	return out
}

func localChunk(pol Policy) int {
	if h, ok := pol.(*headmask); ok {
		pol = h.inner
	}
	if l, ok := pol.(interface{ localChunk() int }); ok {
		return l.localChunk()
	}
	return 0
}

// StreamingCount is the number of (layer, KV head)s a head role makes streaming.
func (f *Facts) StreamingCount() int {
	n := 0
	for _, row := range f.Streaming {
		for _, s := range row {
			if s {
				n++
			}
		}
	}
	return n
}

// PeakBytes bounds the bytes the cache holds at any moment of w: for every stored
// head, a bound on its entries (its selector's, or sink+window for a head a role
// makes streaming) times its storage's bytes; patch rows, which sit in the cache
// during their forward, are added. The bound is the meter's peak exactly for full
// attention, streaming heads, SnapKV and PyramidKV (tested) on global layers; a local
// layer's heads hold at most its window − 1 entries plus one forward's rows.
func (f *Facts) PeakBytes(w Workload) (int64, error) {
	if w.Prompt < 1 || w.MaxTokens < 0 || w.Chunk < 0 {
		return 0, fmt.Errorf("kv: workload %+v: want a prompt ≥ 1, max tokens ≥ 0, chunk ≥ 0", w)
	}
	if w.Chunk == 0 || w.Chunk > w.Prompt {
		w.Chunk = w.Prompt
	}
	s := f.shape
	total := int64(w.Prompt + max(w.MaxTokens-1, 0))
	sel := f.pol
	if h, ok := sel.(*headmask); ok {
		sel = h.inner
	}
	global := total
	if b, ok := sel.(bounder); ok {
		e, err := b.peakEntries(s, w)
		if err != nil {
			return 0, fmt.Errorf("kv: policy %q: %w", f.Spec, err)
		}
		global = min(e, total)
	}
	rep := int64(f.StoredHeads / s.KVHeads)
	var stream int64
	if f.StreamingCount() > 0 {
		h := f.pol.(*headmask)
		var err error
		if stream, err = h.streaming.peakEntries(s, w); err != nil {
			return 0, fmt.Errorf("kv: policy %q: %w", f.Spec, err)
		}
	}
	// every head holds the patch rows during a non-final chunk, and appends total
	// tokens plus the patch of every non-final chunk over the generation
	patch := int64(f.PatchLen)
	appended := total + patch*int64((w.Prompt+w.Chunk-1)/w.Chunk-1)
	b := f.Precision.entryBytes(s.HeadDim, appended)
	var sum int64
	for l := range s.Layers {
		g, st := global, stream
		if win := int64(s.window(l)); win > 0 {
			// a local layer keeps win−1 entries between forwards and adds one forward's rows
			g, st = min(g, win-1+int64(w.Chunk)), min(st, win-1+int64(w.Chunk))
		}
		streamHeads := int64(0)
		if f.Streaming != nil {
			for _, on := range f.Streaming[l] {
				if on {
					streamHeads += rep
				}
			}
		}
		sum += (int64(s.KVHeads)*rep-streamHeads)*b(g+patch) + streamHeads*b(st+patch)
	}
	return sum, nil
}

// entryBytes returns the bytes a head of this precision holds with e entries,
// bounded for quantized storage: every entry's codes and value scales, one key group
// (head_dim minima and scales) per quantized entry but never more groups than the
// appended rows make, and a float32 residual of at most residual+group−1 rows.
func (p Precision) entryBytes(d int, appended int64) func(e int64) int64 {
	f32 := int64(8 * d)
	switch p.Name {
	case "bf16":
		return func(e int64) int64 { return e * int64(4*d) }
	case "quant":
	default:
		return func(e int64) int64 { return e * f32 }
	}
	bits, g, res := int64(p.Bits), int64(p.Group), int64(p.Residual)
	rowBytes := (int64(d)*bits + 7) / 8
	vGroups := (int64(d) + g - 1) / g
	return func(e int64) int64 {
		groups := min(e, (appended+g-1)/g)
		return e*(2*rowBytes+8*vGroups) + groups*f32 + min(e, res+g-1)*f32
	}
}

// analyticPeak is the paper's calculator's peak entries per head (footprint.Analytic)
// for w with the head parameters of p.
func analyticPeak(p footprint.Params, w Workload) (int64, error) {
	resp := max(w.MaxTokens-1, 0)
	p.Prompt, p.Response, p.Chunk = w.Prompt, resp, w.Chunk
	r, err := footprint.Analytic(p)
	if err != nil {
		return 0, err
	}
	return int64(math.Round(r.Peak * float64(w.Prompt+resp))), nil
}

// A sink or window longer than the whole sequence keeps all of it, as one of exactly
// its length does; the calculator takes lengths up to its own bound.
func (p streaming) peakEntries(_ Shape, w Workload) (int64, error) {
	total := w.Prompt + max(w.MaxTokens-1, 0)
	return analyticPeak(footprint.Params{Sink: min(p.sink, total), Window: min(p.window, total), HeadSparsity: 1}, w)
}

func (p *snapkv) peakEntries(s Shape, w Workload) (int64, error) {
	resp := max(w.MaxTokens-1, 0)
	fp := footprint.Params{Prompt: w.Prompt, Response: resp, Chunk: w.Chunk, KVSparsity: p.sparsity, KVWindow: min(p.window, w.Prompt+resp),
		PostFill: !p.chunked, Patch: p.patch > 0}
	if p.pyramid {
		fp.Layers, fp.Beta = s.Layers, p.beta
	}
	r, err := footprint.Exact(fp)
	if err != nil {
		return 0, err
	}
	// the mean over layers of PyramidKV's budgets, times the layers, is their sum
	return int64(math.Ceil(r.Peak*float64(w.Prompt+resp) - 1e-9)), nil
}

// h2o and tova hold at most their budget plus one forward's rows.
func (p *h2o) peakEntries(_ Shape, w Workload) (int64, error) {
	return int64(p.heavy + p.recent + w.Chunk), nil
}

func (p tova) peakEntries(_ Shape, w Workload) (int64, error) { return int64(p.budget + w.Chunk), nil }
