package train

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvfoot/kvfoot/kv"
	"github.com/kvfoot/kvfoot/model"
)

// Three layers of two KV heads, the middle one local: rounding at 0.5 makes
// int(4·0.5) = 2 of the 4 global heads full (the two highest), the local ones stay 1.
func TestWriteMaskFilesFixesLocalHeads(t *testing.T) {
	dir := t.TempDir()
	vals := [][]float64{{0.9, 0.1}, {0.0, 0.2}, {0.3, 0.8}}
	if err := WriteMaskFiles(dir, "soft.tsv", vals, []bool{false, true, false}); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		"soft.tsv":        "0.900000\t0.100000\n1.000000\t1.000000\n0.300000\t0.800000\n",
		"masks_sp0.5.tsv": "1.0\t0.0\n1.0\t1.0\n0.0\t1.0\n",
		"masks_sp0.9.tsv": "0.0\t0.0\n1.0\t1.0\n0.0\t0.0\n", // int(4·0.1) = 0 full
		"masks_sp0.1.tsv": "1.0\t0.0\n1.0\t1.0\n1.0\t1.0\n", // int(4·0.9) = 3 full
	} {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != want {
			t.Errorf("%s:\n%s\nwant\n%s", file, b, want)
		}
	}
}

// PruLong and DuoAttention on a Gemma-3-like model learn the global layer's heads only:
// the local layers' rows of every masks file are 1, and the kv policy reading the file
// makes streaming heads of the global layer alone.
func TestMaskTrainingSkipsLocalLayers(t *testing.T) {
	cfg, err := model.ParseConfig([]byte(`{"architectures":["Gemma3ForCausalLM"],"vocab_size":50,"hidden_size":32,
		"intermediate_size":48,"num_hidden_layers":3,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":8,
		"sliding_window":6,"layer_types":["sliding_attention","full_attention","sliding_attention"]}`))
	if err != nil {
		t.Fatal(err)
	}
	m := model.NewRandom(cfg, 5)
	_, docs := tinyRun(t)
	for _, method := range []string{"prulong", "duo"} {
		t.Run(method, func(t *testing.T) {
			dir := t.TempDir()
			rc := RunConfig{Out: dir, Steps: 3, SeqLen: 64, Batch: 2, Seed: 9, Sink: 2, Window: 8}
			n := newTinyNet(t, m)
			if method == "prulong" {
				_, err = PruLong(n, &PruLongConfig{RunConfig: rc, TargetSparsity: 0.5}, docs)
			} else {
				_, err = Duo(n, &DuoConfig{RunConfig: rc, LR: 0.02, Reg: 1}, docs)
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(filepath.Join(dir, "masks_sp0.5.tsv"))
			if err != nil {
				t.Fatal(err)
			}
			rows := strings.Split(strings.TrimSpace(string(b)), "\n")
			if rows[0] != "1.0\t1.0" || rows[2] != "1.0\t1.0" || strings.Count(rows[1], "1.0") != 1 {
				t.Errorf("masks at 0.5: %q, want local rows 1 and one of the global layer's two heads full", rows)
			}
			s := kv.Shape(m.Shape())
			f, err := kv.Describe(s, fmt.Sprintf("headmask:masks=%s,sparsity=0.5,sink=2,window=8", filepath.Join(dir, "masks_soft.tsv")))
			if method == "duo" {
				f, err = kv.Describe(s, fmt.Sprintf("headmask:masks=%s,sparsity=0.5,sink=2,window=8", filepath.Join(dir, "full_attention_heads.tsv")))
			}
			if err != nil {
				t.Fatal(err)
			}
			if f.Streaming[0][0] || f.Streaming[0][1] || f.Streaming[2][0] || f.Streaming[2][1] || f.StreamingCount() != 1 {
				t.Errorf("streaming heads %v: want one head of the global layer 1 (ceil(0.5·(2−1)) of its 2)", f.Streaming)
			}
		})
	}
}

func TestMaskTrainingRefusesAllLocalModel(t *testing.T) {
	cfg, err := model.ParseConfig([]byte(`{"architectures":["MistralForCausalLM"],"vocab_size":50,"hidden_size":32,
		"intermediate_size":48,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"sliding_window":16}`))
	if err != nil {
		t.Fatal(err)
	}
	_, docs := tinyRun(t)
	_, err = PruLong(newTinyNet(t, model.NewRandom(cfg, 1)), &PruLongConfig{RunConfig: RunConfig{Out: t.TempDir(), Steps: 1, SeqLen: 64, Batch: 1, Sink: 2, Window: 8}, TargetSparsity: 0.5}, docs)
	if err == nil || !strings.Contains(err.Error(), "no head has a full cache to give up") {
		t.Errorf("error %v, want one saying no head has a full cache to give up", err)
	}
}
