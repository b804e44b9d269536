package kv

import (
	"fmt"
	"math"
	"testing"

	"github.com/kvfoot/kvfoot/footprint"
	"github.com/kvfoot/kvfoot/model"
)

var (
	_ model.Cache     = (*Cache)(nil)
	_ model.Prefiller = (*Cache)(nil)
	_ model.Cache     = (*refFull)(nil)
)

func (r *refFull) Commit(n int) { r.pos += n }
func (r *refFull) Pos() int     { return r.pos }

func newRefFull(s Shape) *refFull {
	r := &refFull{s: s, k: make([][][]float32, s.Layers), v: make([][][]float32, s.Layers)}
	for l := range r.k {
		r.k[l], r.v[l] = make([][]float32, s.KVHeads), make([][]float32, s.KVHeads)
	}
	return r
}

func loadGQA(t *testing.T) *model.Model {
	t.Helper()
	m, err := model.Load("../testdata/models/llama-gqa", model.LoadOptions{})
	if err != nil {
		t.Skipf("llama-gqa: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// Through the engine, the full policy gives the same logits as the plain full cache
// kvfoot started with, up to the float rounding of the tiled chunk kernel.
func TestFullPolicyLogitsMatchPlainCache(t *testing.T) {
	m := loadGQA(t)
	c, err := New(Shape(m.Shape()), "full")
	if err != nil {
		t.Fatal(err)
	}
	ref := newRefFull(Shape(m.Shape()))
	r1, r2 := model.NewRunner(m, 16), model.NewRunner(m, 16)
	ids := [][]int{{1, 5, 9, 20, 33, 7, 8, 9, 10, 11, 12}, {13, 14, 15, 16, 17}, {99}, {100}, {101}}
	for _, chunk := range ids {
		got, err := r1.Forward(c, chunk, true)
		if err != nil {
			t.Fatal(err)
		}
		want, err := r2.Forward(ref, chunk, true)
		if err != nil {
			t.Fatal(err)
		}
		for i := range want {
			if !close32(got[i], want[i], 1e-4) {
				t.Fatalf("chunk %v: logit %d = %v, plain cache %v", chunk, i, got[i], want[i])
			}
		}
	}
}

// model.Generate with a meter: the measured footprint equals the paper's formula at
// the reported prompt_len and response_len (R generated tokens, R−1 fed), also with
// SnapKV's patch, which Generate runs through the Prefiller hook.
func TestGenerateFootprintMatchesAnalytic(t *testing.T) {
	m := loadGQA(t)
	s := Shape(m.Shape())
	masks := writeMasks(t, [][]float64{{1, 0}, {0, 0.2}})
	prompt := make([]int, 150)
	for i := range prompt {
		prompt[i] = (i*37 + 11) % m.Config.Vocab
	}
	for _, tc := range []struct {
		spec string
		p    footprint.Params
	}{
		{"streaming:sink=4,window=16", footprint.Params{Sink: 4, Window: 16, HeadSparsity: 1}},
		{"headmask:masks=" + masks + ",sparsity=0.5,sink=4,window=16", footprint.Params{Sink: 4, Window: 16, HeadSparsity: 0.5}},
		{"snapkv:sparsity=0.5,window=8,chunked=true,patch=8", footprint.Params{KVSparsity: 0.5, KVWindow: 8}},
		{"headmask:masks=" + masks + ",sink=2,window=8+snapkv:sparsity=0.3,window=8,chunked=true,patch=8+quant:bits=4,group=8,residual=8",
			footprint.Params{Sink: 2, Window: 8, HeadSparsity: 0.75, KVSparsity: 0.3, KVWindow: 8}},
	} {
		for _, r := range []int{1, 12} {
			t.Run(fmt.Sprintf("%s/R%d", tc.spec, r), func(t *testing.T) {
				meter := footprint.NewMeter(s.Layers, s.KVHeads)
				c, err := New(s, tc.spec, WithObserver(meter))
				if err != nil {
					t.Fatal(err)
				}
				res, err := model.Generate(m, c, prompt, model.GenerateOptions{MaxTokens: r, Chunk: 32})
				if err != nil {
					t.Fatal(err)
				}
				rep := meter.Report(false)
				if rep.PromptLen != len(prompt) || rep.ResponseLen != len(res.IDs)-1 {
					t.Fatalf("prompt_len %d, response_len %d; want %d and %d", rep.PromptLen, rep.ResponseLen, len(prompt), len(res.IDs)-1)
				}
				p := tc.p
				p.Prompt, p.Response, p.Chunk = rep.PromptLen, rep.ResponseLen, 32
				want, err := footprint.Analytic(p)
				if err != nil {
					t.Fatal(err)
				}
				if math.Abs(rep.Footprint-want.Footprint) > 1e-12 || math.Abs(rep.Peak-want.Peak) > 1e-12 {
					t.Errorf("measured (%.15f, %.15f), analytic (%.15f, %.15f)", rep.Footprint, rep.Peak, want.Footprint, want.Peak)
				}
				if c.Pos() != len(prompt)+len(res.IDs)-1 {
					t.Errorf("Pos %d, want %d", c.Pos(), len(prompt)+len(res.IDs)-1)
				}
			})
		}
	}
}
