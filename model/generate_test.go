package model_test

import (
	"math"
	"slices"
	"testing"

	"github.com/kvfoot/kvfoot/model"
)

func tiny() model.Config {
	return model.Config{Arch: "LlamaForCausalLM", Hidden: 32, Intermediate: 48, Layers: 2, Heads: 4, KVHeads: 2,
		HeadDim: 8, Vocab: 50, NormEps: 1e-5, QKVBias: true, Rope: model.Rope{Theta: 10000, Type: "default", Factor: 1}}
}

// TestChunkInvariance: the last logits of a prompt do not depend on how it is chunked.
func TestChunkInvariance(t *testing.T) {
	m := model.NewRandom(tiny(), 3)
	ids := make([]int, 37)
	for i := range ids {
		ids[i] = (i*7 + 3) % m.Config.Vocab
	}
	var want []float32
	for _, chunk := range []int{0, 1, 5, 16} {
		got := allLogits(t, m, ids, chunk)
		if want == nil {
			want = got
			continue
		}
		for i := range want {
			if math.Abs(float64(got[i]-want[i])) > 1e-5 {
				t.Fatalf("chunk %d: logit %d = %g, whole prompt %g", chunk, i, got[i], want[i])
			}
		}
	}
}

func TestGenerateStopsAndStreams(t *testing.T) {
	m := model.NewRandom(tiny(), 5)
	prompt := []int{1, 2, 3, 4, 5}
	full, err := model.Generate(m, newFullCache(m.Shape()), prompt, model.GenerateOptions{MaxTokens: 12})
	if err != nil {
		t.Fatal(err)
	}
	if len(full.IDs) != 12 || full.StopReason != "length" {
		t.Fatalf("got %d ids, reason %s", len(full.IDs), full.StopReason)
	}
	// stopping at the 4th generated id keeps it and ends there
	stop := full.IDs[3]
	first := 0
	for first < 3 && full.IDs[first] != stop {
		first++
	}
	var streamed []int
	res, err := model.Generate(m, newFullCache(m.Shape()), prompt, model.GenerateOptions{
		MaxTokens: 12, Stop: []int{stop}, Chunk: 2,
		OnToken: func(id int) bool { streamed = append(streamed, id); return true },
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.IDs) != first+1 || res.StopReason != "stop" || res.IDs[first] != stop {
		t.Errorf("stop at %d: got %v (%s), full run %v", stop, res.IDs, res.StopReason, full.IDs)
	}
	if len(streamed) != len(res.IDs) {
		t.Errorf("streamed %v, returned %v", streamed, res.IDs)
	}
	res, _ = model.Generate(m, newFullCache(m.Shape()), prompt, model.GenerateOptions{MaxTokens: 12, OnToken: func(int) bool { return false }})
	if len(res.IDs) != 1 || res.StopReason != "callback" {
		t.Errorf("callback stop: %v %s", res.IDs, res.StopReason)
	}
	if _, err := model.Generate(m, newFullCache(m.Shape()), nil, model.GenerateOptions{MaxTokens: 1}); err == nil {
		t.Error("empty prompt accepted")
	}
}

// TestSampler checks the sampler's distribution against the softmax computed by
// hand, and that top-k and top-p cut where the definitions say.
func TestSampler(t *testing.T) {
	logits := []float32{2, 1, 0, -1, 3}
	draw := func(s model.Sampling, n int) []float64 {
		sm, err := model.NewSampler(s, len(logits))
		if err != nil {
			t.Fatal(err)
		}
		freq := make([]float64, len(logits))
		for range n {
			freq[sm.Sample(logits)] += 1 / float64(n)
		}
		return freq
	}
	if f := draw(model.Sampling{}, 10); f[4] < 0.999 {
		t.Errorf("greedy picked %v", f)
	}
	// temperature 2: p ∝ exp(l/2)
	var z float64
	want := make([]float64, len(logits))
	for i, l := range logits {
		want[i] = math.Exp(float64(l) / 2)
		z += want[i]
	}
	f := draw(model.Sampling{Temperature: 2, Seed: 1}, 200000)
	for i := range want {
		if math.Abs(f[i]-want[i]/z) > 0.005 {
			t.Errorf("temperature 2: token %d drawn %.4f, want %.4f", i, f[i], want[i]/z)
		}
	}
	// top-k 2 keeps tokens 4 and 0 only, in ratio e³:e²
	f = draw(model.Sampling{Temperature: 1, TopK: 2, Seed: 2}, 100000)
	if f[1]+f[2]+f[3] != 0 || math.Abs(f[4]-1/(1+math.Exp(-1))) > 0.006 {
		t.Errorf("top-k 2: %v", f)
	}
	// probabilities at T=1, sorted, are .636 .234 .086 .032 .012 (cumulative .636 .870 .956):
	// top-p 0.5 keeps 1 token, 0.85 keeps 2, 0.9 keeps 3
	for _, c := range []struct {
		p    float64
		kept int
	}{{0.5, 1}, {0.85, 2}, {0.9, 3}, {1, 5}} {
		f = draw(model.Sampling{Temperature: 1, TopP: c.p, Seed: 3}, 20000)
		kept := 0
		for _, x := range f {
			if x > 0 {
				kept++
			}
		}
		if kept != c.kept {
			t.Errorf("top-p %g kept %d tokens, want %d (%v)", c.p, kept, c.kept, f)
		}
	}
	a, b := draw(model.Sampling{Temperature: 1, Seed: 9}, 50), draw(model.Sampling{Temperature: 1, Seed: 9}, 50)
	for i := range a {
		if a[i] != b[i] {
			t.Fatal("the same seed gave different draws")
		}
	}
	for _, s := range []model.Sampling{{Temperature: -1}, {TopK: -1}, {TopP: 1.5}} {
		if _, err := model.NewSampler(s, 5); err == nil {
			t.Errorf("%+v accepted", s)
		}
	}
}

// TestToBF16: a model held in bf16 gives the logits of its float32 original up to
// the rounding of the weights, and ties stay tied.
func TestToBF16(t *testing.T) {
	cfg := tiny()
	cfg.TieEmbeddings = true
	m := model.NewRandom(cfg, 4)
	ids := []int{3, 1, 4, 1, 5, 9, 2, 6}
	want := allLogits(t, m, ids, 0)
	m.ToBF16()
	if m.Head.BF16 == nil || &m.Head.BF16[0] != &m.Embed.BF16[0] || m.Layers[1].Down.W.F32 != nil {
		t.Fatal("weights not converted, or the tie was lost")
	}
	got := allLogits(t, m, ids, 0)
	var worst, big float64
	for i := range got {
		worst = math.Max(worst, math.Abs(float64(got[i]-want[i])))
		big = math.Max(big, math.Abs(float64(want[i])))
	}
	// bf16 keeps 8 significant bits: a relative error of about 2⁻⁹ per weight
	if worst == 0 || worst > 0.02*big {
		t.Errorf("bf16 logits differ by %g (largest logit %g)", worst, big)
	}
}

// stepLog records the steps a cache is given.
type stepLog struct {
	*fullCache
	steps []model.Step
	tail  int
}

func (c *stepLog) LocalChunk() int { return c.tail }

func (c *stepLog) Begin(s model.Step) error {
	c.steps = append(c.steps, s)
	return c.fullCache.Begin(s)
}

// Prefill with a local final chunk: chunks of Chunk over all but the cache's last
// LocalChunk tokens, then those as one final chunk (Locret's schedule: 23 tokens,
// chunk 8, tail 5 → 8, 8, 2, 5).
func TestPrefillTail(t *testing.T) {
	m := model.NewRandom(tiny(), 3)
	ids := make([]int, 23)
	c := &stepLog{fullCache: newFullCache(m.Shape()), tail: 5}
	if _, err := model.NewRunner(m, 8).Prefill(c, ids, model.PrefillOptions{Chunk: 8}); err != nil {
		t.Fatal(err)
	}
	var rows []int
	for i, s := range c.steps {
		rows = append(rows, s.Rows)
		if s.Final != (i == len(c.steps)-1) || !s.Prefill {
			t.Errorf("step %d: %+v, want a pre-fill step, final only last", i, s)
		}
	}
	if want := []int{8, 8, 2, 5}; !slices.Equal(rows, want) {
		t.Errorf("chunks %v, want %v", rows, want)
	}
}
