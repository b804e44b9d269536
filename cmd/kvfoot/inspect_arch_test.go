package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/kvfoot/kvfoot/model"
	"github.com/kvfoot/kvfoot/train"
)

// inspect shows a Gemma 3 model's local and global layers, their windows and RoPE, and
// the KV bytes a token takes per layer (2 · 1 KV head · head dim 8 · 4 bytes = 64).
func TestInspectShowsLocalLayers(t *testing.T) {
	dir := t.TempDir()
	cfgJSON := `{"architectures":["Gemma3ForCausalLM"],"hidden_size":16,"intermediate_size":24,"num_hidden_layers":3,
		"num_attention_heads":2,"num_key_value_heads":1,"head_dim":8,"vocab_size":20,"sliding_window":5,
		"sliding_window_pattern":3,"rope_local_base_freq":20000}`
	cfg, err := model.ParseConfig([]byte(cfgJSON))
	if err != nil {
		t.Fatal(err)
	}
	net, err := train.New(model.NewRandom(cfg, 1), train.Options{MaxLen: 2, Window: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := net.Params.Save(filepath.Join(dir, "model.safetensors")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfgJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := capture(t, func() error { return runInspect([]string{"--model", dir, "--format", "json"}) })
	if err != nil {
		t.Fatal(err)
	}
	var got inspectOutput
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got.LocalLayers, got.Windows) != "[0 1] [5 5]" || got.KVBytesPerLayer != 64 || got.LocalRope == nil || got.LocalRope.Theta != 20000 {
		t.Errorf("local layers %v windows %v, bytes per layer %d, local rope %+v; want [0 1] [5 5], 64, theta 20000",
			got.LocalLayers, got.Windows, got.KVBytesPerLayer, got.LocalRope)
	}
}
