package kv

// streaming is StreamingLLM: every KV head keeps the first sink entries and the
// window most recent ones, trimmed after each forward, so a chunk's queries see
// sink + window + the chunk causally (docs/METHODS.md §6.4; the first chunk is full
// attention). Spec: streaming:sink=S,window=W (defaults 128 and 1024, the paper's
// evaluation settings).
type streaming struct{ sink, window int }

// sinkWindowParams are the keys of a streaming head, shared with headmask.
var sinkWindowParams = []Param{
	{Key: "sink", Type: Int, Default: "128", Min: 0, Max: 1 << 30, Doc: "first entries every streaming head keeps"},
	{Key: "window", Type: Int, Default: "1024", Min: 0, Max: 1 << 30, Doc: "most recent entries every streaming head keeps"},
}

func init() {
	mustAdd(Registration{Name: "streaming", Kind: Selector, Example: "streaming:sink=128,window=1024",
		Doc: "StreamingLLM: every head keeps an attention sink and a recent window", Params: sinkWindowParams,
		NewSelector: func(a Args) (Policy, error) { return newStreaming(a), nil }})
}

func newStreaming(a Args) streaming {
	return streaming{a.Int("sink"), a.Int("window")}
}

func (streaming) Scores(*Forward) ScoreRequest { return ScoreRequest{} }

func (p streaming) Keep(f *Forward) []int { return f.keepSinkWindow(p.sink, p.window) }

func (p streaming) dropRun(f *Forward) (lo, hi int, ok bool) {
	lo, hi = f.sinkWindowRun(p.sink, p.window)
	return lo, hi, true
}
