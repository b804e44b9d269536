package model_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvfoot/kvfoot/format/safetensors"
	"github.com/kvfoot/kvfoot/model"
)

// copyModel makes a writable copy of a test checkpoint whose weights the caller may replace.
func copyModel(t *testing.T, name string) string {
	t.Helper()
	src := filepath.Join("..", "testdata", "models", name)
	dir := t.TempDir()
	for _, f := range []string{"config.json", "model.safetensors"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// rewriteWeights rewrites dir's model.safetensors through edit.
func rewriteWeights(t *testing.T, dir string, edit func(map[string]safetensors.Tensor)) {
	t.Helper()
	path := filepath.Join(dir, "model.safetensors")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Parse(b, path)
	if err != nil {
		t.Fatal(err)
	}
	ts := map[string]safetensors.Tensor{}
	for _, n := range f.Names() {
		ts[n], _ = f.Tensor(n)
	}
	edit(ts)
	var list []safetensors.Tensor
	for _, tn := range ts {
		list = append(list, tn)
	}
	var buf bytes.Buffer
	if err := safetensors.Write(&buf, list, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoadErrors(t *testing.T) {
	const k = "model.layers.1.self_attn.k_proj.weight"
	cases := []struct {
		name, want string
		edit       func(t *testing.T, dir string)
	}{
		{"no config", "config.json", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "config.json")) }},
		{"no weights", "no model.safetensors", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "model.safetensors")) }},
		{"truncated weights", "model.safetensors", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "model.safetensors")
			b, _ := os.ReadFile(p)
			os.WriteFile(p, b[:len(b)-100], 0o644)
		}},
		{"missing tensor", `tensor "` + k + `" not found`, func(t *testing.T, dir string) {
			rewriteWeights(t, dir, func(m map[string]safetensors.Tensor) { delete(m, k) })
		}},
		{"wrong shape", `tensor "` + k + `": shape [8 64], want [16 64]`, func(t *testing.T, dir string) {
			rewriteWeights(t, dir, func(m map[string]safetensors.Tensor) {
				w := m[k]
				m[k] = safetensors.Tensor{Name: k, Dtype: w.Dtype, Shape: []int{8, 64}, Data: w.Data[:len(w.Data)/2]}
			})
		}},
		{"integer weights", `tensor "` + k + `": dtype I32, want F32, BF16 or F16`, func(t *testing.T, dir string) {
			rewriteWeights(t, dir, func(m map[string]safetensors.Tensor) {
				w := m[k]
				m[k] = safetensors.Tensor{Name: k, Dtype: safetensors.I32, Shape: w.Shape, Data: w.Data}
			})
		}},
		{"inconsistent config", "num_key_value_heads", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "config.json")
			b, _ := os.ReadFile(p)
			os.WriteFile(p, bytes.Replace(b, []byte(`"num_key_value_heads": 2`), []byte(`"num_key_value_heads": 3`), 1), 0o644)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := copyModel(t, "llama-gqa")
			c.edit(t, dir)
			m, err := model.Load(dir, model.LoadOptions{})
			if err == nil {
				m.Close()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want one containing %q", err, c.want)
			}
		})
	}
}

