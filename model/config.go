package model

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
)

// Config is the architecture of a Llama-family model, read from a Hugging Face
// config.json (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM).
type Config struct {
	Arch             string // the architectures[0] of config.json
	Hidden           int    // hidden_size
	Intermediate     int    // intermediate_size
	Layers           int    // num_hidden_layers
	Heads            int    // num_attention_heads
	KVHeads          int    // num_key_value_heads
	HeadDim          int    // head_dim, hidden/heads when absent
	Vocab            int    // vocab_size
	NormEps          float32
	TieEmbeddings    bool
	QKVBias, OBias   bool // Llama attention_bias sets both; Qwen2 has q/k/v biases only
	MLPBias          bool
	MaxPositions     int
	SlidingWindow    int // Mistral's sliding_window; 0 when absent. The full cache ignores it.
	Rope             Rope
	BOS              int   // -1 when absent
	EOS              []int // eos_token_id, an int or a list in config.json
	WeightsDtypeHint string
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
}

// Shape returns the attention geometry of the config.
func (c *Config) Shape() Shape { return Shape{c.Layers, c.Heads, c.KVHeads, c.HeadDim} }

// KVBytesPerToken is the float32 K and V storage one token takes over all layers in a full cache.
func (c *Config) KVBytesPerToken() int { return 2 * c.Layers * c.KVHeads * c.HeadDim * 4 }

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
	SlidingWindow     *int            `json:"sliding_window"`
	UseSlidingWindow  *bool           `json:"use_sliding_window"`
	RopeTheta         *float64        `json:"rope_theta"`
	RopeScaling       map[string]any  `json:"rope_scaling"`
	RopeParameters    map[string]any  `json:"rope_parameters"`
	BOSTokenID        *int            `json:"bos_token_id"`
	EOSTokenID        json.RawMessage `json:"eos_token_id"`
	Dtype             string          `json:"dtype"`
	TorchDtype        string          `json:"torch_dtype"`
}

// LoadConfig reads dir/config.json.
func LoadConfig(dir string) (Config, error) {
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
	if len(h.Architectures) == 0 {
		return Config{}, fmt.Errorf("field architectures: missing (want LlamaForCausalLM, MistralForCausalLM or Qwen2ForCausalLM)")
	}
	c := Config{Arch: h.Architectures[0], BOS: -1, WeightsDtypeHint: h.Dtype}
	if c.WeightsDtypeHint == "" {
		c.WeightsDtypeHint = h.TorchDtype
	}
	switch c.Arch {
	case "LlamaForCausalLM":
		c.QKVBias, c.OBias, c.MLPBias = h.AttentionBias, h.AttentionBias, h.MLPBias
	case "MistralForCausalLM":
	case "Qwen2ForCausalLM":
		c.QKVBias = true
	default:
		return Config{}, fmt.Errorf("field architectures: unknown architecture %q (want LlamaForCausalLM, MistralForCausalLM or Qwen2ForCausalLM)", c.Arch)
	}
	if h.HiddenAct != "" && h.HiddenAct != "silu" {
		return Config{}, fmt.Errorf("field hidden_act: %q is not supported (want silu)", h.HiddenAct)
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
	// transformers defaults tie_word_embeddings to true for Qwen2 and false for Llama and Mistral.
	c.TieEmbeddings = c.Arch == "Qwen2ForCausalLM"
	if h.TieWordEmbeddings != nil {
		c.TieEmbeddings = *h.TieWordEmbeddings
	}
	if h.MaxPositions < 0 || h.MaxPositions > 1<<30 {
		return Config{}, fmt.Errorf("field max_position_embeddings: %d, want 1…%d (or absent)", h.MaxPositions, 1<<30)
	}
	c.MaxPositions = h.MaxPositions
	if h.SlidingWindow != nil && (h.UseSlidingWindow == nil || *h.UseSlidingWindow) {
		c.SlidingWindow = *h.SlidingWindow
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
	rope, err := parseRope(h)
	if err != nil {
		return Config{}, err
	}
	c.Rope = rope
	return c, nil
}

// parseRope reads either config style: transformers 5.x puts everything in
// rope_parameters; 4.x has rope_theta at the top level and an optional rope_scaling
// (whose type key was once "type").
func parseRope(h hfConfig) (Rope, error) {
	field := "rope_scaling"
	p := h.RopeScaling
	if h.RopeParameters != nil {
		field, p = "rope_parameters", h.RopeParameters
	}
	r := Rope{Theta: 10000, Type: "default", Factor: 1}
	if h.RopeTheta != nil {
		r.Theta = *h.RopeTheta
	}
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
