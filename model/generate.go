package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// Sampling chooses the next token from logits. Temperature 0 is greedy (argmax).
// Otherwise logits are divided by Temperature, cut to the TopK largest (0: all) and
// then to the smallest set whose probability reaches TopP (0 or 1: all), in the
// order transformers applies them, and a token is drawn with a PCG seeded by Seed.
type Sampling struct {
	Temperature float64
	TopK        int
	TopP        float64
	Seed        uint64
}

// Sampler draws tokens; it holds its buffers so that sampling allocates nothing.
type Sampler struct {
	s     Sampling
	rng   *rand.Rand
	idx   []int32
	probs []float64
}

// NewSampler returns a sampler for logits of vocab entries.
func NewSampler(s Sampling, vocab int) (*Sampler, error) {
	switch {
	case s.Temperature < 0 || math.IsNaN(s.Temperature):
		return nil, fmt.Errorf("sampling: temperature %g, want ≥ 0", s.Temperature)
	case s.TopK < 0:
		return nil, fmt.Errorf("sampling: top-k %d, want ≥ 0", s.TopK)
	case s.TopP < 0 || s.TopP > 1 || math.IsNaN(s.TopP):
		return nil, fmt.Errorf("sampling: top-p %g, want in [0, 1]", s.TopP)
	}
	sm := &Sampler{s: s, rng: rand.New(rand.NewPCG(s.Seed, 0x73616d706c65))}
	if s.Temperature > 0 {
		sm.idx = make([]int32, vocab)
		sm.probs = make([]float64, vocab)
	}
	return sm, nil
}

// Sample returns the chosen token id.
func (sm *Sampler) Sample(logits []float32) int {
	if sm.s.Temperature == 0 {
		best := 0
		for i, v := range logits {
			if v > logits[best] {
				best = i
			}
		}
		return best
	}
	top := logits[0]
	for _, v := range logits {
		top = max(top, v)
	}
	probs := sm.probs[:len(logits)]
	var sum float64
	for i, v := range logits {
		probs[i] = math.Exp(float64(v-top) / sm.s.Temperature)
		sum += probs[i]
	}
	k, p := sm.s.TopK, sm.s.TopP
	if (k == 0 || k >= len(logits)) && (p == 0 || p == 1) {
		return sm.draw(probs, nil, sum)
	}
	// Only candidates need sorting. Without top-k, a token below (1−p)/vocab of the
	// mass is never in the nucleus: all such tokens together hold less than 1−p.
	floor := 0.0
	if k == 0 || k >= len(logits) {
		floor = (1 - p) / float64(len(logits)) * sum
	}
	idx := sm.idx[:0]
	for i, q := range probs {
		if q >= floor {
			idx = append(idx, int32(i))
		}
	}
	slices.SortFunc(idx, func(a, b int32) int {
		switch {
		case probs[a] > probs[b]:
			return -1
		case probs[a] < probs[b]:
			return 1
		}
		return int(a - b)
	})
	if k > 0 && k < len(idx) {
		idx = idx[:k]
	}
	sum = 0
	for _, id := range idx {
		sum += probs[id]
	}
	if p > 0 && p < 1 {
		var cum float64
		for i, id := range idx {
			cum += probs[id]
			if cum >= p*sum {
				idx, sum = idx[:i+1], cum
				break
			}
		}
	}
	return sm.draw(probs, idx, sum)
}

// draw picks a token with probability proportional to probs among idx (nil: all),
// whose probs add up to sum.
func (sm *Sampler) draw(probs []float64, idx []int32, sum float64) int {
	u := sm.rng.Float64() * sum
	if idx == nil {
		for i, q := range probs {
			if u -= q; u < 0 {
				return i
			}
		}
		// rounding left u ≥ 0: the last token that can be drawn
		i := len(probs) - 1
		for i > 0 && probs[i] == 0 {
			i--
		}
		return i
	}
	for _, id := range idx {
		if u -= probs[id]; u < 0 {
			return int(id)
		}
	}
	return int(idx[len(idx)-1])
}

