package kv

// streaming is StreamingLLM: every KV head keeps the first sink entries and the
// window most recent ones, trimmed after each forward, so a chunk's queries see
// sink + window + the chunk causally (method-spec 6.4; the first chunk is full
// attention). Spec: streaming:sink=S,window=W (defaults 128 and 1024, the paper's
// evaluation settings).
type streaming struct{ sink, window int }

func init() {
	register("streaming", kindSelector, []string{"sink", "window"}, func(o opts) (any, error) {
		return parseStreaming(o)
	})
}

func parseStreaming(o opts) (streaming, error) {
	sink, err := o.int("sink", 128, 0, 1<<30)
	if err != nil {
		return streaming{}, err
	}
	window, err := o.int("window", 1024, 0, 1<<30)
	if err != nil {
		return streaming{}, err
	}
	return streaming{sink, window}, nil
}

func (streaming) Scores(*Forward) ScoreRequest { return ScoreRequest{} }

func (p streaming) Keep(f *Forward) []int { return f.keepSinkWindow(p.sink, p.window) }
