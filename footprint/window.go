package footprint

// NativeWindow is the footprint and peak of a model's own sliding-window layer over
// total tokens: its query at position t sees the min(t + 1, window) most recent tokens
// (transformers' sliding-window mask), whatever the pre-fill chunking.
func NativeWindow(total, window int) Result {
	w := min(window, total)
	return Result{Footprint: sumMin(1, 1, total, w) / causal(total), Peak: float64(w) / float64(total)}
}

// WithLocalLayers is the footprint and peak of a model whose layers l with windows[l]
// > 0 are local: r (a method's, computed for global layers) on its global layers, and
// on each local layer the lesser of r and the layer's NativeWindow (exact for full
// attention, which sees everything the window allows; a bound for other methods, which
// cannot make a local layer see more than its window), averaged over layers. Without
// local layers it is r.
func WithLocalLayers(r Result, total int, windows []int) Result {
	if len(windows) == 0 {
		return r
	}
	var out Result
	for _, w := range windows {
		l := r
		if w > 0 {
			n := NativeWindow(total, w)
			l = Result{Footprint: min(r.Footprint, n.Footprint), Peak: min(r.Peak, n.Peak)}
		}
		out.Footprint += l.Footprint / float64(len(windows))
		out.Peak += l.Peak / float64(len(windows))
	}
	return out
}
