package server

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/kvfoot/kvfoot/footprint"
	"github.com/kvfoot/kvfoot/kv"
)

// specPart is one `name:key=value,...` of a policy spec the kv package accepted.
type specPart struct {
	name string
	kv   map[string]string
}

// splitSpec splits a spec that kv.New has accepted into its parts.
func splitSpec(spec string) []specPart {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		spec = "full"
	}
	var parts []specPart
	for _, s := range strings.Split(spec, "+") {
		name, args, _ := strings.Cut(strings.TrimSpace(s), ":")
		p := specPart{name: strings.TrimSpace(name), kv: map[string]string{}}
		if strings.TrimSpace(args) != "" {
			for _, a := range strings.Split(args, ",") {
				k, v, _ := strings.Cut(a, "=")
				p.kv[strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
		}
		parts = append(parts, p)
	}
	return parts
}

// param is the registration of key in part p's spec name (nil if none).
func (p specPart) param(key string) *kv.Param {
	for _, r := range kv.Registry() {
		if r.Name == p.name {
			for i := range r.Params {
				if r.Params[i].Key == key {
					return &r.Params[i]
				}
			}
		}
	}
	return nil
}

// value is key's value in p, or its registered default.
func (p specPart) value(key string) string {
	if s, ok := p.kv[key]; ok {
		return s
	}
	if pr := p.param(key); pr != nil {
		return pr.Default
	}
	return ""
}

func (p specPart) num(key string) float64 {
	x, _ := strconv.ParseFloat(p.value(key), 64)
	return x
}

func (p specPart) int(key string) int { return int(p.num(key)) }

func (p specPart) flag(key string) bool {
	b, _ := strconv.ParseBool(p.value(key))
	return b
}

// maskInfo is what the prediction needs of a masks file the server loaded: the
// number of KV heads that the threshold rule (value ≤ 0.5) makes streaming.
type maskInfo struct{ streamingAt05 int }

// predictPeak bounds the most bytes the cache of a request can hold at any moment:
// a prompt of prompt tokens pre-filled in chunks of chunk, then up to maxTokens
// generated (the last of which is never fed). It sums, over every (layer, KV head),
// a bound on the head's entries times its storage's bytes.
//
// The entries come from the paper's analytic calculator (footprint.Analytic) for
// full attention and StreamingLLM heads (sink + window, also the streaming heads of
// headmask), and from the harness's arithmetic that SnapKV's and PyramidKV's caches
// follow (footprint.Exact: chunked=true evicting after every chunk, post-fill one
// eviction of the whole prompt, PyramidKV's per-layer budgets); for the others a
// bound: h2o and tova hold at most their budget plus one forward's rows, locret as
// much as full attention. Patch rows, which sit in the cache during their forward,
// are added. SnapKV and PyramidKV with gqa=expand (their default) store every KV head
// once per query head of its group. headmask with sparsity=H makes ceil(H·(N−1)) of
// the N KV heads streaming; without it, the masks file's count.
func predictPeak(spec string, s kv.Shape, masks map[string]maskInfo, prompt, maxTokens, chunk int) (int64, error) {
	resp := max(maxTokens-1, 0)
	total := prompt + resp
	rows := chunk
	if rows <= 0 || rows > prompt {
		rows = prompt
	}
	sel := specPart{name: "full", kv: map[string]string{}}
	var role, store *specPart
	for _, p := range splitSpec(spec) {
		switch p.name {
		case "headmask":
			role = &p
		case "quant", "bf16":
			store = &p
		default:
			sel = p
		}
	}
	analytic := func(p footprint.Params) (int64, error) {
		p.Prompt, p.Response = prompt, resp
		if p.Chunk == 0 {
			p.Chunk = chunk
		}
		r, err := footprint.Analytic(p)
		if err != nil {
			return 0, err
		}
		return int64(math.Round(r.Peak * float64(total))), nil
	}
	patch := 0
	if sel.flag("chunked") {
		patch = sel.int("patch")
	}
	var global int64
	var err error
	switch sel.name {
	case "full":
		global, err = analytic(footprint.Params{})
	case "streaming":
		global, err = analytic(footprint.Params{Sink: sel.int("sink"), Window: sel.int("window"), HeadSparsity: 1})
	case "snapkv", "pyramidkv":
		p := footprint.Params{Prompt: prompt, Response: resp, Chunk: chunk, KVSparsity: sel.num("sparsity"), KVWindow: sel.int("window"),
			PostFill: !sel.flag("chunked"), Patch: patch > 0}
		if sel.name == "pyramidkv" {
			p.Layers, p.Beta = s.Layers, sel.int("beta")
		}
		var r footprint.Result
		if r, err = footprint.Exact(p); err == nil {
			// the mean over layers of PyramidKV's budgets, times the layers, is their sum
			global = int64(math.Ceil(r.Peak*float64(total) - 1e-9))
		}
	case "h2o":
		global = int64(min(total, sel.int("heavy")+sel.int("recent")+rows))
	case "tova":
		global = int64(min(total, sel.int("budget")+rows))
	default: // locret, and any selector the prediction does not model
		global = int64(total)
	}
	if err != nil {
		return 0, fmt.Errorf("predict %q: %w", spec, err)
	}
	rep := 1 // stored heads per KV head
	if (sel.name == "snapkv" || sel.name == "pyramidkv") && sel.value("gqa") != "mean" {
		rep = s.Heads / s.KVHeads
	}
	n := s.Layers * s.KVHeads * rep
	heads, streamHeads := n, 0
	var stream int64
	if role != nil {
		if stream, err = analytic(footprint.Params{Sink: role.int("sink"), Window: role.int("window"), HeadSparsity: 1}); err != nil {
			return 0, fmt.Errorf("predict %q: %w", spec, err)
		}
		if _, ok := role.kv["sparsity"]; ok {
			h := role.num("sparsity")
			streamHeads = int(math.Ceil(h * float64(s.Layers*s.KVHeads-1))) // of the masks' heads, before rep
			if h >= 1 {
				streamHeads = s.Layers * s.KVHeads
			}
		} else {
			streamHeads = masks[role.kv["masks"]].streamingAt05
		}
		streamHeads *= rep
		heads -= streamHeads
	}
	// every head holds the patch rows during a non-final chunk, and appends
	// total tokens plus the patch of every non-final chunk over the generation
	global += int64(patch)
	stream += int64(patch)
	appended := int64(total + patch*((prompt+rows-1)/rows-1))
	b := perEntryBytes(store, s.HeadDim, appended)
	return int64(heads)*b(global) + int64(streamHeads)*b(stream), nil
}

// perEntryBytes returns the bytes a KV head of storage store holds with e entries,
// bounded for quantized storage: every entry's codes and value scales, one key group
// (head_dim minima and scales) per quantized entry but never more groups than the
// appended rows make, and a float32 residual of at most residual+group−1 rows.
func perEntryBytes(store *specPart, d int, appended int64) func(e int64) int64 {
	f32 := int64(8 * d)
	switch {
	case store == nil:
		return func(e int64) int64 { return e * f32 }
	case store.name == "bf16":
		return func(e int64) int64 { return e * int64(4*d) }
	}
	bits, g, res := int64(store.int("bits")), int64(store.int("group")), int64(store.int("residual"))
	rowBytes := (int64(d)*bits + 7) / 8
	vGroups := (int64(d) + g - 1) / g
	return func(e int64) int64 {
		groups := min(e, (appended+g-1)/g)
		return e*(2*rowBytes+8*vGroups) + groups*f32 + min(e, res+g-1)*f32
	}
}
