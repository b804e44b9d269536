package model

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kvfoot/kvfoot/tensor"
)

// Supported lists the architectures (config.json's architectures) kvfoot runs.
var Supported = []string{"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM",
	"Gemma2ForCausalLM", "Gemma3ForCausalLM"}

// Config is the architecture of a Llama-family model, read from a Hugging Face
// config.json (Supported).
type Config struct {
	Arch           string // the architectures[0] of config.json
	Hidden         int    // hidden_size
	Intermediate   int    // intermediate_size
	Layers         int    // num_hidden_layers
	Heads          int    // num_attention_heads
	KVHeads        int    // num_key_value_heads
	HeadDim        int    // head_dim, hidden/heads when absent
	Vocab          int    // vocab_size
	NormEps        float32
	TieEmbeddings  bool
	QKVBias, OBias bool // Llama attention_bias sets both; Qwen2 has q/k/v biases only
	MLPBias        bool
	MaxPositions   int
	// Window is each layer's sliding window (a query at position i sees keys j with
	// i − j < Window[l]); 0 for a global layer. Nil when every layer is global.
	Window []int
	Rope   Rope // of global layers
	// LocalRope is the rotary embedding of local layers (Gemma 3's rope_local_base_freq);
	// the global one when Theta is 0.
	LocalRope Rope
	// QKNorm: per-head RMSNorm of queries and keys before RoPE (Qwen3, Gemma 3).
	QKNorm bool
	// Gemma is the Gemma 2/3 block: (1 + w) norms (folded into the weights at load),
	// embeddings scaled by EmbedScale, GeGLU with the tanh GELU, and norms after
	// attention and around the MLP.
	Gemma      bool
	EmbedScale float32 // 0: none
	// AttnScale multiplies q·k: 1/√head_dim unless query_pre_attn_scalar sets it.
	AttnScale float32
	// AttnSoftCap and FinalSoftCap cap attention scores and final logits at
	// cap·tanh(x/cap); 0: none.
	AttnSoftCap, FinalSoftCap float32
	BOS                       int   // -1 when absent
	EOS                       []int // eos_token_id, an int or a list in config.json
	WeightsDtypeHint          string
}

// Rope is the rotary embedding: base frequency and optional scaling, as
// transformers' modeling_rope_utils computes inverse frequencies.
type Rope struct {
	Theta float64
	Type  string // "default", "linear" or "llama3"
	// Factor divides the frequencies (linear), or the low ones (llama3).
	Factor float64
	// llama3 only.
	LowFreqFactor, HighFreqFactor float64
	OriginalMaxPositions          float64
}

// Shape is the attention geometry a KV cache needs; kv.Shape has the same fields,
// so kv.Shape(m.Shape()) converts it.
type Shape struct {
	Layers, Heads, KVHeads, HeadDim int
	// Window is each layer's sliding window (0: global); nil when all are global.
	Window []int
	// Scale multiplies q·k (0: 1/√HeadDim); SoftCap caps the scaled scores at
	// SoftCap·tanh(s/SoftCap) (0: none).
	Scale, SoftCap float32
}

// Shape returns the attention geometry of the config.
func (c *Config) Shape() Shape {
	return Shape{Layers: c.Layers, Heads: c.Heads, KVHeads: c.KVHeads, HeadDim: c.HeadDim,
		Window: c.Window, Scale: c.AttnScale, SoftCap: c.AttnSoftCap}
}

// KVBytesPerToken is the float32 K and V storage one token takes over all layers in a full cache.
func (c *Config) KVBytesPerToken() int { return 2 * c.Layers * c.KVHeads * c.HeadDim * 4 }

// LocalLayers is the number of layers with a sliding window.
func (c *Config) LocalLayers() int {
	n := 0
	for _, w := range c.Window {
		if w > 0 {
			n++
		}
	}
	return n
}

// LayerRope is the rotary embedding of layer l.
func (c *Config) LayerRope(l int) Rope {
	if c.LocalRope.Theta != 0 && l < len(c.Window) && c.Window[l] > 0 {
		return c.LocalRope
	}
	return c.Rope
}

