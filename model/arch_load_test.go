package model_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvfoot/kvfoot/format/safetensors"
	"github.com/kvfoot/kvfoot/model"
)

// A Gemma 3 text model saved with its multimodal parent's layout (text_config nested,
// tensors under model.language_model.) loads, its norms folded to 1 + w, and runs like
// the same weights saved plainly.
func TestGemma3NestedLayoutLoads(t *testing.T) {
	text := `{"hidden_size":16,"intermediate_size":24,"num_hidden_layers":2,"num_attention_heads":2,
		"num_key_value_heads":1,"head_dim":8,"vocab_size":20,"sliding_window":3,"sliding_window_pattern":2,"query_pre_attn_scalar":8}`
	nested := `{"architectures":["Gemma3ForCausalLM"],"text_config":` + text + `}`
	plain := strings.Replace(text, "{", `{"architectures":["Gemma3ForCausalLM"],`, 1)
	var ts []safetensors.Tensor
	val := 0
	add := func(name string, shape ...int) {
		n := 1
		for _, s := range shape {
			n *= s
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32((val*7+i*13)%17-8) / 40
		}
		val++
		ts = append(ts, safetensors.FromFloat32s(name, shape, v))
	}
	add("embed_tokens.weight", 20, 16)
	add("norm.weight", 16)
	for l := range 2 {
		p := fmt.Sprintf("layers.%d.", l)
		add(p+"self_attn.q_proj.weight", 16, 16)
		add(p+"self_attn.k_proj.weight", 8, 16)
		add(p+"self_attn.v_proj.weight", 8, 16)
		add(p+"self_attn.o_proj.weight", 16, 16)
		add(p+"self_attn.q_norm.weight", 8)
		add(p+"self_attn.k_norm.weight", 8)
		add(p+"mlp.gate_proj.weight", 24, 16)
		add(p+"mlp.up_proj.weight", 24, 16)
		add(p+"mlp.down_proj.weight", 16, 24)
		for _, n := range []string{"input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm"} {
			add(p+n+".weight", 16)
		}
	}
	write := func(cfg, prefix string) string {
		dir := t.TempDir()
		named := make([]safetensors.Tensor, len(ts))
		for i, x := range ts {
			named[i] = x
			named[i].Name = prefix + x.Name
		}
		var b bytes.Buffer
		if err := safetensors.Write(&b, named, nil); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "model.safetensors"), b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	a, err := model.Load(write(plain, "model."), model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := model.Load(write(nested, "model.language_model."), model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// the stored post_feedforward_layernorm of layer 1: tensor 2 + 13 + 12 = 27
	if !strings.HasSuffix(ts[27].Name, "layers.1.post_feedforward_layernorm.weight") {
		t.Fatalf("tensor 27 is %s", ts[27].Name)
	}
	w, _ := ts[27].Float32s()
	for i, x := range b.Layers[1].PostMLPNorm {
		if x != 1+w[i] {
			t.Fatalf("post_feedforward_layernorm[%d] loaded %v, stored %v: want 1 + stored", i, x, w[i])
		}
	}
	ids := []int{1, 5, 7, 2, 9, 11, 3}
	la, lb := allLogits(t, a, ids, 0), allLogits(t, b, ids, 0)
	if fmt.Sprint(la) != fmt.Sprint(lb) {
		t.Error("the nested layout's logits differ from the plain layout's")
	}
}