// GenerateOptions control Generate.
type GenerateOptions struct {
	MaxTokens int      // tokens to generate at most
	Chunk     int      // pre-fill chunk size; 0 feeds the whole prompt at once
	Sampling  Sampling // zero value: greedy
	Stop      []int    // generation ends after any of these ids (which is kept in the result)
	// DecodeLast pre-fills all but the prompt's last token and feeds that one as the
	// first decode step, as the paper's harness does (docs/METHODS.md §4.1, §6.5).
	DecodeLast bool
	// OnToken, when set, is called with each generated id as soon as it is chosen;
	// returning false ends generation.
	OnToken func(id int) bool
}

// Result is the outcome of Generate.
type Result struct {
	IDs          []int         // the generated ids, without the prompt
	StopReason   string        // "stop" (a stop id), "length" (MaxTokens) or "callback"
	PromptTokens int           //
	Prefill      time.Duration // time to feed the prompt and sample the first token
	Decode       time.Duration // time for the remaining tokens
}

// Generate feeds prompt into cache in chunks and then decodes up to MaxTokens
// tokens, one step of one token at a time.
func Generate(m *Model, cache Cache, prompt []int, opts GenerateOptions) (Result, error) {
	chunk := opts.Chunk
	if chunk <= 0 || chunk > len(prompt) {
		chunk = len(prompt)
	}
	r := NewRunner(m, chunk+cache.PatchLen())
	defer r.Close() // on a GPU its buffers are device memory, which the collector does not free
	return r.Generate(cache, prompt, opts)
}

// Generate is the package-level Generate on an existing Runner's buffers.
func (r *Runner) Generate(cache Cache, prompt []int, opts GenerateOptions) (Result, error) {
	res := Result{PromptTokens: len(prompt)}
	if len(prompt) == 0 {
		return res, fmt.Errorf("generate: empty prompt")
	}
	if opts.MaxTokens < 0 {
		return res, fmt.Errorf("generate: max tokens %d, want ≥ 0", opts.MaxTokens)
	}
	if opts.Chunk < 0 {
		return res, fmt.Errorf("generate: chunk %d, want ≥ 0", opts.Chunk)
	}
	if ctx := r.m.Config.MaxPositions; ctx > 0 && cache.Pos()+len(prompt)+max(opts.MaxTokens-1, 0) > ctx {
		return res, fmt.Errorf("generate: a prompt of %d tokens and %d new tokens need %d positions, past the model's context of %d",
			len(prompt), opts.MaxTokens, cache.Pos()+len(prompt)+max(opts.MaxTokens-1, 0), ctx)
	}
	sm, err := NewSampler(opts.Sampling, r.m.Config.Vocab)
	if err != nil {
		return res, err
	}
	start := time.Now()
	pre := prompt
	if opts.DecodeLast && len(prompt) > 1 {
		pre = prompt[:len(prompt)-1]
	}
	logits, err := r.Prefill(cache, pre, PrefillOptions{Chunk: opts.Chunk})
	if err != nil {
		return res, err
	}
	if len(pre) < len(prompt) {
		if logits, err = r.Decode(cache, prompt[len(prompt)-1]); err != nil {
			return res, err
		}
	}
	res.Prefill = time.Since(start)
	// capacity for the usual lengths up front, so that decoding does not allocate;
	// a huge MaxTokens grows the slice instead of reserving it
	res.IDs = make([]int, 0, min(opts.MaxTokens, 1<<16))
	res.StopReason = "length"
	for len(res.IDs) < opts.MaxTokens {
		if len(res.IDs) > 0 {
			if logits, err = r.Decode(cache, res.IDs[len(res.IDs)-1]); err != nil {
				return res, err
			}
		}
		if err := CheckFinite(logits, cache.Pos()-1); err != nil {
			return res, fmt.Errorf("generate: %w", err)
		}
		id := sm.Sample(logits)
		res.IDs = append(res.IDs, id)
		if len(res.IDs) == 1 {
			res.Prefill = time.Since(start)
			start = time.Now()
		}
		if opts.OnToken != nil && !opts.OnToken(id) {
			res.StopReason = "callback"
			break
		}
		if slices.Contains(opts.Stop, id) {
			res.StopReason = "stop"
			break
		}
	}
	if len(res.IDs) > 0 {
		res.Decode = time.Since(start)
	}
	return res, nil
}

