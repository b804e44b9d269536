package kv_test

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kvfoot/kvfoot/footprint"
	"github.com/kvfoot/kvfoot/kv"
	"github.com/kvfoot/kvfoot/model"
)

// boundsModel is a GQA model small enough to run every policy at every bound.
func boundsModel() *model.Model {
	return model.NewRandom(model.Config{
		Arch: "LlamaForCausalLM", Hidden: 32, Intermediate: 64, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 8,
		Vocab: 64, NormEps: 1e-5, MaxPositions: 256, Rope: model.Rope{Theta: 10000, Type: "default", Factor: 1},
	}, 11)
}

// run generates from a 20-token prompt under spec with chunk and returns the meter's
// report and the facts' bound on the peak bytes.
func run(t *testing.T, m *model.Model, dir, spec string, chunk int) (footprint.Report, int64, error) {
	t.Helper()
	s := kv.Shape(m.Shape())
	meter := footprint.NewMeter(s.Layers, s.KVHeads)
	c, err := kv.New(s, spec, kv.WithObserver(meter), kv.WithDir(dir))
	if err != nil {
		return footprint.Report{}, 0, err
	}
	prompt := make([]int, 20)
	for i := range prompt {
		prompt[i] = (i*7 + 3) % 64
	}
	const maxTokens = 4
	if _, err := model.Generate(m, c, prompt, model.GenerateOptions{MaxTokens: maxTokens, Chunk: chunk}); err != nil {
		t.Fatalf("%s, chunk %d: %v", spec, chunk, err)
	}
	bound, err := c.Facts().PeakBytes(kv.Workload{Prompt: len(prompt), MaxTokens: maxTokens, Chunk: chunk})
	if err != nil {
		t.Fatalf("%s: %v", spec, err)
	}
	return meter.Report(false), bound, nil
}

