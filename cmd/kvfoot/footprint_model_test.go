package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// A Gemma 3 config of 6 layers (5 local of window 4, then a global one) over 6 tokens
// under full attention: (5·18/21 + 1)/6, below 1 (footprint.TestWithLocalLayers has
// the hand count); the global layers alone stay at 1.
func TestFootprintModelCountsLocalLayers(t *testing.T) {
	dir := t.TempDir()
	cfg := `{"architectures":["Gemma3ForCausalLM"],"hidden_size":64,"intermediate_size":128,"num_hidden_layers":6,
		"num_attention_heads":2,"num_key_value_heads":1,"head_dim":32,"vocab_size":100,"sliding_window":4}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := capture(t, func() error {
		return runFootprint([]string{"--prompt-len", "5", "--response-len", "1", "--model", dir, "--format", "json"})
	})
	if err != nil {
		t.Fatal(err)
	}
	var got footprintOutput
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	want := (5*18.0/21 + 1) / 6
	if math.Abs(got.Footprint-want) > 1e-12 || got.LocalLayers != 5 || got.GlobalResult == nil || got.GlobalResult.Footprint != 1 {
		t.Errorf("footprint %v, local layers %d, global %+v; want %v, 5, footprint 1", got.Footprint, got.LocalLayers, got.GlobalResult, want)
	}
}
