package model

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// base is a valid transformers 5.x Llama config; cases edit a copy of it.
func base() map[string]any {
	return map[string]any{
		"architectures": []any{"LlamaForCausalLM"}, "hidden_size": 64, "intermediate_size": 128,
		"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100,
		"rms_norm_eps": 1e-5, "hidden_act": "silu",
		"rope_parameters": map[string]any{"rope_type": "default", "rope_theta": 10000.0},
	}
}

func parse(t *testing.T, m map[string]any) (Config, error) {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return ParseConfig(b)
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name, want string
		edit       func(map[string]any)
	}{
		{"unknown arch", `unknown architecture "GPT2LMHeadModel"`, func(m map[string]any) { m["architectures"] = []any{"GPT2LMHeadModel"} }},
		{"no arch", "field architectures", func(m map[string]any) { delete(m, "architectures") }},
		{"kv heads do not divide", "num_key_value_heads: 3 does not divide num_attention_heads 4", func(m map[string]any) { m["num_key_value_heads"] = 3 }},
		{"heads do not divide hidden", "num_attention_heads: 5 does not divide hidden_size 64", func(m map[string]any) {
			m["num_attention_heads"], m["num_key_value_heads"] = 5, 5
		}},
		{"odd head dim", "field head_dim: 15", func(m map[string]any) { m["head_dim"] = 15 }},
		{"missing vocab", "field vocab_size: missing", func(m map[string]any) { delete(m, "vocab_size") }},
		{"zero layers", "field num_hidden_layers: 0", func(m map[string]any) { m["num_hidden_layers"] = 0 }},
		{"gelu", "field hidden_act", func(m map[string]any) { m["hidden_act"] = "gelu" }},
		{"yarn", `rope_parameters.rope_type: "yarn"`, func(m map[string]any) {
			m["rope_parameters"] = map[string]any{"rope_type": "yarn", "factor": 2.0, "rope_theta": 1e4}
		}},
		{"llama3 missing key", "rope_scaling.low_freq_factor: missing", func(m map[string]any) {
			delete(m, "rope_parameters")
			m["rope_scaling"] = map[string]any{"rope_type": "llama3", "factor": 8.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
		}},
		{"linear no factor", "rope_parameters.factor: missing", func(m map[string]any) {
			m["rope_parameters"] = map[string]any{"rope_type": "linear", "rope_theta": 1e4}
		}},
		{"string number", "field", func(m map[string]any) { m["hidden_size"] = "64" }},
		{"bad eos", "field eos_token_id", func(m map[string]any) { m["eos_token_id"] = "x" }},
		{"eos outside vocab", "field eos_token_id: 100 is outside the vocabulary [0, 100)", func(m map[string]any) { m["eos_token_id"] = []any{2, 100} }},
		{"negative bos", "field bos_token_id: -1 is outside", func(m map[string]any) { m["bos_token_id"] = -1 }},
		{"absurd layers", "field num_hidden_layers: 2000000000, want a positive integer up to 4096", func(m map[string]any) { m["num_hidden_layers"] = 2000000000 }},
		{"negative context", "field max_position_embeddings: -5", func(m map[string]any) { m["max_position_embeddings"] = -5 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := base()
			c.edit(m)
			_, err := parse(t, m)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one containing %q", err, c.want)
			}
		})
	}
	if _, err := ParseConfig([]byte("{not json")); err == nil {
		t.Error("non-JSON config accepted")
	}
}

func TestConfigFields(t *testing.T) {
	m := base()
	m["eos_token_id"] = []any{128001, 128009}
	m["vocab_size"] = 128256
	m["head_dim"] = 32
	c, err := parse(t, m)
	if err != nil {
		t.Fatal(err)
	}
	if c.HeadDim != 32 || c.KVHeads != 2 || len(c.EOS) != 2 || c.EOS[1] != 128009 || c.TieEmbeddings || c.QKVBias {
		t.Errorf("config %+v", c)
	}
	m = base()
	m["architectures"] = []any{"Qwen2ForCausalLM"}
	delete(m, "num_key_value_heads")
	m["eos_token_id"] = 7
	c, _ = parse(t, m)
	if !c.QKVBias || c.OBias || !c.TieEmbeddings || c.KVHeads != 4 || c.HeadDim != 16 || c.EOS[0] != 7 {
		t.Errorf("qwen2 defaults %+v", c)
	}
	// the 4.x style with the old "type" key
	m = base()
	delete(m, "rope_parameters")
	m["rope_theta"] = 500000.0
	m["rope_scaling"] = map[string]any{"type": "linear", "factor": 2.0}
	c, _ = parse(t, m)
	if c.Rope != (Rope{Theta: 500000, Type: "linear", Factor: 2}) {
		t.Errorf("4.x rope %+v", c.Rope)
	}
}

// TestInvFreq checks the frequencies against the formulas of transformers'
// modeling_rope_utils, evaluated by hand for a head_dim of 8 (four frequencies).
func TestInvFreq(t *testing.T) {
	def := Rope{Theta: 10000, Type: "default", Factor: 1}.InvFreq(8)
	want := []float64{1, 0.1, 0.01, 0.001} // 10000^(−2i/8)
	for i := range want {
		if math.Abs(float64(def[i])-want[i]) > 1e-7*want[i] {
			t.Errorf("default inv_freq[%d] = %g, want %g", i, def[i], want[i])
		}
	}
	lin := Rope{Theta: 10000, Type: "linear", Factor: 4}.InvFreq(8)
	for i := range want {
		if math.Abs(float64(lin[i])-want[i]/4) > 1e-7*want[i] {
			t.Errorf("linear inv_freq[%d] = %g, want %g", i, lin[i], want[i]/4)
		}
	}
	// llama3 with original context 1000, low/high freq factors 1/4, factor 8:
	// wavelengths 2π/f are 6.28, 62.8, 628, 6283. Below 1000/4 = 250 they are kept;
	// above 1000 divided by 8; 628 lies between, with smooth = (1000/628.3 − 1)/3 = 0.19718.
	l3 := Rope{Theta: 10000, Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositions: 1000}.InvFreq(8)
	smooth := (1000/(2*math.Pi/0.01) - 1) / 3
	wantL3 := []float64{1, 0.1, (1-smooth)*0.01/8 + smooth*0.01, 0.001 / 8}
	for i := range wantL3 {
		if math.Abs(float64(l3[i])-wantL3[i]) > 1e-6*wantL3[i] {
			t.Errorf("llama3 inv_freq[%d] = %g, want %g", i, l3[i], wantL3[i])
		}
	}
}