// CheckFinite reports the first NaN or infinite logit of the token at position pos.
func CheckFinite(logits []float32, pos int) error {
	for i, v := range logits {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("logit %d of the token at position %d is %v", i, pos, v)
		}
	}
	return nil
}

// PrefillOptions control Prefill.
type PrefillOptions struct {
	Chunk int  // tokens per pre-fill forward; 0 feeds the whole prompt at once
	All   bool // pass every position's logits to OnChunk, not only the chunk's last
	// OnChunk, when set, is called after each chunk with the prompt offset of its
	// first token and its logits ([tokens, vocab] with All, else [vocab]), valid
	// until the next forward; an error stops the pre-fill.
	OnChunk func(lo int, logits []float32) error
}

// Prefill feeds prompt into cache, continuing at cache.Pos(), in chunks, and returns
// the logits of its last token. When the cache asks for a patch (PatchLen), every
// non-final chunk is fed with the prompt's last tokens appended at the positions
// right after it (all of the prompt when it is shorter than the patch). This is the
// one pre-fill loop of kvfoot: generation, logits, perplexity, the benchmarks and
// the evaluation all go through it.
func (r *Runner) Prefill(cache Cache, prompt []int, opts PrefillOptions) ([]float32, error) {
	if len(prompt) == 0 {
		return nil, fmt.Errorf("prefill: empty prompt")
	}
	if opts.Chunk < 0 {
		return nil, fmt.Errorf("prefill: chunk %d, want ≥ 0", opts.Chunk)
	}
	plan := PlanChunks(len(prompt), opts.Chunk, cache.LocalChunk())
	patch := min(cache.PatchLen(), len(prompt))
	var logits []float32
	for lo, hi := 0, 0; lo < len(prompt); lo = hi {
		hi = plan.End(lo)
		step := Step{Pos: cache.Pos(), Rows: hi - lo, Prefill: true, Final: hi == len(prompt)}
		ids := prompt[lo:hi]
		if patch > 0 && !step.Final {
			r.ids = append(append(r.ids[:0], ids...), prompt[len(prompt)-patch:]...)
			ids = r.ids
			step.Rows, step.Patch = len(ids), patch
		}
		var err error
		if logits, err = r.Forward(cache, ids, step, opts.All); err != nil {
			return nil, err
		}
		if opts.OnChunk != nil {
			if err := opts.OnChunk(lo, logits); err != nil {
				return nil, err
			}
		}
	}
	if opts.All {
		logits = logits[len(logits)-r.m.Config.Vocab:]
	}
	return logits, nil
}

// Chunks is a pre-fill's plan: chunks of at most Chunk tokens, except that a cache's
// local final chunk (Cache.LocalChunk: Locret's, which the harness pre-fills last)
// makes the prompt's last tokens a chunk of their own. It is the one chunk planner of
// kvfoot: Prefill and the server's ticks both follow it.
type Chunks struct{ n, chunk, body int }

// PlanChunks plans a pre-fill of n tokens in chunks of chunk (0: all at once) with a
// local final chunk of tail tokens (0: none; tail ≥ n: none either).
func PlanChunks(n, chunk, tail int) Chunks {
	body := n
	if tail > 0 && tail < n {
		body -= tail
	}
	if chunk <= 0 || chunk > body {
		chunk = body
	}
	return Chunks{n: n, chunk: chunk, body: body}
}

// End is the end of the chunk that starts at lo.
func (c Chunks) End(lo int) int {
	if lo >= c.body {
		return c.n
	}
	return min(lo+c.chunk, c.body)
}

// Decode feeds one token as a decode step and returns its logits ([vocab]).
func (r *Runner) Decode(cache Cache, id int) ([]float32, error) {
	r.decodeID[0] = id
	return r.Forward(cache, r.decodeID[:], Step{Pos: cache.Pos(), Rows: 1}, false)
}
