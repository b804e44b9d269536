package footprint

import "fmt"

// Exact is the footprint of what the paper's evaluation harness really runs and keeps
// (docs/METHODS.md §1.10, 4.1, 4.3, 5.2, 5.3); Analytic is the published formula that
// approximates it. Exact's lengths are the tokens fed, as the Meter counts them:
// Prompt tokens pre-filled and Response tokens decoded. The harness pre-fills every
// prompt token but the last and decodes that one first, so a harness sample with
// input_len L and output_len R is Exact with Prompt L−1 and Response R.
//
// Where it differs from Analytic:
//   - a chunk of n tokens has the capacity cap = int((1−s)·n), window w included: it
//     keeps min(max(cap, w), n) (a cap at or below the window keeps the window); with
//     Patch, a non-final chunk keeps exactly cap (the patch plays the window's part);
//   - PostFill: nothing is evicted during pre-fill; after the last chunk the cache keeps
//     ceil64(max(int((1−s)·(Prompt+1)), w)) of the Prompt entries (the harness's
//     unchunked capacity, sized by the whole prompt, last token included);
//   - Layers > 1: PyramidKV's per-layer budgets from the same capacity (docs/METHODS.md
//     §5.3), averaged over layers;
//   - the decode phase counts its largest step, and there is no decode phase without
//     decoded tokens (the published formula's last-step and R = 0 quirks).
//
// It walks the chunks once with O(Layers) memory (a one-token chunk size makes
// Prompt chunks).
func Exact(p Params) (Result, error) {
	if err := p.checkExact(); err != nil {
		return Result{}, err
	}
	layers := max(p.Layers, 1)
	h := p.HeadSparsity
	var se float64                // the streaming heads' entries
	ge := make([]float64, layers) // each layer's global heads' entries
	past := make([]int, layers)   // each layer's global entries kept
	peak := 0.0
	// step counts a pre-fill chunk or the decode phase: sp is the streaming heads'
	// largest step, and the global heads see their kept entries and n new ones.
	step := func(sp float64, n int, keep func(l int)) {
		gp := 0.0
		for l := range layers {
			ge[l] += causal(n) + float64(past[l]*n)
			gp += float64(past[l]+n) / float64(layers)
			if keep != nil {
				keep(l)
			}
		}
		peak = max(peak, h*sp+(1-h)*gp)
	}
	eachChunk(p.Prompt, p.Chunk, func(a, n int, final bool) {
		// a chunk sees the sink and window kept before it plus itself causally
		local := min(a, p.Window)
		sink := min(a-local, p.Sink)
		se += causal(n) + float64(n*(local+sink))
		step(float64(n+local+sink), n, func(l int) { past[l] = p.keep(past[l], n, final, l) })
	})
	if p.Response > 0 {
		// decode step t sees min(t, S+W) older entries and itself
		se += float64(p.Response) + sumMin(p.Prompt, 1, p.Response, p.Sink+p.Window)
		step(float64(1+min(p.Prompt+p.Response-1, p.Sink+p.Window)), p.Response, nil)
	}
	var g float64
	for _, e := range ge {
		g += e / float64(layers)
	}
	full := causal(p.Prompt + p.Response)
	return Result{Footprint: se/full*h + g/full*(1-h), Peak: peak / float64(p.Prompt+p.Response)}, nil
}

func (p Params) checkExact() error {
	q := p
	q.Prompt = max(p.Prompt, 1) // Exact allows an empty pre-fill (a one-token prompt is decoded)
	if err := q.check(); err != nil {
		return err
	}
	switch {
	case p.Prompt < 0:
		return fmt.Errorf("footprint: prompt %d: want ≥ 0", p.Prompt)
	case p.Prompt+p.Response < 1:
		return fmt.Errorf("footprint: prompt %d + response %d: want at least one token", p.Prompt, p.Response)
	case p.Layers < 0 || p.Layers > MaxLayers:
		return fmt.Errorf("footprint: layers %d: want 0 to %d", p.Layers, MaxLayers)
	case p.Beta < 0:
		return fmt.Errorf("footprint: beta %d: want ≥ 0 (0: 20)", p.Beta)
	}
	return nil
}

// MaxLayers bounds Params.Layers.
const MaxLayers = 1 << 12

// eachChunk calls f with the start, length and finality of every pre-fill chunk of
// np.arange(0, P, C) + [P], in order, without making the list.
func eachChunk(p, c int, f func(a, n int, final bool)) {
	if c <= 0 {
		c = p
	}
	for a := 0; a < p; a += c {
		n := min(c, p-a)
		f(a, n, a+n == p)
	}
}

// keep is how many global entries a layer keeps after a pre-fill chunk of n tokens,
// past kept before it.
func (p Params) keep(past, n int, final bool, layer int) int {
	switch {
	case p.PostFill && final:
		return p.cluster(past+n, PostFillCapacity(p.KVSparsity, p.Prompt+1, p.KVWindow), layer)
	case p.PostFill:
		return past + n
	case p.Patch && !final:
		w := p.KVWindow
		return past + p.cluster(n+w, ChunkCapacity(p.KVSparsity, n)+w, layer) - w
	}
	return past + p.cluster(n, ChunkCapacity(p.KVSparsity, n), layer)
}

