package model_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kvfoot/kvfoot/compute"
	"github.com/kvfoot/kvfoot/kv"
	"github.com/kvfoot/kvfoot/model"
)

// The architectures of issue 21 (Qwen3, Gemma 2, Gemma 3, sliding windows), each
// parsed from a config.json as transformers writes it and given random weights, run
// through the Runner and the real kv cache against a float64 forward written here
// from the architectures' definitions (transformers' modeling_qwen3, modeling_gemma2,
// modeling_gemma3, masking_utils).
var archConfigs = map[string]string{
	// explicit head_dim (24) unlike hidden/heads (16), untied
	"qwen3": `{"architectures":["Qwen3ForCausalLM"],"vocab_size":97,"hidden_size":64,"intermediate_size":96,
		"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":24,"rms_norm_eps":1e-6,
		"rope_parameters":{"rope_type":"default","rope_theta":1000000.0},"tie_word_embeddings":false,
		"use_sliding_window":false,"sliding_window":null,"max_window_layers":2}`,
	// tied, sliding window on the layers from max_window_layers on
	"qwen3-window": `{"architectures":["Qwen3ForCausalLM"],"vocab_size":97,"hidden_size":48,"intermediate_size":64,
		"num_hidden_layers":3,"num_attention_heads":4,"num_key_value_heads":1,"head_dim":16,"rms_norm_eps":1e-6,
		"rope_theta":10000.0,"tie_word_embeddings":true,"use_sliding_window":true,"sliding_window":6,"max_window_layers":1}`,
	// soft caps small enough to bite, query_pre_attn_scalar unlike head_dim, the
	// default alternation (local first)
	"gemma2": `{"architectures":["Gemma2ForCausalLM"],"vocab_size":101,"hidden_size":48,"intermediate_size":80,
		"num_hidden_layers":3,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":16,"rms_norm_eps":1e-6,
		"hidden_activation":"gelu_pytorch_tanh","query_pre_attn_scalar":24,"sliding_window":5,
		"attn_logit_softcapping":2.0,"final_logit_softcapping":3.0,"rope_theta":10000.0}`,
	// layer_types and per-type rope_parameters as transformers 5.x writes them, linear
	// scaling on the global layers only
	"gemma3": `{"architectures":["Gemma3ForCausalLM"],"vocab_size":89,"hidden_size":40,"intermediate_size":72,
		"num_hidden_layers":4,"num_attention_heads":2,"num_key_value_heads":1,"head_dim":32,"rms_norm_eps":1e-6,
		"hidden_activation":"gelu_pytorch_tanh","query_pre_attn_scalar":32,"sliding_window":7,
		"layer_types":["sliding_attention","sliding_attention","full_attention","sliding_attention"],
		"final_logit_softcapping":null,"attn_logit_softcapping":null,
		"rope_parameters":{"full_attention":{"rope_type":"linear","factor":4.0,"rope_theta":1000000.0},
			"sliding_attention":{"rope_type":"default","rope_theta":10000.0}}}`,
	"mistral-window": `{"architectures":["MistralForCausalLM"],"vocab_size":83,"hidden_size":32,"intermediate_size":48,
		"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"rms_norm_eps":1e-5,
		"rope_theta":10000.0,"sliding_window":4}`,
}

// randomArch is the named config with random weights large enough that attention is
// peaked, and norm weights away from 1.
func randomArch(t *testing.T, name string, seed uint64) *model.Model {
	t.Helper()
	cfg, err := model.ParseConfig([]byte(archConfigs[name]))
	if err != nil {
		t.Fatal(err)
	}
	m := model.NewRandom(cfg, seed)
	r := rand.New(rand.NewPCG(seed, 99))
	scaleUp := func(w []float32, f float32) {
		for i := range w {
			w[i] *= f
		}
	}
	jitter := func(w []float32) {
		for i := range w {
			w[i] = 1 + 0.3*float32(r.NormFloat64())
		}
	}
	scaleUp(m.Embed.F32, 40) // std 0.8: Gemma scales the embeddings up again
	if !cfg.TieEmbeddings {
		scaleUp(m.Head.F32, 5)
	}
	jitter(m.Norm)
	for i := range m.Layers {
		L := &m.Layers[i]
		for _, l := range []*model.Linear{&L.Q, &L.K, &L.V, &L.O, &L.Gate, &L.Up, &L.Down} {
			scaleUp(l.W.F32, 8)
		}
		for _, n := range [][]float32{L.AttnNorm, L.MLPNorm, L.QNorm, L.KNorm, L.PostAttnNorm, L.PostMLPNorm} {
			jitter(n)
		}
	}
	return m
}