// TestF16Weights: f16 weights are widened at load and give the reference logits
// up to f16 rounding of the weights.
func TestF16Weights(t *testing.T) {
	dir := copyModel(t, "llama-gqa")
	rewriteWeights(t, dir, func(m map[string]safetensors.Tensor) {
		for n, tn := range m {
			v, _ := tn.Float32s()
			b := make([]byte, 2*len(v))
			for i, x := range v {
				h := toF16(x)
				b[2*i], b[2*i+1] = byte(h), byte(h>>8)
			}
			m[n] = safetensors.Tensor{Name: n, Dtype: safetensors.F16, Shape: tn.Shape, Data: b}
		}
	})
	m, err := model.Load(dir, model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Layers[0].Q.W.F32 == nil {
		t.Fatal("f16 weights should be widened to float32")
	}
	ref := loadReference(t, filepath.Join("..", "testdata", "models", "llama-gqa"))
	got := allLogits(t, m, ref.ids[:32], 0)
	var worst float64
	for i := range got {
		worst = math.Max(worst, math.Abs(float64(got[i]-ref.logits[i])))
	}
	// f16 keeps 11 significant bits: the logits move, but by far less than their size.
	if worst > 0.05 || worst == 0 {
		t.Errorf("f16 logits differ from the f32 reference by %g", worst)
	}
}

// toF16 rounds a float32 in the normal f16 range to the nearest f16 (the test's weights are small).
func toF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int((b>>23)&0xff) - 127 + 15
	if exp <= 0 {
		return sign
	}
	mant := b & 0x7fffff
	h := uint32(exp)<<10 | mant>>13
	if mant&0x1fff > 0x1000 || (mant&0x1fff == 0x1000 && h&1 == 1) {
		h++
	}
	return sign | uint16(h)
}

func TestBF16StaysBF16(t *testing.T) {
	dir := filepath.Join("..", "testdata", "models", "mistral-bf16")
	m, err := model.Load(dir, model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Layers[0].Q.W.BF16 == nil || m.Embed.BF16 == nil {
		t.Error("bf16 weights should stay bf16 by default")
	}
	f, err := model.Load(dir, model.LoadOptions{F32: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Layers[0].Q.W.F32 == nil {
		t.Error("LoadOptions.F32 should widen bf16 weights")
	}
	ref := loadReference(t, dir)
	a, b := allLogits(t, m, ref.ids[:40], 0), allLogits(t, f, ref.ids[:40], 0)
	for i := range a {
		if math.Abs(float64(a[i]-b[i])) > 1e-4 {
			t.Fatalf("logit %d: bf16 kernels %g, widened %g", i, a[i], b[i])
		}
	}
}

func TestTokenOutsideVocab(t *testing.T) {
	m := model.NewRandom(tiny(), 1)
	r := model.NewRunner(m, 4)
	c := newFullCache(m.Shape())
	for _, id := range []int{-1, m.Config.Vocab} {
		if _, err := r.Prefill(c, []int{1, id}, model.PrefillOptions{}); err == nil || !strings.Contains(err.Error(), "outside the vocabulary") {
			t.Errorf("id %d: error %v", id, err)
		}
	}
	if c.Pos() != 0 {
		t.Error("a rejected chunk must leave the cache untouched")
	}
}

// TestShardedCheckpoint splits a checkpoint into two shards with an index, as
// save_pretrained does for large models, and expects the reference logits.
func TestShardedCheckpoint(t *testing.T) {
	src := filepath.Join("..", "testdata", "models", "llama-gqa")
	dir := copyModel(t, "llama-gqa")
	path := filepath.Join(dir, "model.safetensors")
	b, _ := os.ReadFile(path)
	f, err := safetensors.Parse(b, path)
	if err != nil {
		t.Fatal(err)
	}
	shards := [2][]safetensors.Tensor{}
	index := map[string]string{}
	for i, n := range f.Names() {
		tn, _ := f.Tensor(n)
		shards[i%2] = append(shards[i%2], tn)
		index[n] = fmt.Sprintf("model-%05d-of-00002.safetensors", i%2+1)
	}
	for i, s := range shards {
		var buf bytes.Buffer
		if err := safetensors.Write(&buf, s, nil); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("model-%05d-of-00002.safetensors", i+1)), buf.Bytes(), 0o644)
	}
	idx, _ := json.Marshal(map[string]any{"metadata": map[string]any{"total_size": len(b)}, "weight_map": index})
	os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), idx, 0o644)
	os.Remove(path)
	m, err := model.Load(dir, model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ref := loadReference(t, src)
	checkLogits(t, allLogits(t, m, ref.ids[:64], 0), ref.logits[:64*m.Config.Vocab])
}
