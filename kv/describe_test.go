package kv_test

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/kvfoot/kvfoot/footprint"
	"github.com/kvfoot/kvfoot/kv"
	"github.com/kvfoot/kvfoot/model"
)

// TestPeakBytes: for every kind of policy, the bound on a request's peak bytes bounds
// the bytes the cache really held during a generation, and equals the meter's peak
// entries (the entries every KV head held in the forward that held most) for the
// policies the analytic calculator models.
func TestPeakBytes(t *testing.T) {
	m := model.NewRandom(model.Config{
		Arch: "LlamaForCausalLM", Hidden: 64, Intermediate: 128, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 16,
		Vocab: 4096, NormEps: 1e-5, MaxPositions: 512, Rope: model.Rope{Theta: 10000, Type: "default", Factor: 1},
	}, 7)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "m.tsv"), []byte("0.9 0.2\n0.4 0.7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := kv.Shape(m.Shape())
	const prompt, maxTokens = 70, 12
	ids := make([]int, prompt)
	for i := range ids {
		ids[i] = (i*977 + 13) % 4000
	}
	cases := []struct {
		spec  string
		chunk int
		exact bool // the prediction is the meter's peak
	}{
		{"full", 16, true},
		{"full", 0, true},
		{"streaming:sink=4,window=8", 16, true},
		{"streaming:sink=4,window=8", 0, true},
		{"streaming", 16, true}, // defaults 128/1024: nothing evicted at these lengths
		{"snapkv:sparsity=0.5,window=4,chunked=true", 16, true},
		{"snapkv:sparsity=0.5,window=4,chunked=true,patch=4", 16, false},
		{"snapkv:sparsity=0.5,window=4", 16, true},
		{"snapkv:sparsity=0.7,window=4,chunked=true,gqa=mean", 16, true},
		{"pyramidkv:sparsity=0.5,window=4,chunked=true", 16, true},
		{"h2o:heavy=8,recent=8", 16, false},
		{"tova:budget=12", 16, false},
		{"headmask:masks=m.tsv,sparsity=1,sink=4,window=8", 16, true},
		{"headmask:masks=m.tsv,sparsity=0.5,sink=4,window=8", 16, false},
		{"headmask:masks=m.tsv,sink=4,window=8+snapkv:sparsity=0.5,window=4,chunked=true", 16, false},
		{"bf16", 16, true},
		{"quant:bits=4,group=8,residual=8", 16, false},
		{"streaming:sink=4,window=8+quant:bits=2,group=4,residual=4", 16, false},
		{"h2o:heavy=8,recent=8+quant:bits=2,group=4,residual=4", 16, false},
	}
	for _, c := range cases {
		meter := footprint.NewMeter(s.Layers, s.KVHeads)
		cache, err := kv.New(s, c.spec, kv.WithObserver(meter), kv.WithDir(dir))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := model.Generate(m, cache, ids, model.GenerateOptions{MaxTokens: maxTokens, Chunk: c.chunk}); err != nil {
			t.Fatal(err)
		}
		rep := meter.Report(false)
		got, err := peak(c.spec, s, dir, kv.Workload{Prompt: prompt, MaxTokens: maxTokens, Chunk: c.chunk})
		if err != nil {
			t.Fatal(err)
		}
		if rep.PeakBytes > got {
			t.Errorf("%s, chunk %d: the cache held %d bytes, above the predicted %d", c.spec, c.chunk, rep.PeakBytes, got)
		}
		perEntry := int64(2 * s.HeadDim * 4)
		if c.spec == "bf16" {
			perEntry /= 2
		}
		entries := int64(math.Round(rep.PeakEntries * float64(s.Layers*rep.Heads))) // every stored head
		if c.exact && got != entries*perEntry {
			t.Errorf("%s, chunk %d: predicted %d bytes, the meter's peak is %d entries = %d bytes", c.spec, c.chunk, got, entries, entries*perEntry)
		}
	}
	// quantized storage is predicted smaller than float32 over a long generation
	f, _ := peak("full", s, dir, kv.Workload{Prompt: 400, MaxTokens: 100, Chunk: 64})
	q, _ := peak("quant:bits=4", s, dir, kv.Workload{Prompt: 400, MaxTokens: 100, Chunk: 64})
	if q >= f/2 {
		t.Errorf("quant:bits=4 predicted %d bytes, full %d: want well under half", q, f)
	}
}

func peak(spec string, s kv.Shape, dir string, w kv.Workload) (int64, error) {
	f, err := kv.Describe(s, spec, kv.WithDir(dir))
	if err != nil {
		return 0, err
	}
	return f.PeakBytes(w)
}