// refForward is the float64 forward of every position of ids.
func refForward(m *model.Model, ids []int) [][]float64 {
	c := &m.Config
	H, d := c.Hidden, c.HeadDim
	T := len(ids)
	rms := func(x []float64, w []float32) []float64 {
		var ss float64
		for _, v := range x {
			ss += v * v
		}
		inv := 1 / math.Sqrt(ss/float64(len(x))+float64(c.NormEps))
		out := make([]float64, len(x))
		for i, v := range x {
			out[i] = v * inv * float64(w[i])
		}
		return out
	}
	lin := func(l *model.Linear, x []float64) []float64 {
		out := make([]float64, l.W.Rows)
		for o := range out {
			var s float64
			for i, v := range x {
				s += float64(l.W.F32[o*l.W.Cols+i]) * v
			}
			if l.Bias != nil {
				s += float64(l.Bias[o])
			}
			out[o] = s
		}
		return out
	}
	// rotate-half RoPE at position p, frequencies base^(−2i/d) / factor
	rope := func(x []float64, p int, r model.Rope) {
		for h := 0; h < len(x)/d; h++ {
			v := x[h*d : (h+1)*d]
			for i := 0; i < d/2; i++ {
				f := math.Pow(r.Theta, -float64(2*i)/float64(d))
				if r.Type == "linear" {
					f /= r.Factor
				}
				cs, sn := math.Cos(float64(p)*f), math.Sin(float64(p)*f)
				a, b := v[i], v[i+d/2]
				v[i], v[i+d/2] = a*cs-b*sn, b*cs+a*sn
			}
		}
	}
	capped := func(x, cp float64) float64 {
		if cp == 0 {
			return x
		}
		return cp * math.Tanh(x/cp)
	}
	x := make([][]float64, T)
	for t, id := range ids {
		x[t] = make([]float64, H)
		for i := range H {
			x[t][i] = float64(m.Embed.F32[id*H+i])
			if c.Gemma {
				x[t][i] *= math.Sqrt(float64(H))
			}
		}
	}
	scale := 1 / math.Sqrt(float64(d))
	if c.AttnScale != 0 {
		scale = float64(c.AttnScale)
	}
	group := c.Heads / c.KVHeads
	for l := range m.Layers {
		L := &m.Layers[l]
		win := 0
		if c.Window != nil {
			win = c.Window[l]
		}
		q, k, v := make([][]float64, T), make([][]float64, T), make([][]float64, T)
		for t := range T {
			h := rms(x[t], L.AttnNorm)
			q[t], k[t], v[t] = lin(&L.Q, h), lin(&L.K, h), lin(&L.V, h)
			if c.QKNorm {
				for hd := 0; hd < c.Heads; hd++ {
					copy(q[t][hd*d:(hd+1)*d], rms(q[t][hd*d:(hd+1)*d], L.QNorm))
				}
				for hd := 0; hd < c.KVHeads; hd++ {
					copy(k[t][hd*d:(hd+1)*d], rms(k[t][hd*d:(hd+1)*d], L.KNorm))
				}
			}
			rope(q[t], t, c.LayerRope(l))
			rope(k[t], t, c.LayerRope(l))
		}
		for t := range T {
			att := make([]float64, c.Heads*d)
			for hd := 0; hd < c.Heads; hd++ {
				g := hd / group
				lo := 0
				if win > 0 {
					lo = max(0, t-win+1) // keys j with t − j < win
				}
				sc := make([]float64, t+1-lo)
				mx := math.Inf(-1)
				for j := lo; j <= t; j++ {
					var s float64
					for i := range d {
						s += q[t][hd*d+i] * k[j][g*d+i]
					}
					sc[j-lo] = capped(s*scale, float64(c.AttnSoftCap))
					mx = math.Max(mx, sc[j-lo])
				}
				var sum float64
				for j := range sc {
					sc[j] = math.Exp(sc[j] - mx)
					sum += sc[j]
				}
				for j := lo; j <= t; j++ {
					for i := range d {
						att[hd*d+i] += sc[j-lo] / sum * v[j][g*d+i]
					}
				}
			}
			o := lin(&L.O, att)
			if c.Gemma {
				o = rms(o, L.PostAttnNorm)
			}
			for i := range o {
				x[t][i] += o[i]
			}
			h := rms(x[t], L.MLPNorm)
			gate, up := lin(&L.Gate, h), lin(&L.Up, h)
			for i, gv := range gate {
				if c.Gemma {
					gate[i] = 0.5 * gv * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(gv+0.044715*gv*gv*gv))) * up[i]
				} else {
					gate[i] = gv / (1 + math.Exp(-gv)) * up[i]
				}
			}
			dn := lin(&L.Down, gate)
			if c.Gemma {
				dn = rms(dn, L.PostMLPNorm)
			}
			for i := range dn {
				x[t][i] += dn[i]
			}
		}
	}
	out := make([][]float64, T)
	head := model.Linear{W: m.Head}
	for t := range T {
		out[t] = lin(&head, rms(x[t], m.Norm))
		for i := range out[t] {
			out[t][i] = capped(out[t][i], float64(c.FinalSoftCap))
		}
	}
	return out
}