// hfConfig mirrors the fields of config.json that kvfoot reads. Pointers tell
// "absent" from zero.
type hfConfig struct {
	Architectures     []string        `json:"architectures"`
	ModelType         string          `json:"model_type"`
	HiddenSize        *int            `json:"hidden_size"`
	IntermediateSize  *int            `json:"intermediate_size"`
	NumHiddenLayers   *int            `json:"num_hidden_layers"`
	NumAttentionHeads *int            `json:"num_attention_heads"`
	NumKeyValueHeads  *int            `json:"num_key_value_heads"`
	HeadDim           *int            `json:"head_dim"`
	VocabSize         *int            `json:"vocab_size"`
	RMSNormEps        *float64        `json:"rms_norm_eps"`
	HiddenAct         string          `json:"hidden_act"`
	TieWordEmbeddings *bool           `json:"tie_word_embeddings"`
	AttentionBias     bool            `json:"attention_bias"`
	MLPBias           bool            `json:"mlp_bias"`
	MaxPositions      int             `json:"max_position_embeddings"`
	SlidingWindow     json.RawMessage `json:"sliding_window"` // null is "none", absent the default
	UseSlidingWindow  *bool           `json:"use_sliding_window"`
	MaxWindowLayers   *int            `json:"max_window_layers"`
	LayerTypes        []string        `json:"layer_types"`
	WindowPattern     *int            `json:"sliding_window_pattern"`
	HiddenActivation  string          `json:"hidden_activation"`
	QueryPreAttn      *float64        `json:"query_pre_attn_scalar"`
	AttnSoftCap       json.RawMessage `json:"attn_logit_softcapping"` // null is "none", absent the default
	FinalSoftCap      json.RawMessage `json:"final_logit_softcapping"`
	RopeLocalBase     *float64        `json:"rope_local_base_freq"`
	TextConfig        json.RawMessage `json:"text_config"`
	RopeTheta         *float64        `json:"rope_theta"`
	RopeScaling       map[string]any  `json:"rope_scaling"`
	RopeParameters    map[string]any  `json:"rope_parameters"`
	BOSTokenID        *int            `json:"bos_token_id"`
	EOSTokenID        json.RawMessage `json:"eos_token_id"`
	Dtype             string          `json:"dtype"`
	TorchDtype        string          `json:"torch_dtype"`
	// fields of computations kvfoot does not implement: refused when set
	NumExperts      *int            `json:"num_experts"`
	NumLocalExperts *int            `json:"num_local_experts"`
	AttnChunkSize   *int            `json:"attention_chunk_size"`
	PartialRotary   *float64        `json:"partial_rotary_factor"`
	Bidirectional   *bool           `json:"use_bidirectional_attention"`
	VisionConfig    json.RawMessage `json:"vision_config"`
}