func masksDir(t *testing.T) string {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "masks.tsv"), []byte("0.9\t0.2\n0.4\t0.7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// withKey is spec with key set to value in its part named name.
func withKey(spec, name, key, value string) string {
	parts := strings.Split(spec, "+")
	for i, p := range parts {
		n, args, _ := strings.Cut(p, ":")
		if n != name {
			continue
		}
		var kept []string
		for _, a := range strings.Split(args, ",") {
			if k, _, _ := strings.Cut(a, "="); a != "" && k != key {
				kept = append(kept, a)
			}
		}
		parts[i] = n + ":" + strings.Join(append(kept, key+"="+value), ",")
	}
	return strings.Join(parts, "+")
}

// TestEveryKeyAtItsBounds holds every numeric key of every registered policy at its
// least and greatest value, with one-token, odd and whole-prompt chunks: the policy
// either refuses with a message naming the key, or runs, with a footprint in (0, 1]
// and a peak within its own bound. A policy registered later is covered too.
func TestEveryKeyAtItsBounds(t *testing.T) {
	m, dir := boundsModel(), masksDir(t)
	num := func(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }
	for _, r := range kv.Registry() {
		for _, p := range r.Params {
			if p.Type != kv.Int && p.Type != kv.Float {
				continue
			}
			for _, v := range []float64{p.Min, p.Max} {
				spec := withKey(r.Example, r.Name, p.Key, num(v))
				for _, chunk := range []int{1, 7, 0} {
					rep, bound, err := run(t, m, dir, spec, chunk)
					if err != nil {
						// the message past the quoted spec (which holds every key) must name the key
						why := strings.TrimPrefix(err.Error(), fmt.Sprintf("kv: policy %q: ", spec))
						if why == err.Error() || !strings.Contains(why, p.Key) {
							t.Errorf("%s: refused without naming %s: %v", spec, p.Key, err)
						}
						break
					}
					if !(rep.Footprint > 0 && rep.Footprint <= 1+1e-12) {
						t.Errorf("%s, chunk %d: footprint %g, want in (0, 1]", spec, chunk, rep.Footprint)
					}
					if rep.PeakBytes > bound {
						t.Errorf("%s, chunk %d: held %d bytes, above its bound %d", spec, chunk, rep.PeakBytes, bound)
					}
				}
			}
		}
	}
}

// TestBoundsMeanWhatTheySay: at the edges of their ranges the policies keep exactly
// what the paper's definitions say (the footprint measured against the formulas),
// and what no definition covers is refused.
func TestBoundsMeanWhatTheySay(t *testing.T) {
	m, dir := boundsModel(), masksDir(t)
	const prompt, response = 20, 3
	analytic := func(p footprint.Params) float64 {
		p.Prompt, p.Response = prompt, response
		r, err := footprint.Analytic(p)
		if err != nil {
			t.Fatal(err)
		}
		return r.Footprint
	}
	exact := func(p footprint.Params) float64 {
		p.Prompt, p.Response = prompt, response
		r, err := footprint.Exact(p)
		if err != nil {
			t.Fatal(err)
		}
		return r.Footprint
	}
	for _, chunk := range []int{1, 7, 0} {
		cases := []struct {
			spec string
			want float64
		}{
			// a zero sink and window keep nothing: each query sees its own chunk only
			{"streaming:sink=0,window=0", analytic(footprint.Params{Chunk: chunk, HeadSparsity: 1})},
			{"streaming:sink=0,window=1", analytic(footprint.Params{Chunk: chunk, Window: 1, HeadSparsity: 1})},
			// a sink and window longer than the prompt and response keep everything
			{"streaming:sink=64,window=64", 1},
			{"headmask:masks=masks.tsv,sparsity=0,sink=0,window=0", 1},
			{"headmask:masks=masks.tsv,sparsity=1,sink=0,window=0", analytic(footprint.Params{Chunk: chunk, HeadSparsity: 1})},
			{"snapkv:sparsity=0,window=1,chunked=true,gqa=mean", 1},
			{"snapkv:sparsity=1,window=1,chunked=true,gqa=mean", exact(footprint.Params{Chunk: chunk, KVSparsity: 1, KVWindow: 1})},
			{"snapkv:sparsity=1,window=1,gqa=mean", exact(footprint.Params{Chunk: chunk, KVSparsity: 1, KVWindow: 1, PostFill: true})},
			{"tova:budget=1000", 1},
			{"h2o:heavy=1000,recent=0", 1},
		}
		for _, c := range cases {
			rep, _, err := run(t, m, dir, c.spec, chunk)
			if err != nil {
				t.Errorf("%s: %v", c.spec, err)
				continue
			}
			if math.Abs(rep.Footprint-c.want) > 1e-12 {
				t.Errorf("%s, chunk %d: footprint %.15g, want %.15g", c.spec, chunk, rep.Footprint, c.want)
			}
		}
	}
	for _, spec := range []string{"h2o:heavy=0,recent=0", "streaming:window=-1", "snapkv:sparsity=1.5", "tova:budget=0", "quant:bits=3"} {
		if _, _, err := run(t, m, dir, spec, 7); err == nil {
			t.Errorf("%s: accepted, want a refusal", spec)
		}
	}
}

// TestIntKeysCompareExactly: an integer key one past its maximum is refused, however
// large the maximum (2^62 is random's seed bound; float64 cannot tell 2^62+1 from it).
func TestIntKeysCompareExactly(t *testing.T) {
	s := kv.Shape{Layers: 1, Heads: 2, KVHeads: 1, HeadDim: 8}
	if _, err := kv.New(s, "random:sparsity=0.5,seed=4611686018427387904"); err != nil {
		t.Errorf("seed=2^62: %v", err)
	}
	if _, err := kv.New(s, "random:sparsity=0.5,seed=4611686018427387905"); err == nil || !strings.Contains(err.Error(), "seed") {
		t.Errorf("seed=2^62+1: %v, want a refusal naming seed", err)
	}
}
