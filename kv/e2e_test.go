package kv

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/kvfoot/kvfoot/compute"
	"github.com/kvfoot/kvfoot/footprint"
	"github.com/kvfoot/kvfoot/model"
)

var (
	_ model.Cache = (*Cache)(nil)
	_ model.Cache = (*refFull)(nil)
)

// refFull as a model.Cache: the model's steps through the plain reference attention.
func (r *refFull) Begin(s model.Step) error {
	r.rows = s.Rows
	return s.Check()
}
func (r *refFull) Attend(layer int, q, k, v, out compute.Buf) {
	r.attend(layer, compute.HostOf(q), compute.HostOf(k), compute.HostOf(v), compute.HostOf(out), r.rows)
}
func (r *refFull) Commit()         { r.pos += r.rows }
func (r *refFull) Pos() int        { return r.pos }
func (r *refFull) PatchLen() int   { return 0 }
func (r *refFull) LocalChunk() int { return 0 }

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
	for i, chunk := range ids {
		st := model.Step{Pos: c.Pos(), Rows: len(chunk), Prefill: i < 2, Final: i == 1}
		got, err := r1.Forward(c, chunk, st, true)
		if err != nil {
			t.Fatal(err)
		}
		want, err := r2.Forward(ref, chunk, st, true)
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

// model.Generate with a meter: the measured footprint equals the harness's arithmetic
// (footprint.Exact) at the reported prompt_len and response_len: without DecodeLast
// the prompt is pre-filled and R−1 of the R generated tokens are fed; with it (the
// paper's harness) P−1 tokens are pre-filled and R decoded, the last prompt token
// first. Also with SnapKV's patch, post-fill eviction and both GQA modes.
func TestGenerateFootprintMatchesExact(t *testing.T) {
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
		{"snapkv:sparsity=0.5,window=8,chunked=true,patch=8", footprint.Params{KVSparsity: 0.5, KVWindow: 8, Patch: true}},
		{"snapkv:sparsity=0.7,window=8,chunked=true,gqa=mean", footprint.Params{KVSparsity: 0.7, KVWindow: 8}},
		{"snapkv:sparsity=0.6,window=8", footprint.Params{KVSparsity: 0.6, KVWindow: 8, PostFill: true}},
		{"pyramidkv:sparsity=0.8,window=4,chunked=true", footprint.Params{KVSparsity: 0.8, KVWindow: 4, Layers: s.Layers}},
		{"headmask:masks=" + masks + ",sink=2,window=8+snapkv:sparsity=0.3,window=8,chunked=true,patch=8+quant:bits=4,group=8,residual=8",
			footprint.Params{Sink: 2, Window: 8, HeadSparsity: 0.75, KVSparsity: 0.3, KVWindow: 8, Patch: true}},
	} {
		for _, r := range []int{1, 12} {
			for _, last := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/R%d/decode-last=%v", tc.spec, r, last), func(t *testing.T) {
					meter := footprint.NewMeter(s.Layers, s.KVHeads)
					c, err := New(s, tc.spec, WithObserver(meter))
					if err != nil {
						t.Fatal(err)
					}
					res, err := model.Generate(m, c, prompt, model.GenerateOptions{MaxTokens: r, Chunk: 32, DecodeLast: last})
					if err != nil {
						t.Fatal(err)
					}
					rep := meter.Report(false)
					wantP, wantR := len(prompt), len(res.IDs)-1
					if last {
						wantP, wantR = len(prompt)-1, len(res.IDs)
					}
					if rep.PromptLen != wantP || rep.ResponseLen != wantR {
						t.Fatalf("prompt_len %d, response_len %d; want %d and %d", rep.PromptLen, rep.ResponseLen, wantP, wantR)
					}
					p := tc.p
					p.Prompt, p.Response, p.Chunk = rep.PromptLen, rep.ResponseLen, 32
					want, err := footprint.Exact(p)
					if err != nil {
						t.Fatal(err)
					}
					if math.Abs(rep.Footprint-want.Footprint) > 1e-12 || math.Abs(rep.Peak-want.Peak) > 1e-12 {
						t.Errorf("measured (%.15f, %.15f), the harness's arithmetic (%.15f, %.15f)", rep.Footprint, rep.Peak, want.Footprint, want.Peak)
					}
					if c.Pos() != len(prompt)+len(res.IDs)-1 {
						t.Errorf("Pos %d, want %d", c.Pos(), len(prompt)+len(res.IDs)-1)
					}
				})
			}
		}
	}
}