// LoadConfig reads dir/config.json.
func LoadConfig(dir string) (Config, error) {
	if g := FolderGGUF(dir); g != "" {
		return OpenConfig(g)
	}
	path := filepath.Join(dir, "config.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	c, err := ParseConfig(raw)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseConfig reads a config.json's bytes and checks them for consistency.
func ParseConfig(raw []byte) (Config, error) {
	var h hfConfig
	if err := json.Unmarshal(raw, &h); err != nil {
		return Config{}, fmt.Errorf("not a valid config: %w", err)
	}
	want := "want one of " + strings.Join(Supported, ", ")
	if len(h.Architectures) == 0 {
		return Config{}, fmt.Errorf("field architectures: missing (%s)", want)
	}
	arch := h.Architectures[0]
	if why := refused(arch); why != "" {
		return Config{}, fmt.Errorf("field architectures: %s is %s; kvfoot runs the text models %s", arch, why, strings.Join(Supported, ", "))
	}
	if !slices.Contains(Supported, arch) {
		return Config{}, fmt.Errorf("field architectures: unknown architecture %q (%s)", arch, want)
	}
	// A text model saved with its multimodal parent's config keeps its fields in text_config.
	if len(h.TextConfig) > 0 && string(h.TextConfig) != "null" {
		var t hfConfig
		if err := json.Unmarshal(h.TextConfig, &t); err != nil {
			return Config{}, fmt.Errorf("field text_config: %w", err)
		}
		t.Architectures, t.VisionConfig = h.Architectures, h.VisionConfig
		if t.Dtype == "" && t.TorchDtype == "" {
			t.Dtype, t.TorchDtype = h.Dtype, h.TorchDtype
		}
		h = t
	}
	for _, f := range []struct {
		name string
		set  bool
	}{{"num_experts", h.NumExperts != nil && *h.NumExperts > 0}, {"num_local_experts", h.NumLocalExperts != nil && *h.NumLocalExperts > 0},
		{"attention_chunk_size", h.AttnChunkSize != nil}, {"partial_rotary_factor", h.PartialRotary != nil && *h.PartialRotary != 1},
		{"vision_config", len(h.VisionConfig) > 0 && string(h.VisionConfig) != "null"},
		{"use_bidirectional_attention", h.Bidirectional != nil && *h.Bidirectional}} {
		if f.set {
			return Config{}, fmt.Errorf("field %s: set, but kvfoot does not implement it for %s (mixture-of-experts, chunked attention, partial RoPE, vision towers and bidirectional embedding models are not supported)", f.name, arch)
		}
	}
	c := Config{Arch: arch, BOS: -1, WeightsDtypeHint: h.Dtype}
	if c.WeightsDtypeHint == "" {
		c.WeightsDtypeHint = h.TorchDtype
	}
	act, actField, wantAct := h.HiddenAct, "hidden_act", "silu"
	defaultHeadDim := 0 // transformers' default when head_dim is absent (0: hidden/heads)
	switch c.Arch {
	case "LlamaForCausalLM":
		c.QKVBias, c.OBias, c.MLPBias = h.AttentionBias, h.AttentionBias, h.MLPBias
	case "MistralForCausalLM":
	case "Qwen2ForCausalLM":
		c.QKVBias = true
	case "Qwen3ForCausalLM":
		c.QKVBias, c.OBias = h.AttentionBias, h.AttentionBias
		c.QKNorm = true
		defaultHeadDim = 128
	case "Gemma2ForCausalLM", "Gemma3ForCausalLM":
		c.QKVBias, c.OBias = h.AttentionBias, h.AttentionBias
		c.Gemma, c.QKNorm = true, c.Arch == "Gemma3ForCausalLM"
		act, actField, wantAct = h.HiddenActivation, "hidden_activation", "gelu_pytorch_tanh"
		defaultHeadDim = 256
	}
	if act != "" && act != wantAct {
		return Config{}, fmt.Errorf("field %s: %q is not supported for %s (want %s)", actField, act, c.Arch, wantAct)
	}
	// The bounds are far above any released model; they keep a damaged config from
	// asking for memory in proportion to a garbage number before a tensor is read.
	req := []struct {
		name string
		v    *int
		dst  *int
		max  int
	}{
		{"hidden_size", h.HiddenSize, &c.Hidden, 1 << 20},
		{"intermediate_size", h.IntermediateSize, &c.Intermediate, 1 << 22},
		{"num_hidden_layers", h.NumHiddenLayers, &c.Layers, 1 << 12},
		{"num_attention_heads", h.NumAttentionHeads, &c.Heads, 1 << 12},
		{"vocab_size", h.VocabSize, &c.Vocab, 1 << 24},
	}
	for _, r := range req {
		if r.v == nil {
			return Config{}, fmt.Errorf("field %s: missing", r.name)
		}
		if *r.v <= 0 || *r.v > r.max {
			return Config{}, fmt.Errorf("field %s: %d, want a positive integer up to %d", r.name, *r.v, r.max)
		}
		*r.dst = *r.v
	}
	c.KVHeads = c.Heads
	if h.NumKeyValueHeads != nil {
		c.KVHeads = *h.NumKeyValueHeads
	}
	if c.KVHeads <= 0 || c.Heads%c.KVHeads != 0 {
		return Config{}, fmt.Errorf("field num_key_value_heads: %d does not divide num_attention_heads %d", c.KVHeads, c.Heads)
	}
	if h.HeadDim != nil {
		c.HeadDim = *h.HeadDim
	} else if defaultHeadDim > 0 {
		c.HeadDim = defaultHeadDim
	} else {
		if c.Hidden%c.Heads != 0 {
			return Config{}, fmt.Errorf("field num_attention_heads: %d does not divide hidden_size %d (and head_dim is absent)", c.Heads, c.Hidden)
		}
		c.HeadDim = c.Hidden / c.Heads
	}
	if c.HeadDim <= 0 || c.HeadDim%2 != 0 {
		return Config{}, fmt.Errorf("field head_dim: %d, want a positive even integer (RoPE rotates pairs)", c.HeadDim)
	}
	c.NormEps = 1e-6
	if h.RMSNormEps != nil {
		if !(*h.RMSNormEps > 0) {
			return Config{}, fmt.Errorf("field rms_norm_eps: %g, want > 0", *h.RMSNormEps)
		}
		c.NormEps = float32(*h.RMSNormEps)
	}
	// transformers defaults tie_word_embeddings to true for Qwen2 and Gemma, false for
	// Llama, Mistral and Qwen3.
	c.TieEmbeddings = c.Arch == "Qwen2ForCausalLM" || c.Gemma
	if h.TieWordEmbeddings != nil {
		c.TieEmbeddings = *h.TieWordEmbeddings
	}
	if h.MaxPositions < 0 || h.MaxPositions > 1<<30 {
		return Config{}, fmt.Errorf("field max_position_embeddings: %d, want 1…%d (or absent)", h.MaxPositions, 1<<30)
	}
	c.MaxPositions = h.MaxPositions
	if err := parseWindows(&c, h); err != nil {
		return Config{}, err
	}
	if c.Gemma {
		if err := parseGemma(&c, h); err != nil {
			return Config{}, err
		}
	}
	if h.BOSTokenID != nil {
		c.BOS = *h.BOSTokenID
		if c.BOS < 0 || c.BOS >= c.Vocab {
			return Config{}, fmt.Errorf("field bos_token_id: %d is outside the vocabulary [0, %d)", c.BOS, c.Vocab)
		}
	}
	if len(h.EOSTokenID) > 0 && string(h.EOSTokenID) != "null" {
		var one int
		if json.Unmarshal(h.EOSTokenID, &one) == nil {
			c.EOS = []int{one}
		} else if err := json.Unmarshal(h.EOSTokenID, &c.EOS); err != nil {
			return Config{}, fmt.Errorf("field eos_token_id: want an integer or a list of integers")
		}
		for _, id := range c.EOS {
			if id < 0 || id >= c.Vocab {
				return Config{}, fmt.Errorf("field eos_token_id: %d is outside the vocabulary [0, %d)", id, c.Vocab)
			}
		}
	}
	if err := parseRopes(&c, h); err != nil {
		return Config{}, err
	}
	return c, nil
}

// refused says what kind of model an architecture kvfoot knows it cannot run is ("" for
// any other).
func refused(arch string) string {
	switch {
	case strings.Contains(arch, "Moe") || strings.HasPrefix(arch, "Mixtral") || strings.HasPrefix(arch, "Deepseek") ||
		strings.HasPrefix(arch, "GptOss") || strings.HasPrefix(arch, "Llama4"):
		return "a mixture-of-experts model"
	case strings.HasSuffix(arch, "ForConditionalGeneration") || strings.Contains(arch, "VL") || strings.Contains(arch, "Vision"):
		return "a multimodal model (run its text-only checkpoint)"
	}
	return ""
}

// parseWindows sets each layer's sliding window as transformers reads it: layer_types
// when the config has them; else Mistral's sliding_window on every layer, Qwen2/Qwen3's
// on the layers from max_window_layers on when use_sliding_window is set, and Gemma's
// pattern (Gemma 2 alternates, local first; Gemma 3 has sliding_window_pattern − 1 local
// layers before each global one).
func parseWindows(c *Config, h hfConfig) error {
	w := 0
	switch raw := string(h.SlidingWindow); {
	case raw == "":
		if c.Gemma {
			w = 4096 // Gemma2Config's and Gemma3TextConfig's default
		}
	case raw == "null":
	default:
		if err := json.Unmarshal(h.SlidingWindow, &w); err != nil || w <= 0 {
			return fmt.Errorf("field sliding_window: %s, want a positive integer (or null)", raw)
		}
	}
	qwen := c.Arch == "Qwen2ForCausalLM" || c.Arch == "Qwen3ForCausalLM"
	if qwen && (h.UseSlidingWindow == nil || !*h.UseSlidingWindow) {
		w = 0 // transformers sets sliding_window to None without use_sliding_window
	}
	local := make([]bool, c.Layers)
	switch {
	case h.LayerTypes != nil:
		if len(h.LayerTypes) != c.Layers {
			return fmt.Errorf("field layer_types: %d entries for %d layers", len(h.LayerTypes), c.Layers)
		}
		for l, t := range h.LayerTypes {
			switch t {
			case "full_attention":
			case "sliding_attention":
				local[l] = true
			default:
				return fmt.Errorf("field layer_types[%d]: %q is not supported (want full_attention or sliding_attention)", l, t)
			}
		}
	case c.Arch == "MistralForCausalLM":
		for l := range local {
			local[l] = true
		}
	case qwen:
		from := c.Layers
		if h.MaxWindowLayers != nil {
			from = *h.MaxWindowLayers
		}
		for l := range local {
			local[l] = l >= from
		}
	case c.Arch == "Gemma2ForCausalLM":
		for l := range local {
			local[l] = (l+1)%2 != 0
		}
	case c.Arch == "Gemma3ForCausalLM":
		pattern := 6
		if h.WindowPattern != nil {
			pattern = *h.WindowPattern
		}
		if pattern < 1 {
			return fmt.Errorf("field sliding_window_pattern: %d, want a positive integer", pattern)
		}
		for l := range local {
			local[l] = (l+1)%pattern != 0
		}
	}
	if w == 0 {
		if c.Gemma && slices.Contains(local, true) {
			return fmt.Errorf("field sliding_window: null, but %s has sliding-window layers", c.Arch)
		}
		return nil
	}
	if !slices.Contains(local, true) {
		return nil
	}
	c.Window = make([]int, c.Layers)
	for l, loc := range local {
		if loc {
			c.Window[l] = w
		}
	}
	return nil
}

// parseGemma reads the Gemma 2/3 fields that change the computation.
func parseGemma(c *Config, h hfConfig) error {
	scalar := 256.0 // transformers' default for both
	if h.QueryPreAttn != nil {
		scalar = *h.QueryPreAttn
	}
	if !(scalar > 0) {
		return fmt.Errorf("field query_pre_attn_scalar: %g, want > 0", scalar)
	}
	c.AttnScale = float32(math.Pow(scalar, -0.5))
	// transformers' defaults: Gemma 2 caps attention at 50 and logits at 30, Gemma 3 neither
	attnCap, finalCap := 50.0, 30.0
	if c.Arch == "Gemma3ForCausalLM" {
		attnCap, finalCap = 0, 0
	}
	for _, f := range []struct {
		name string
		raw  json.RawMessage
		dst  *float64
	}{{"attn_logit_softcapping", h.AttnSoftCap, &attnCap}, {"final_logit_softcapping", h.FinalSoftCap, &finalCap}} {
		switch {
		case len(f.raw) == 0:
		case string(f.raw) == "null":
			*f.dst = 0
		default:
			if err := json.Unmarshal(f.raw, f.dst); err != nil || !(*f.dst > 0) {
				return fmt.Errorf("field %s: %s, want a positive number (or null)", f.name, f.raw)
			}
		}
	}
	c.AttnSoftCap, c.FinalSoftCap = float32(attnCap), float32(finalCap)
	// transformers multiplies by sqrt(hidden) as a tensor of the model's dtype.
	c.EmbedScale = float32(math.Sqrt(float64(c.Hidden)))
	if c.WeightsDtypeHint == "bfloat16" {
		c.EmbedScale = tensor.BF16ToFloat(tensor.FloatToBF16(c.EmbedScale))
	}
	return nil
}

// parseRopes reads either config style: transformers 5.x puts everything in
// rope_parameters (for models with local layers, one entry per layer type); 4.x has
// rope_theta at the top level and an optional rope_scaling (whose type key was once
// "type"), and Gemma 3's rope_local_base_freq for its local layers.
func parseRopes(c *Config, h hfConfig) error {
	theta := 10000.0
	if c.Arch == "Gemma3ForCausalLM" {
		theta = 1e6
	}
	if h.RopeTheta != nil {
		theta = *h.RopeTheta
	}
	full, fok := h.RopeParameters["full_attention"].(map[string]any)
	sliding, sok := h.RopeParameters["sliding_attention"].(map[string]any)
	var err error
	if fok || sok {
		if !fok || !sok {
			return fmt.Errorf("field rope_parameters: per layer type, want both full_attention and sliding_attention")
		}
		if c.Rope, err = parseRope("rope_parameters.full_attention", full, theta); err != nil {
			return err
		}
		c.LocalRope, err = parseRope("rope_parameters.sliding_attention", sliding, 10000)
		return err
	}
	field, p := "rope_scaling", h.RopeScaling
	if h.RopeParameters != nil {
		field, p = "rope_parameters", h.RopeParameters
	}
	if c.Rope, err = parseRope(field, p, theta); err != nil {
		return err
	}
	if c.Arch == "Gemma3ForCausalLM" {
		c.LocalRope = Rope{Theta: 10000, Type: "default", Factor: 1}
		if h.RopeLocalBase != nil {
			c.LocalRope.Theta = *h.RopeLocalBase
		}
		if !(c.LocalRope.Theta > 1) {
			return fmt.Errorf("field rope_local_base_freq: %g, want > 1", c.LocalRope.Theta)
		}
	}
	return nil
}

// parseRope reads one rotary embedding's parameters p (from field; theta when p has
// no rope_theta).
func parseRope(field string, p map[string]any, theta float64) (Rope, error) {
	r := Rope{Theta: theta, Type: "default", Factor: 1}
	num := func(key string, dst *float64, required bool) error {
		v, ok := p[key]
		if !ok || v == nil {
			if required {
				return fmt.Errorf("field %s.%s: missing (needed by rope type %q)", field, key, r.Type)
			}
			return nil
		}
		f, ok := v.(float64)
		if !ok || math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("field %s.%s: %v, want a number", field, key, v)
		}
		*dst = f
		return nil
	}
	if p != nil {
		if err := num("rope_theta", &r.Theta, false); err != nil {
			return r, err
		}
		t, _ := p["rope_type"].(string)
		if t == "" {
			t, _ = p["type"].(string)
		}
		if t != "" {
			r.Type = t
		}
	}
	if !(r.Theta > 1) {
		return r, fmt.Errorf("field rope_theta: %g, want > 1", r.Theta)
	}
	switch r.Type {
	case "default":
	case "linear":
		if err := num("factor", &r.Factor, true); err != nil {
			return r, err
		}
	case "llama3":
		for _, k := range []struct {
			key string
			dst *float64
		}{{"factor", &r.Factor}, {"low_freq_factor", &r.LowFreqFactor}, {"high_freq_factor", &r.HighFreqFactor},
			{"original_max_position_embeddings", &r.OriginalMaxPositions}} {
			if err := num(k.key, k.dst, true); err != nil {
				return r, err
			}
		}
		if !(r.HighFreqFactor > r.LowFreqFactor) || !(r.LowFreqFactor > 0) || !(r.OriginalMaxPositions > 0) {
			return r, fmt.Errorf("field %s: llama3 needs 0 < low_freq_factor < high_freq_factor and original_max_position_embeddings > 0", field)
		}
	default:
		return r, fmt.Errorf("field %s.rope_type: %q is not supported (want default, linear or llama3)", field, r.Type)
	}
	if !(r.Factor > 0) {
		return r, fmt.Errorf("field %s.factor: %g, want > 0", field, r.Factor)
	}
	return r, nil
}

// InvFreq returns the head_dim/2 inverse frequencies of the rotary embedding,
// computed in float32 step by step as transformers' modeling_rope_utils does:
// default base^(−2i/d), then division by the factor (linear), or llama3's
// rescaling by wavelength (kept above, divided below, interpolated between).
func (r Rope) InvFreq(headDim int) []float32 {
	inv := make([]float32, headDim/2)
	for i := range inv {
		p := float32(math.Pow(r.Theta, float64(float32(2*i)/float32(headDim))))
		inv[i] = 1 / p
	}
	factor := float32(r.Factor)
	switch r.Type {
	case "linear":
		for i := range inv {
			inv[i] /= factor
		}
	case "llama3":
		old := float32(r.OriginalMaxPositions)
		low, high := float32(r.LowFreqFactor), float32(r.HighFreqFactor)
		lowWavelen, highWavelen := old/low, old/high
		for i, f := range inv {
			wavelen := float32(2*math.Pi) / f
			switch {
			case wavelen < highWavelen:
			case wavelen > lowWavelen:
				inv[i] = f / factor
			default:
				smooth := (old/wavelen - low) / (high - low)
				inv[i] = (1-smooth)*f/factor + smooth*f
			}
		}
	}
	return inv
}
