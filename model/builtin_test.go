package model_test

import (
	"path/filepath"
	"testing"

	"github.com/kvfoot/kvfoot/format/safetensors"
	"github.com/kvfoot/kvfoot/model"
)

// TestBuiltinModelMatchesTransformers checks kvfoot's built-in model against the
// logits transformers computed for it (tools/oracle/hf_reference.py run, float32
// from the stored bf16 weights), over 300 tokens of Python source, whole and chunked.
func TestBuiltinModelMatchesTransformers(t *testing.T) {
	f, err := safetensors.Open(filepath.Join("..", "testdata", "builtin", "reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	it, ok := f.Tensor("input_ids")
	lt, ok2 := f.Tensor("logits")
	if !ok || !ok2 {
		t.Fatal("reference lacks input_ids or logits")
	}
	ids64, err := it.Int64s()
	if err != nil {
		t.Fatal(err)
	}
	want, err := lt.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]int, len(ids64))
	for i, v := range ids64 {
		ids[i] = int(v)
	}
	m, err := model.Load(filepath.Join("..", "models", "kvfoot-small"), model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, chunk := range []int{0, 64} {
		checkLogits(t, allLogits(t, m, ids, chunk), want)
	}
}