// One batched forward carrying several sequences, each with its own cache and policy,
// in different phases (a decode step, a pre-fill chunk, a patched pre-fill chunk),
// gives every sequence the logits, kept entries and footprint it gets when run alone.
func TestForwardBatchMatchesSeparateRuns(t *testing.T) {
	m := loadGQA(t)
	s := Shape(m.Shape())
	specs := []string{"full", "streaming:sink=2,window=8", "snapkv:sparsity=0.5,window=4,chunked=true,patch=4", "streaming:sink=4,window=12+quant:bits=4,group=8,residual=4"}
	prompt := func(i int) []int {
		p := make([]int, 24+5*i)
		for j := range p {
			p[j] = (j*31 + 7*i + 3) % m.Config.Vocab
		}
		return p
	}
	type run struct {
		c     *Cache
		meter *footprint.Meter
		ids   []int
		fed   int // prompt tokens fed
	}
	newRuns := func() []*run {
		var rs []*run
		for i, spec := range specs {
			meter := footprint.NewMeter(s.Layers, s.KVHeads)
			c, err := New(s, spec, WithObserver(meter))
			if err != nil {
				t.Fatal(err)
			}
			rs = append(rs, &run{c: c, meter: meter, ids: prompt(i)})
		}
		return rs
	}
	// the next step of a run: pre-fill chunks of 8 (patched where asked), then decode
	next := func(r *run) model.Seq {
		if r.fed < len(r.ids) {
			hi := min(r.fed+8, len(r.ids))
			st := model.Step{Pos: r.c.Pos(), Rows: hi - r.fed, Prefill: true, Final: hi == len(r.ids)}
			ids := append([]int(nil), r.ids[r.fed:hi]...)
			if p := r.c.PatchLen(); p > 0 && !st.Final {
				ids = append(ids, r.ids[len(r.ids)-p:]...)
				st.Rows, st.Patch = len(ids), p
			}
			r.fed = hi
			return model.Seq{Cache: r.c, IDs: ids, Step: st}
		}
		return model.Seq{Cache: r.c, IDs: []int{(r.c.Pos()*13 + 5) % m.Config.Vocab}, Step: model.Step{Pos: r.c.Pos(), Rows: 1}}
	}
	alone, batched := newRuns(), newRuns()
	ra, rb := model.NewRunner(m, 1), model.NewRunner(m, 1)
	for round := 0; round < 9; round++ {
		// sequence i joins at round i, so phases differ inside a batch
		var seqs []model.Seq
		var want [][]float32
		for i := range specs {
			if round < i {
				continue
			}
			sq := next(alone[i])
			l, err := ra.Forward(sq.Cache, sq.IDs, sq.Step, false)
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, append([]float32(nil), l...))
			seqs = append(seqs, next(batched[i]))
		}
		if err := rb.ForwardBatch(seqs); err != nil {
			t.Fatal(err)
		}
		for j, sq := range seqs {
			for x := range want[j] {
				if !close32(sq.Logits[x], want[j][x], 1e-4) {
					t.Fatalf("round %d, sequence %d: logit %d = %v batched, %v alone", round, j, x, sq.Logits[x], want[j][x])
				}
			}
		}
	}
	for i := range specs {
		a, b := alone[i], batched[i]
		if a.c.Pos() != b.c.Pos() {
			t.Errorf("%s: Pos %d batched, %d alone", specs[i], b.c.Pos(), a.c.Pos())
		}
		for l := 0; l < s.Layers; l++ {
			for g := 0; g < s.KVHeads; g++ {
				if !slices.Equal(a.c.Positions(l, g), b.c.Positions(l, g)) {
					t.Errorf("%s: layer %d head %d keeps %v batched, %v alone", specs[i], l, g, b.c.Positions(l, g), a.c.Positions(l, g))
				}
			}
		}
		if ra, rb := a.meter.Report(false), b.meter.Report(false); ra.Footprint != rb.Footprint || ra.Peak != rb.Peak {
			t.Errorf("%s: footprint %v/%v batched, %v/%v alone", specs[i], rb.Footprint, rb.Peak, ra.Footprint, ra.Peak)
		}
	}
}

