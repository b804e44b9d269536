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
func Exact(p Params) (Result, error) {
	if err := p.checkExact(); err != nil {
		return Result{}, err
	}
	se, sp := exactStreaming(p)
	layers := max(p.Layers, 1)
	var ge float64
	gp := make([]float64, len(sp))
	for l := range layers {
		e, pk := exactGlobal(p, l)
		ge += e / float64(layers)
		for i := range pk {
			gp[i] += pk[i] / float64(layers)
		}
	}
	total := p.Prompt + p.Response
	full := causal(total)
	h := p.HeadSparsity
	r := Result{Footprint: se/full*h + ge/full*(1-h)}
	peak := 0.0
	for i := range sp {
		peak = max(peak, h*sp[i]+(1-h)*gp[i])
	}
	r.Peak = peak / float64(total)
	return r, nil
}

func (p Params) checkExact() error {
	q := p
	q.Prompt = max(p.Prompt, 1) // Exact allows an empty pre-fill (a one-token prompt is decoded)
	if err := q.check(); err != nil {
		return err
	}
	if p.Prompt < 0 || p.Prompt+p.Response < 1 || p.Layers < 0 || p.Layers > 1<<12 || p.Beta < 0 {
		return fmt.Errorf("footprint: %+v: want prompt ≥ 0, prompt+response ≥ 1, 0 ≤ layers ≤ 4096, beta ≥ 0", p)
	}
	return nil
}

// exactStreaming counts the streaming heads: a chunk sees the sink and window kept
// before it plus itself causally; decoding likewise, one token at a time.
func exactStreaming(p Params) (float64, []float64) {
	var entries float64
	var peaks []float64
	b := boundaries(p.Prompt, p.Chunk)
	for i := 0; i+1 < len(b); i++ {
		a, n := b[i], b[i+1]-b[i]
		local := min(a, p.Window)
		sink := min(a-local, p.Sink)
		entries += causal(n) + float64(n*(local+sink))
		peaks = append(peaks, float64(n+local+sink))
	}
	if p.Response > 0 {
		// decode step t sees min(t, S+W) older entries and itself
		entries += float64(p.Response) + sumMin(p.Prompt, 1, p.Response, p.Sink+p.Window)
		peaks = append(peaks, float64(1+min(p.Prompt+p.Response-1, p.Sink+p.Window)))
	}
	return entries, peaks
}

// boundaries are np.arange(0, P, C) + [P]: the starts of the pre-fill chunks and the end.
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

// exactGlobal counts the global heads of one layer.
func exactGlobal(p Params, layer int) (float64, []float64) {
	var entries float64
	var peaks []float64
	past := 0
	b := boundaries(p.Prompt, p.Chunk)
	for i := 0; i+1 < len(b); i++ {
		n := b[i+1] - b[i]
		entries += causal(n) + float64(past*n)
		peaks = append(peaks, float64(past+n))
		final := i+2 == len(b)
		switch {
		case p.PostFill && final:
			past = p.cluster(past+n, PostFillCapacity(p.KVSparsity, p.Prompt+1, p.KVWindow), layer)
		case p.PostFill:
			past += n
		case p.Patch && !final:
			w := p.KVWindow
			past += p.cluster(n+w, ChunkCapacity(p.KVSparsity, n)+w, layer) - w
		default:
			past += p.cluster(n, ChunkCapacity(p.KVSparsity, n), layer)
		}
	}
	if p.Response > 0 {
		entries += causal(p.Response) + float64(past*p.Response)
		peaks = append(peaks, float64(past+p.Response))
	}
	return entries, peaks
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
	b := []int{0}
	switch {
	case prompt == 0:
	case localLen >= prompt:
		b = append(b, prompt)
	default:
		b = append(boundaries(prompt-localLen, chunk), prompt)
	}
	var entries float64
	peak, past := 0.0, 0
	for i := 0; i+1 < len(b); i++ {
		n := b[i+1] - b[i]
		entries += causal(n) + float64(past*n)
		peak = max(peak, float64(past+n))
		past = min(LocretBudget(sparsity, b[i+1], stabilizers), past+n)
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
