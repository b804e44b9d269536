package footprint

// Meter measures the KV footprint of one generation. A kv.Cache built with
// kv.WithObserver(meter) tells it about every attention call and every forward.
//
// Conventions (docs/METHODS.md §1.1):
//   - footprint = Σ over query tokens and KV heads of the entries the query attended to,
//     divided by the number of KV heads and by causal(prompt_len + response_len);
//   - peak = the most entries attended to by the last query of one forward, summed over
//     KV heads and divided by their number, over prompt_len + response_len; peak_bytes is
//     the most storage the cache really held at any moment (quantization scales
//     included);
//   - prompt_len counts the tokens fed during pre-fill (patch tokens excluded) and
//     response_len the tokens fed during decoding. A generation loop that pre-fills P
//     tokens and samples R tokens feeds R−1 of them (the last one is never fed), so its
//     response_len is R−1: with these two numbers the paper's get_kv_footprint gives
//     exactly the measured footprint for the policies it models.
type Meter struct {
	layers, kvHeads int

	entries     int64     // Σ attended entries over queries and heads
	perHead     [][]int64 // [layer][KV head]
	forward     int64     // Σ over heads of past+n in the forward in progress
	peakEntries int64
	peakBytes   int64
	prompt      int
	response    int
	steps       []Step
}

// Step is one forward in the timeline.
type Step struct {
	Pos     int   `json:"pos"`     // position of the forward's first token
	N       int   `json:"n"`       // tokens of the forward
	Prefill bool  `json:"prefill"` // pre-fill chunk (false: decode step)
	Visible int64 `json:"visible"` // entries seen by the forward's last query, summed over KV heads
	Entries int64 `json:"entries"` // entries held after the forward, summed over KV heads
	Bytes   int64 `json:"bytes"`   // storage held after the forward
}

// NewMeter returns a meter for a model with layers × kvHeads KV heads. A cache that
// stores more heads per layer (SnapKV's gqa=expand keeps one per query head) reports
// them all, and the meter counts every stored head: footprint and peak are then the
// mean over the stored heads, and the entries and bytes are what the cache holds.
func NewMeter(layers, kvHeads int) *Meter {
	m := &Meter{layers: layers, kvHeads: kvHeads, perHead: make([][]int64, layers)}
	for l := range m.perHead {
		m.perHead[l] = make([]int64, kvHeads)
	}
	return m
}

// Attended implements kv.Observer: a forward's queries of (layer, head) saw entries in
// all (past entries plus the chunk up to themselves, within a local layer's window),
// its last query last of them.
func (m *Meter) Attended(layer, head int, entries int64, last int) {
	if head >= m.kvHeads {
		m.kvHeads = head + 1
		for l := range m.perHead {
			m.perHead[l] = append(m.perHead[l], make([]int64, m.kvHeads-len(m.perHead[l]))...)
		}
	}
	m.entries += entries
	m.perHead[layer][head] += entries
	m.forward += int64(last)
}

// Step implements kv.Observer.
func (m *Meter) Step(n int, prefill bool, entries, bytes, peakBytes int64) {
	pos := m.prompt + m.response
	if prefill {
		m.prompt += n
	} else {
		m.response += n
	}
	m.peakEntries = max(m.peakEntries, m.forward)
	m.peakBytes = max(m.peakBytes, peakBytes)
	m.steps = append(m.steps, Step{Pos: pos, N: n, Prefill: prefill, Visible: m.forward, Entries: entries, Bytes: bytes})
	m.forward = 0
}

// Report is the meter's summary, as JSON.
type Report struct {
	Footprint   float64 `json:"footprint"`
	Peak        float64 `json:"peak"`
	PeakEntries float64 `json:"peak_entries"` // per KV head, mean over heads
	PeakBytes   int64   `json:"peak_bytes"`
	Heads       int     `json:"heads"` // stored heads per layer (the KV heads, or the query heads of an expanded cache)
	PromptLen   int     `json:"prompt_len"`
	ResponseLen int     `json:"response_len"`
	// Entries is the Σ of attended entries per KV head (mean over heads); FullEntries is
	// causal(prompt_len+response_len).
	Entries     float64     `json:"entries"`
	FullEntries float64     `json:"full_entries"`
	PerLayer    []float64   `json:"per_layer"`   // footprint of each layer
	PerHead     [][]float64 `json:"per_kv_head"` // footprint of each (layer, KV head)
	Timeline    []Step      `json:"timeline,omitempty"`
}

// Report summarises what the meter saw; timeline adds one row per forward.
func (m *Meter) Report(timeline bool) Report {
	heads := float64(m.layers * m.kvHeads)
	total := m.prompt + m.response
	full := causal(total)
	r := Report{
		PromptLen: m.prompt, ResponseLen: m.response,
		PeakEntries: float64(m.peakEntries) / heads, PeakBytes: m.peakBytes, Heads: m.kvHeads,
		Entries: float64(m.entries) / heads, FullEntries: full,
		PerLayer: make([]float64, m.layers), PerHead: make([][]float64, m.layers),
	}
	if total == 0 {
		return r
	}
	r.Footprint = r.Entries / full
	r.Peak = r.PeakEntries / float64(total)
	for l, row := range m.perHead {
		r.PerHead[l] = make([]float64, len(row))
		var sum int64
		for g, e := range row {
			r.PerHead[l][g] = float64(e) / full
			sum += e
		}
		r.PerLayer[l] = float64(sum) / float64(m.kvHeads) / full
	}
	if timeline {
		r.Timeline = m.steps
	}
	return r
}
