package train

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvfoot/kvfoot/format/safetensors"
	"github.com/kvfoot/kvfoot/kv"
	"github.com/kvfoot/kvfoot/model"
	"github.com/kvfoot/kvfoot/tensor"
)

func TestGeGLUBackward(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 8))
	n := 3000 // more than one block of the parallel split
	g, u, da := randVec(r, n, 3), randVec(r, n, 1), randVec(r, n, 1)
	// GELU's tanh approximation as torch's gelu(approximate="tanh") defines it
	ref := func(g, u []float64) []float64 {
		y := make([]float64, n)
		for i := range y {
			x := g[i]
			y[i] = 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x))) * u[i]
		}
		return y
	}
	act := make([]float32, n)
	gegluForward(act, g, u)
	gs, us := f64(g), f64(u)
	for i, v := range ref(gs, us) {
		if math.Abs(float64(act[i])-v) > 1e-5*(1+math.Abs(v)) {
			t.Fatalf("forward [%d] = %v, want %v", i, act[i], v)
		}
	}
	dg, du := make([]float32, n), make([]float32, n)
	gegluBackward(dg, du, da, g, u)
	idx := []int{0, 1, 2, 500, 1023, 1024, 2999}
	checkFD(t, "dgate", func(v []float64) float64 { return dot64(ref(v, us), da) }, gs, dg, idx, 1e-5, 1e-4)
	checkFD(t, "dup", func(v []float64) float64 { return dot64(ref(gs, v), da) }, us, du, idx, 1e-5, 1e-4)
}

// archNet is a random Qwen3- or Gemma-3-like model (from its config.json) with weights
// large enough for attention to be peaked and norm weights away from 1.
func archNet(t *testing.T, cfgJSON string, T int) *Net {
	t.Helper()
	cfg, err := model.ParseConfig([]byte(cfgJSON))
	if err != nil {
		t.Fatal(err)
	}
	m := model.NewRandom(cfg, 5)
	net, err := New(m, Options{MaxLen: T, Sink: 2, Window: 5, WeightGrads: true, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 3))
	net.Params.Each(func(name string, v []float32) {
		for i := range v {
			if strings.Contains(name, "norm") {
				v[i] = 1 + 0.3*float32(r.NormFloat64())
			} else {
				v[i] *= 6
			}
		}
	})
	return net
}

var archTrainConfigs = map[string]string{
	// soft caps small enough to bite
	"gemma2": `{"architectures":["Gemma2ForCausalLM"],"vocab_size":41,"hidden_size":32,"intermediate_size":48,
		"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":8,"rms_norm_eps":1e-6,
		"hidden_activation":"gelu_pytorch_tanh","query_pre_attn_scalar":12,"sliding_window":6,
		"attn_logit_softcapping":0.3,"final_logit_softcapping":0.5,"rope_theta":10000.0}`,
	"qwen3": `{"architectures":["Qwen3ForCausalLM"],"vocab_size":41,"hidden_size":32,"intermediate_size":48,
		"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":12,"rms_norm_eps":1e-6,
		"rope_theta":10000.0,"tie_word_embeddings":false}`,
	"gemma3": `{"architectures":["Gemma3ForCausalLM"],"vocab_size":41,"hidden_size":32,"intermediate_size":48,
		"num_hidden_layers":3,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":8,"rms_norm_eps":1e-6,
		"hidden_activation":"gelu_pytorch_tanh","query_pre_attn_scalar":12,"sliding_window":6,
		"layer_types":["sliding_attention","full_attention","sliding_attention"],
		"rope_parameters":{"full_attention":{"rope_type":"default","rope_theta":1000000.0},
			"sliding_attention":{"rope_type":"default","rope_theta":10000.0}}}`,
}