// ChunkCapacity is the harness's capacity for a pre-fill chunk of n tokens at KV
// sparsity s: int((1−s)·n), window included (docs/METHODS.md §4.3).
func ChunkCapacity(s float64, n int) int { return int((1 - s) * float64(n)) }

// PostFillCapacity is the harness's capacity for an unchunked pre-fill of a prompt of
// promptLen tokens: int((1−s)·promptLen), at least the window, rounded up to a
// multiple of 64 (docs/METHODS.md §4.3).
func PostFillCapacity(s float64, promptLen, window int) int {
	c := max(int((1-s)*float64(promptLen)), window)
	return (c + 63) / 64 * 64
}

// cluster is how many of q tokens the SnapKV (Layers ≤ 1) or PyramidKV cluster keeps
// at capacity capacity in layer (docs/METHODS.md §5.2, 5.3).
func (p Params) cluster(q, capacity, layer int) int {
	w := p.KVWindow
	beta := p.Beta
	if beta == 0 {
		beta = 20
	}
	if p.Layers > 1 {
		return PyramidKept(q, capacity, w, layer, p.Layers, beta)
	}
	return SnapKVKept(q, capacity, w)
}

// SnapKVKept is what SnapKV's cluster keeps of q tokens at capacity c with window w:
// everything if q < c, the window alone if c ≤ w, else the top c−w and the window.
func SnapKVKept(q, c, w int) int {
	switch {
	case q < c:
		return q
	case c <= w:
		return min(w, q)
	}
	return min(c-w, q-w) + w
}

// PyramidKept is what PyramidKV's cluster keeps of q tokens at capacity c with window
// w in layer of layers, with β = beta: SnapKV's amount while q < 2(c−w), else the
// layer's budget of a schedule falling linearly from the first layer to the last.
func PyramidKept(q, c, w, layer, layers, beta int) int {
	switch {
	case q < c:
		return q
	case q < 2*(c-w):
		return SnapKVKept(q, c, w)
	case c <= w:
		return min(w, q)
	}
	return min(PyramidBudget(q, c, w, layer, layers, beta), q-w) + w
}

// PyramidBudget is PyramidKV's budget (window excluded) of layer for q tokens at
// capacity c, window w (docs/METHODS.md §5.3, floor divisions as in Python):
//
//	min = (c−w) // β;  max = 2(c−w) − min
//	if max ≥ q−w: max = q−w; min = 2(c−w) − max
//	budget = max − layer · ((max−min) // (layers−1))
func PyramidBudget(q, c, w, layer, layers, beta int) int {
	lo := floorDiv(c-w, beta)
	hi := 2*(c-w) - lo
	if hi >= q-w {
		hi = q - w
		lo = 2*(c-w) - hi
	}
	steps := floorDiv(hi-lo, max(layers-1, 1))
	return max(0, hi-layer*steps)
}

func floorDiv(a, b int) int {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// LocretExact is Locret as the harness runs it (docs/METHODS.md §4.1, 4.3, 5.6), lengths
// as in Exact (prompt pre-filled, response decoded): chunks of chunk over the first
// prompt−localLen tokens, then one chunk of localLen (one chunk if localLen ≥ prompt);
// after the chunk ending at e the cache keeps min(budget, entries held) with
// budget = max(ceil64(int((1−s)·e)), stabilizers), a budget over everything seen so
// far (Locret's published formula adds round((1−s)·n) + stabilizers per chunk).
func LocretExact(prompt, response, chunk int, sparsity float64, localLen, stabilizers int) (Result, error) {
	if prompt < 0 || response < 0 || prompt+response < 1 || localLen < 0 || stabilizers < 0 || !(sparsity >= 0 && sparsity <= 1) {
		return Result{}, fmt.Errorf("footprint: locret: prompt %d, response %d, local %d, stabilizers %d, sparsity %g: "+
			"want prompt, response, local, stabilizers ≥ 0, prompt+response ≥ 1, 0 ≤ sparsity ≤ 1", prompt, response, localLen, stabilizers, sparsity)
	}
	var entries float64
	peak, past := 0.0, 0
	prefill := func(a, n int) {
		entries += causal(n) + float64(past*n)
		peak = max(peak, float64(past+n))
		past = min(LocretBudget(sparsity, a+n, stabilizers), past+n)
	}
	switch {
	case prompt == 0:
	case localLen >= prompt:
		prefill(0, prompt)
	default:
		eachChunk(prompt-localLen, chunk, func(a, n int, _ bool) { prefill(a, n) })
		prefill(prompt-localLen, localLen)
	}
	if response > 0 {
		entries += causal(response) + float64(past*response)
		peak = max(peak, float64(past+response))
	}
	total := prompt + response
	return Result{Footprint: entries / causal(total), Peak: peak / float64(total)}, nil
}

// LocretBudget is the harness's Locret budget after seen pre-filled tokens:
// int((1−s)·seen) rounded up to a multiple of 64, at least stabilizers.
func LocretBudget(s float64, seen, stabilizers int) int {
	return max((int((1-s)*float64(seen))+63)/64*64, stabilizers)
}