// runnerLogits feeds ids through the Runner and a full kv cache in chunks of chunk.
func runnerLogits(t *testing.T, m *model.Model, ids []int, chunk int) ([]float32, *kv.Cache) {
	t.Helper()
	cache, err := kv.New(kv.Shape(m.Shape()), "full")
	if err != nil {
		t.Fatal(err)
	}
	var out []float32
	_, err = model.NewRunner(m, chunk).Prefill(cache, ids, model.PrefillOptions{Chunk: chunk, All: true, OnChunk: func(_ int, l []float32) error {
		out = append(out, l...)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	return out, cache
}

func flat(x [][]float64) []float32 {
	var out []float32
	for _, row := range x {
		for _, v := range row {
			out = append(out, float32(v))
		}
	}
	return out
}

func randomIDs(n, vocab int, seed uint64) []int {
	r := rand.New(rand.NewPCG(seed, 5))
	ids := make([]int, n)
	for i := range ids {
		ids[i] = r.IntN(vocab)
	}
	return ids
}

// TestArchitecturesMatchFloat64 runs every position at whole, one-token and odd chunk
// sizes (the window shorter than the sequence, so chunks cross it) against the float64
// forward, and checks the local layers hold no more than their window.
func TestArchitecturesMatchFloat64(t *testing.T) {
	for name := range archConfigs {
		m := randomArch(t, name, 3)
		ids := randomIDs(29, m.Config.Vocab, 11)
		want := flat(refForward(m, ids))
		for _, chunk := range []int{len(ids), 1, 5, 11} {
			t.Run(fmt.Sprintf("%s/chunk=%d", name, chunk), func(t *testing.T) {
				got, cache := runnerLogits(t, m, ids, chunk)
				checkLogitsTol(t, got, want, 1e-4)
				for l, w := range m.Config.Window {
					for g := range cache.Heads() {
						if w > 0 && cache.Len(l, g) > w-1 {
							t.Errorf("local layer %d (window %d) head %d holds %d entries after the pre-fill, want ≤ %d", l, w, g, cache.Len(l, g), w-1)
						}
						if w == 0 && cache.Len(l, g) != len(ids) {
							t.Errorf("global layer %d head %d holds %d entries, want %d", l, g, cache.Len(l, g), len(ids))
						}
					}
				}
			})
		}
	}
}

// TestArchitecturesGreedy: greedy continuations (decode steps through the window) equal
// the float64 forward's argmax at every step.
func TestArchitecturesGreedy(t *testing.T) {
	for name := range archConfigs {
		t.Run(name, func(t *testing.T) {
			m := randomArch(t, name, 4)
			prompt := randomIDs(9, m.Config.Vocab, 12)
			cache, err := kv.New(kv.Shape(m.Shape()), "full")
			if err != nil {
				t.Fatal(err)
			}
			res, err := model.Generate(m, cache, prompt, model.GenerateOptions{MaxTokens: 12, Chunk: 4})
			if err != nil {
				t.Fatal(err)
			}
			seq := append([]int(nil), prompt...)
			for i := range 12 {
				logits := refForward(m, seq)
				last := logits[len(logits)-1]
				best := 0
				for j, v := range last {
					if v > last[best] {
						best = j
					}
				}
				if res.IDs[i] != best {
					t.Fatalf("token %d: got %d, the float64 forward's argmax is %d", i, res.IDs[i], best)
				}
				seq = append(seq, best)
			}
		})
	}
}

// checkLogitsTol: every logit within tol · max(1, largest |reference logit|).
func checkLogitsTol(t *testing.T, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d logits, want %d", len(got), len(want))
	}
	big := 1.0
	for _, w := range want {
		big = math.Max(big, math.Abs(float64(w)))
	}
	worst, at := 0.0, 0
	for i := range want {
		d := math.Abs(float64(got[i] - want[i]))
		if math.IsNaN(d) {
			d = math.Inf(1)
		}
		if d > worst {
			worst, at = d, i
		}
	}
	if worst > tol*big {
		t.Errorf("logit %d: got %g, want %g (|diff| %g > %g)", at, got[at], want[at], worst, tol*big)
	}
}

// The CPU backend's GeGLU and soft cap against their formulas in float64, over more
// values than one parallel block.
func TestCPUGeGLUAndSoftCap(t *testing.T) {
	const n = 10007
	r := rand.New(rand.NewPCG(1, 2))
	g, u, x := make([]float32, n), make([]float32, n), make([]float32, n)
	for i := range g {
		g[i], u[i], x[i] = float32(3*r.NormFloat64()), float32(r.NormFloat64()), float32(40*r.NormFloat64())
	}
	gate, logits := append([]float32(nil), g...), append([]float32(nil), x...)
	compute.CPU.GeGLU(compute.Host(gate), compute.Host(u))
	compute.CPU.SoftCap(compute.Host(logits), 30)
	for i := range g {
		v := float64(g[i])
		want := 0.5 * v * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(v+0.044715*v*v*v))) * float64(u[i])
		if math.Abs(float64(gate[i])-want) > 1e-6*(1+math.Abs(want)) {
			t.Fatalf("GeGLU[%d] = %v, want %v", i, gate[i], want)
		}
		if want := 30 * math.Tanh(float64(x[i])/30); math.Abs(float64(logits[i])-want) > 1e-6*(1+math.Abs(want)) {
			t.Fatalf("SoftCap[%d] = %v, want %v", i, logits[i], want)
		}
	}
}