// Every parameter's gradient (a few coordinates of each, the new norms all included)
// and every gate's against central differences of the Net's own cross-entropy; local
// layers' gates have no effect and get no gradient.
func TestArchGradientsFiniteDifference(t *testing.T) {
	for name, cfg := range archTrainConfigs {
		t.Run(name, func(t *testing.T) {
			const T = 24
			net := archNet(t, cfg, T)
			c := net.Config
			ids := make([]int, T)
			for i := range ids {
				ids[i] = (i*7 + i*i) % c.Vocab
			}
			tg := nextTokenTargets(ids)
			gates := make([]float32, c.Layers*c.KVHeads)
			for i := range gates {
				gates[i] = 0.2 + 0.6*float32(i%3)/2
			}
			loss := func() float64 {
				if err := net.Forward(ids, gates); err != nil {
					t.Fatal(err)
				}
				l, _, err := net.CrossEntropy(tg, 1)
				if err != nil {
					t.Fatal(err)
				}
				return l
			}
			net.ZeroGrad()
			loss()
			net.Backward()
			grads := map[string][]float32{}
			net.Grad.Each(func(n string, g []float32) { grads[n] = append([]float32(nil), g...) })
			gateGrad := append([]float64(nil), net.GateGrad...)
			check := func(what string, v []float32, i int, an float64) {
				const eps = 1e-3
				old := v[i]
				v[i] = old + eps
				lp := loss()
				v[i] = old - eps
				lm := loss()
				v[i] = old
				fd := (lp - lm) / (2 * eps)
				if math.Abs(fd-an) > 2e-3+2e-2*math.Abs(fd) {
					t.Errorf("%s: analytic %.6g, finite difference %.6g", what, an, fd)
				}
			}
			seen := 0
			net.Params.Each(func(n string, v []float32) {
				g := grads[n]
				for _, i := range []int{0, len(v) / 3, len(v) - 1} {
					check(n, v, i, float64(g[i]))
				}
				if strings.Contains(n, "q_norm") || strings.Contains(n, "feedforward_layernorm") {
					seen++
				}
			})
			if c.QKNorm && seen == 0 {
				t.Error("no q_norm parameter visited")
			}
			for i := range gates {
				if l := i / c.KVHeads; c.Window != nil && c.Window[l] > 0 {
					if gateGrad[i] != 0 {
						t.Errorf("gate %d of local layer %d: gradient %v, want 0", i, l, gateGrad[i])
					}
					continue
				}
				check("gate", gates, i, gateGrad[i])
			}
		})
	}
}

// The Net's forward is the model's: the logits of every position, full attention (the
// local layers within their windows), equal the Runner's through a kv cache.
func TestArchForwardMatchesModel(t *testing.T) {
	for name, cfgJSON := range archTrainConfigs {
		t.Run(name, func(t *testing.T) {
			const T = 24
			cfg, err := model.ParseConfig([]byte(cfgJSON))
			if err != nil {
				t.Fatal(err)
			}
			m := model.NewRandom(cfg, 9)
			for i := range m.Layers { // weights large enough for peaked attention
				L := &m.Layers[i]
				for _, l := range []*model.Linear{&L.Q, &L.K, &L.V} {
					for j := range l.W.F32 {
						l.W.F32[j] *= 8
					}
				}
			}
			net, err := New(m, Options{MaxLen: T, Sink: 1, Window: 1})
			if err != nil {
				t.Fatal(err)
			}
			ids := make([]int, T)
			for i := range ids {
				ids[i] = (i*11 + 3) % cfg.Vocab
			}
			if err := net.Forward(ids, nil); err != nil {
				t.Fatal(err)
			}
			got := make([]float32, T*cfg.Vocab)
			head := mat(net.Params.Head, cfg.Vocab, cfg.Hidden)
			tensor.MatMulT(got, net.Hidden(), T, &head)
			if cp := float64(cfg.FinalSoftCap); cp != 0 {
				for i, z := range got {
					got[i] = float32(cp * math.Tanh(float64(z)/cp))
				}
			}
			cache, err := kv.New(kv.Shape(m.Shape()), "full")
			if err != nil {
				t.Fatal(err)
			}
			want, err := model.NewRunner(m, T).Forward(cache, ids, model.Step{Pos: 0, Rows: T, Prefill: true, Final: true}, true)
			if err != nil {
				t.Fatal(err)
			}
			closeTo(t, "logits", got, want, 1e-4)
		})
	}
}

// Gemma's norms are held as 1 + w and saved as w, the checkpoint's convention.
func TestGemmaParamsSaveNormsAsStored(t *testing.T) {
	net := archNet(t, archTrainConfigs["gemma3"], 8)
	path := filepath.Join(t.TempDir(), "model.safetensors")
	if err := net.Params.Save(path); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for name, held := range map[string][]float32{"model.layers.0.pre_feedforward_layernorm.weight": net.Params.Layers[0].MLPNorm,
		"model.layers.1.self_attn.k_norm.weight": net.Params.Layers[1].KNorm, "model.norm.weight": net.Params.Norm} {
		tn, ok := f.Tensor(name)
		if !ok {
			t.Fatalf("no %s saved", name)
		}
		v, _ := tn.Float32s()
		for i := range v {
			if v[i] != held[i]-1 {
				t.Fatalf("%s[%d] saved %v, held %v: want held − 1", name, i, v[i], held[i])
			}
		}
	}
}