// A batch with one invalid step feeds nothing to any cache.
func TestForwardBatchRefusesBadStepUpFront(t *testing.T) {
	m := loadGQA(t)
	c1, _ := New(Shape(m.Shape()), "full")
	c2, _ := New(Shape(m.Shape()), "full")
	r := model.NewRunner(m, 4)
	err := r.ForwardBatch([]model.Seq{
		{Cache: c1, IDs: []int{1, 2}, Step: model.Step{Pos: 0, Rows: 2, Prefill: true, Final: true}},
		{Cache: c2, IDs: []int{1}, Step: model.Step{Pos: 3, Rows: 1}},
	})
	if err == nil || !strings.Contains(err.Error(), "sequence 1") || !strings.Contains(err.Error(), "cache is at 0") {
		t.Fatalf("error %v, want one naming sequence 1 and its position", err)
	}
	if c1.Pos() != 0 || c1.Len(0, 0) != 0 {
		t.Errorf("the valid sequence's cache was fed: Pos %d, %d entries", c1.Pos(), c1.Len(0, 0))
	}
}

// Locret through model.Generate with its local chunk (the cache's LocalChunk as the
// pre-fill's Tail) and the harness's last-token decoding: the meter equals the harness's
// Locret arithmetic, and every KV head holds its budget after the pre-fill.
func TestLocretMatchesExact(t *testing.T) {
	m := loadGQA(t)
	s := Shape(m.Shape())
	prompt := make([]int, 150)
	for i := range prompt {
		prompt[i] = (i*37 + 11) % m.Config.Vocab
	}
	const x, local, stab = 0.6, 20, 16
	meter := footprint.NewMeter(s.Layers, s.KVHeads)
	c, err := New(s, fmt.Sprintf("locret:sparsity=%g,local=%d,stabilizers=%d", x, local, stab), WithObserver(meter))
	if err != nil {
		t.Fatal(err)
	}
	if c.LocalChunk() != local {
		t.Fatalf("LocalChunk %d, want %d", c.LocalChunk(), local)
	}
	var held []int
	res, err := model.Generate(m, c, prompt, model.GenerateOptions{MaxTokens: 5, Chunk: 32, DecodeLast: true,
		OnToken: func(int) bool {
			if len(held) == 0 {
				held = append(held, c.Len(0, 0))
			}
			return true
		}})
	if err != nil {
		t.Fatal(err)
	}
	rep := meter.Report(false)
	want, err := footprint.LocretExact(rep.PromptLen, rep.ResponseLen, 32, x, local, stab)
	if err != nil {
		t.Fatal(err)
	}
	if rep.PromptLen != len(prompt)-1 || rep.ResponseLen != len(res.IDs) {
		t.Fatalf("prompt_len %d, response_len %d", rep.PromptLen, rep.ResponseLen)
	}
	if math.Abs(rep.Footprint-want.Footprint) > 1e-12 || math.Abs(rep.Peak-want.Peak) > 1e-12 {
		t.Errorf("measured (%.15f, %.15f), the harness's Locret arithmetic (%.15f, %.15f)", rep.Footprint, rep.Peak, want.Footprint, want.Peak)
	}
	// after the pre-fill of 149 tokens: budget max(ceil64(int(0.4·149)), 16) = 64, plus the decoded last prompt token
	if held[0] != 64+1 {
		t.Errorf("held %d entries after the pre-fill and the first decode step, want 65", held[0])
	}
}
