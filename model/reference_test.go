package model_test

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/kvfoot/kvfoot/format/safetensors"
	"github.com/kvfoot/kvfoot/model"
)

// reference is what tools/oracle/hf_reference.py stored next to each checkpoint.
type reference struct {
	ids                  []int
	logits               []float32 // [len(ids), vocab]
	greedyPrompt, greedy []int
}

// load opens the checkpoint of dir.
func (ref reference) load(t *testing.T, dir string) *model.Model {
	t.Helper()
	m, err := model.Load(dir, model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func loadReference(t *testing.T, dir string) reference {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(dir, "reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if f.Metadata["oracle"] != "2" {
		t.Fatalf("%s: reference made by an old oracle (metadata oracle=%q, want 2): rebuild with tools/oracle/hf_reference.py build", dir, f.Metadata["oracle"])
	}
	ints := func(name string) []int {
		tn, ok := f.Tensor(name)
		if !ok {
			t.Fatalf("reference has no %q", name)
		}
		v, err := tn.Int64s()
		if err != nil {
			t.Fatal(err)
		}
		out := make([]int, len(v))
		for i, x := range v {
			out[i] = int(x)
		}
		return out
	}
	lt, _ := f.Tensor("logits")
	l, err := lt.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	return reference{ids: ints("input_ids"), logits: append([]float32(nil), l...),
		greedyPrompt: ints("greedy_prompt"), greedy: ints("greedy_output")}
}

// oracles are the checkpoints of testdata/models, each made by transformers.
var oracles = []string{"llama-gqa", "llama3-rope-scaling", "qwen2-bias", "mistral-bf16", "llama-headdim-bias", "llama-mha-linear"}

func newCache(t *testing.T, m *model.Model) model.Cache {
	t.Helper()
	return newFullCache(m.Shape())
}

// allLogits feeds ids in chunks of chunk tokens (0: all at once) and returns every
// position's logits.
func allLogits(t *testing.T, m *model.Model, ids []int, chunk int) []float32 {
	t.Helper()
	if chunk == 0 {
		chunk = len(ids)
	}
	r := model.NewRunner(m, chunk)
	c := newCache(t, m)
	var out []float32
	_, err := r.Prefill(c, ids, model.PrefillOptions{Chunk: chunk, All: true, OnChunk: func(_ int, l []float32) error {
		out = append(out, l...)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkLogits applies the tolerance: every logit within
// 1e-3 · max(1, largest |reference logit|).
func checkLogits(t *testing.T, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d logits, want %d", len(got), len(want))
	}
	var big float64 = 1
	for _, w := range want {
		big = math.Max(big, math.Abs(float64(w)))
	}
	tol := 1e-3 * big
	worst, at := 0.0, 0
	for i := range want {
		if d := math.Abs(float64(got[i] - want[i])); d > worst || math.IsNaN(d) {
			worst, at = d, i
			if math.IsNaN(d) {
				worst = math.Inf(1)
			}
		}
	}
	if worst > tol {
		t.Errorf("logit %d: got %g, want %g (|diff| %g > tolerance %g)", at, got[at], want[at], worst, tol)
	}
	t.Logf("max |diff| %.3g (tolerance %.3g)", worst, tol)
}

func TestLogitsMatchReference(t *testing.T) {
	for _, name := range oracles {
		dir := filepath.Join("..", "testdata", "models", name)
		ref := loadReference(t, dir)
		m := ref.load(t, dir)
		for _, chunk := range []int{1, 7, 64, 0} {
			t.Run(fmt.Sprintf("%s/chunk=%d", name, chunk), func(t *testing.T) {
				checkLogits(t, allLogits(t, m, ref.ids, chunk), ref.logits)
			})
		}
	}
}

func TestGreedyMatchesReference(t *testing.T) {
	for _, name := range oracles {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join("..", "testdata", "models", name)
			ref := loadReference(t, dir)
			m := ref.load(t, dir)
			res, err := model.Generate(m, newCache(t, m), ref.greedyPrompt, model.GenerateOptions{MaxTokens: len(ref.greedy), Chunk: 7})
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(res.IDs) != fmt.Sprint(ref.greedy) {
				t.Errorf("greedy continuation\n got %v\nwant %v", res.IDs, ref.greedy)
			}
		})
	}
}

// TestConfigStyleV4 rewrites each rope_parameters config (transformers 5.x) into the
// 4.x style of the published Llama-3.1 checkpoints (rope_theta and rope_scaling at
// the top level) next to a link to the same weights, and expects the same logits.
func TestConfigStyleV4(t *testing.T) {
	for _, name := range []string{"llama3-rope-scaling", "llama-mha-linear", "llama-gqa"} {
		t.Run(name, func(t *testing.T) {
			src, _ := filepath.Abs(filepath.Join("..", "testdata", "models", name))
			raw, err := os.ReadFile(filepath.Join(src, "config.json"))
			if err != nil {
				t.Fatal(err)
			}
			var cfg map[string]any
			if err := json.Unmarshal(raw, &cfg); err != nil {
				t.Fatal(err)
			}
			rp := cfg["rope_parameters"].(map[string]any)
			delete(cfg, "rope_parameters")
			cfg["rope_theta"] = rp["rope_theta"]
			delete(rp, "rope_theta")
			if rp["rope_type"] == "default" {
				cfg["rope_scaling"] = nil
			} else {
				cfg["rope_scaling"] = rp
			}
			dir := t.TempDir()
			out, _ := json.Marshal(cfg)
			if err := os.WriteFile(filepath.Join(dir, "config.json"), out, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(filepath.Join(src, "model.safetensors"), filepath.Join(dir, "model.safetensors")); err != nil {
				t.Fatal(err)
			}
			m, err := model.Load(dir, model.LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			want, _ := model.LoadConfig(src)
			if m.Config.Rope != want.Rope {
				t.Errorf("rope from 4.x style %+v, from 5.x style %+v", m.Config.Rope, want.Rope)
			}
			ref := loadReference(t, src)
			checkLogits(t, allLogits(t, m, ref.ids, 0), ref.logits)
		})
	}
}
