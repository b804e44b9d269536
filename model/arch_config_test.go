package model

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

// The fields below are transformers' defaults and readings, from its configuration
// classes (Qwen2Config, Qwen3Config, Gemma2Config, Gemma3TextConfig) and their
// models' attention layers.
func TestArchConfigs(t *testing.T) {
	small := func(arch string, extra map[string]any) map[string]any {
		m := map[string]any{"architectures": []any{arch}, "hidden_size": 64, "intermediate_size": 128,
			"num_hidden_layers": 6, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	w := func(ws ...int) string { return fmt.Sprint(ws) }
	cases := []struct {
		name string
		cfg  map[string]any
		// wanted: windows (fmt of Window, "[]" for nil), head_dim, tie, qknorm, gemma,
		// attn scale, caps, embed scale, global theta, local theta (0: none)
		window                 string
		headDim                int
		tie, qkNorm, gemma     bool
		scale, attnCap, finCap float64
		embed                  float64
		theta, localTheta      float64
	}{
		{"qwen3 defaults", small("Qwen3ForCausalLM", nil), "[]", 128, false, true, false, 0, 0, 0, 0, 10000, 0},
		{"qwen3 window ignored without use_sliding_window", small("Qwen3ForCausalLM", map[string]any{"sliding_window": 32, "max_window_layers": 2}),
			"[]", 128, false, true, false, 0, 0, 0, 0, 10000, 0},
		{"qwen2 window from max_window_layers", small("Qwen2ForCausalLM", map[string]any{"sliding_window": 32, "use_sliding_window": true, "max_window_layers": 4}),
			w(0, 0, 0, 0, 32, 32), 16, true, false, false, 0, 0, 0, 0, 10000, 0},
		{"mistral window on every layer", small("MistralForCausalLM", map[string]any{"sliding_window": 4096}),
			w(4096, 4096, 4096, 4096, 4096, 4096), 16, false, false, false, 0, 0, 0, 0, 10000, 0},
		{"mistral null window", small("MistralForCausalLM", map[string]any{"sliding_window": nil}), "[]", 16, false, false, false, 0, 0, 0, 0, 10000, 0},
		{"gemma2 defaults", small("Gemma2ForCausalLM", nil),
			w(4096, 0, 4096, 0, 4096, 0), 256, true, false, true, 1.0 / 16, 50, 30, 8, 10000, 0},
		{"gemma2 null caps", small("Gemma2ForCausalLM", map[string]any{"sliding_window": 8, "attn_logit_softcapping": nil, "final_logit_softcapping": nil,
			"query_pre_attn_scalar": 64, "head_dim": 32}),
			w(8, 0, 8, 0, 8, 0), 32, true, false, true, 1.0 / 8, 0, 0, 8, 10000, 0},
		{"gemma3 defaults (4.x style)", small("Gemma3ForCausalLM", map[string]any{"sliding_window": 512, "rope_local_base_freq": 20000.0}),
			w(512, 512, 512, 512, 512, 0), 256, true, true, true, 1.0 / 16, 0, 0, 8, 1e6, 20000},
		{"gemma3 pattern", small("Gemma3ForCausalLM", map[string]any{"sliding_window": 512, "sliding_window_pattern": 3}),
			w(512, 512, 0, 512, 512, 0), 256, true, true, true, 1.0 / 16, 0, 0, 8, 1e6, 10000},
		{"gemma3 5.x", small("Gemma3ForCausalLM", map[string]any{"sliding_window": 16,
			"layer_types": []any{"full_attention", "sliding_attention", "sliding_attention", "full_attention", "sliding_attention", "sliding_attention"},
			"rope_parameters": map[string]any{"full_attention": map[string]any{"rope_type": "default", "rope_theta": 5e5},
				"sliding_attention": map[string]any{"rope_type": "default", "rope_theta": 1e4}}}),
			w(0, 16, 16, 0, 16, 16), 256, true, true, true, 1.0 / 16, 0, 0, 8, 5e5, 1e4},
		{"gemma3 nested text_config", map[string]any{"architectures": []any{"Gemma3ForCausalLM"},
			"text_config": small("Gemma3ForCausalLM", map[string]any{"sliding_window": 512, "head_dim": 16, "query_pre_attn_scalar": 16})},
			w(512, 512, 512, 512, 512, 0), 16, true, true, true, 1.0 / 4, 0, 0, 8, 1e6, 10000},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parse(t, tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			got := "[]"
			if c.Window != nil {
				got = fmt.Sprint(c.Window)
			}
			if got != tc.window {
				t.Errorf("windows %s, want %s", got, tc.window)
			}
			if c.HeadDim != tc.headDim || c.TieEmbeddings != tc.tie || c.QKNorm != tc.qkNorm || c.Gemma != tc.gemma {
				t.Errorf("head_dim %d tie %v qknorm %v gemma %v, want %d %v %v %v", c.HeadDim, c.TieEmbeddings, c.QKNorm, c.Gemma,
					tc.headDim, tc.tie, tc.qkNorm, tc.gemma)
			}
			for _, f := range []struct {
				name      string
				got, want float64
			}{{"attn scale", float64(c.AttnScale), tc.scale}, {"attn cap", float64(c.AttnSoftCap), tc.attnCap},
				{"final cap", float64(c.FinalSoftCap), tc.finCap}, {"embed scale", float64(c.EmbedScale), tc.embed},
				{"theta", c.Rope.Theta, tc.theta}, {"local theta", c.LocalRope.Theta, tc.localTheta}} {
				if math.Abs(f.got-f.want) > 1e-6*math.Abs(f.want) {
					t.Errorf("%s %g, want %g", f.name, f.got, f.want)
				}
			}
		})
	}
}

// Gemma's embedding normalizer is sqrt(hidden) as a tensor of the model's dtype: for
// a bf16 model with hidden 1152 (Gemma 3 1B), √1152 = 33.941… rounds to 34.
func TestGemmaEmbedScaleRoundsToDtype(t *testing.T) {
	for _, tc := range []struct {
		dtype string
		want  float32
	}{{"bfloat16", 34}, {"float32", float32(math.Sqrt(1152))}} {
		c, err := parse(t, map[string]any{"architectures": []any{"Gemma3ForCausalLM"}, "hidden_size": 1152, "intermediate_size": 64,
			"num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 1, "vocab_size": 10, "sliding_window": 8,
			"dtype": tc.dtype})
		if err != nil {
			t.Fatal(err)
		}
		if c.EmbedScale != tc.want {
			t.Errorf("%s: embed scale %v, want %v", tc.dtype, c.EmbedScale, tc.want)
		}
	}
}

func TestUnsupportedArchitecturesRefusedByName(t *testing.T) {
	for _, tc := range []struct {
		arch, why string
		extra     map[string]any
	}{
		{"Qwen3MoeForCausalLM", "mixture-of-experts", nil},
		{"MixtralForCausalLM", "mixture-of-experts", nil},
		{"Gemma3ForConditionalGeneration", "multimodal", nil},
		{"Qwen2VLForConditionalGeneration", "multimodal", nil},
		{"GPT2LMHeadModel", "unknown architecture", nil},
		{"Qwen3ForCausalLM", "field num_experts", map[string]any{"num_experts": 8}},
		{"LlamaForCausalLM", "field attention_chunk_size", map[string]any{"attention_chunk_size": 8192}},
		{"Gemma2ForCausalLM", "field hidden_activation", map[string]any{"hidden_activation": "gelu", "sliding_window": 8}},
		{"Gemma3ForCausalLM", `layer_types[1]: "chunked_attention"`, map[string]any{"sliding_window": 8,
			"layer_types": []any{"full_attention", "chunked_attention"}}},
		{"Gemma3ForCausalLM", "field sliding_window: null", map[string]any{"sliding_window": nil}},
		{"MistralForCausalLM", "field sliding_window: 0", map[string]any{"sliding_window": 0}},
		{"Gemma3ForCausalLM", "field use_bidirectional_attention", map[string]any{"sliding_window": 8, "use_bidirectional_attention": true}},
	} {
		m := map[string]any{"architectures": []any{tc.arch}, "hidden_size": 64, "intermediate_size": 128,
			"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100}
		for k, v := range tc.extra {
			m[k] = v
		}
		_, err := parse(t, m)
		if err == nil || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("%s: error %v, want one saying %q", tc.arch, err, tc.why)
			continue
		}
		if tc.extra == nil && (!strings.Contains(err.Error(), tc.arch) || !strings.Contains(err.Error(), strings.Join(Supported, ", "))) {
			t.Errorf("%s: error %q should name the architecture and list the supported ones", tc.arch, err)
		}
	}
}
