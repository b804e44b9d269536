package train

import (
	"bufio"
	"strconv"
	"strings"

	"github.com/kvfoot/kvfoot/format/safetensors"
	"github.com/kvfoot/kvfoot/model"
	"github.com/kvfoot/kvfoot/tensor"
)

// Linear is a float32 weight [Out, In] with an optional bias [Out] (nil when absent).
type Linear struct {
	W, B    []float32
	Out, In int
}

// mat views the weight as a tensor.Mat for the matmul kernels.
func (l *Linear) mat() tensor.Mat { return tensor.Mat{Rows: l.Out, Cols: l.In, F32: l.W} }

// LayerParams are one transformer block's parameters (or their gradients).
type LayerParams struct {
	AttnNorm, MLPNorm []float32
	Q, K, V, O        Linear
	Gate, Up, Down    Linear
	// per-head q/k norms (Qwen3, Gemma 3) and Gemma's output norms; nil when absent
	QNorm, KNorm, PostAttnNorm, PostMLPNorm []float32
}

// Params are a model's parameters in float32, laid out as Hugging Face stores them, or
// the gradients of the loss with respect to them (same shapes).
type Params struct {
	Embed  []float32 // [vocab, hidden]
	Layers []LayerParams
	Norm   []float32
	Head   []float32 // [vocab, hidden]; the same slice as Embed when tied
	// Gemma: norms scale by 1 + w; they are held as 1 + w (model's convention) and saved as w
	gemma bool
}

// widen returns w's values as float32 (a copy, so the model's storage is never written).
func widen(w tensor.Mat) []float32 {
	out := make([]float32, w.Rows*w.Cols)
	for i := range w.Rows {
		w.Row(out[i*w.Cols:(i+1)*w.Cols], i)
	}
	return out
}

func clone(v []float32) []float32 { return append([]float32(nil), v...) }

// paramsOf copies m's weights into float32 Params.
func paramsOf(m *model.Model) *Params {
	lin := func(l model.Linear) Linear { return Linear{widen(l.W), clone(l.Bias), l.W.Rows, l.W.Cols} }
	p := &Params{Embed: widen(m.Embed), Norm: clone(m.Norm), gemma: m.Config.Gemma}
	p.Head = p.Embed
	if !m.Config.TieEmbeddings {
		p.Head = widen(m.Head)
	}
	p.Layers = make([]LayerParams, len(m.Layers))
	for i := range m.Layers {
		L := &m.Layers[i]
		p.Layers[i] = LayerParams{
			AttnNorm: clone(L.AttnNorm), MLPNorm: clone(L.MLPNorm),
			Q: lin(L.Q), K: lin(L.K), V: lin(L.V), O: lin(L.O),
			Gate: lin(L.Gate), Up: lin(L.Up), Down: lin(L.Down),
			QNorm: clone(L.QNorm), KNorm: clone(L.KNorm), PostAttnNorm: clone(L.PostAttnNorm), PostMLPNorm: clone(L.PostMLPNorm),
		}
	}
	return p
}

// zerosLike returns Params of p's shapes filled with zeros (tied heads stay tied).
func zerosLike(p *Params) *Params {
	z := func(v []float32) []float32 {
		if v == nil {
			return nil
		}
		return make([]float32, len(v))
	}
	lin := func(l Linear) Linear { return Linear{z(l.W), z(l.B), l.Out, l.In} }
	g := &Params{Embed: z(p.Embed), Norm: z(p.Norm), gemma: p.gemma}
	g.Head = g.Embed
	if &p.Head[0] != &p.Embed[0] {
		g.Head = z(p.Head)
	}
	g.Layers = make([]LayerParams, len(p.Layers))
	for i, L := range p.Layers {
		g.Layers[i] = LayerParams{
			AttnNorm: z(L.AttnNorm), MLPNorm: z(L.MLPNorm),
			Q: lin(L.Q), K: lin(L.K), V: lin(L.V), O: lin(L.O),
			Gate: lin(L.Gate), Up: lin(L.Up), Down: lin(L.Down),
			QNorm: z(L.QNorm), KNorm: z(L.KNorm), PostAttnNorm: z(L.PostAttnNorm), PostMLPNorm: z(L.PostMLPNorm),
		}
	}
	return g
}

// Each calls fn on every parameter slice with its Hugging Face name and shape, once
// per distinct slice (a tied head is visited as the embedding).
func (p *Params) Each(fn func(name string, v []float32)) {
	p.EachShaped(func(name string, _ []int, v []float32) { fn(name, v) })
}

// EachShaped is Each with the tensor shapes.
func (p *Params) EachShaped(fn func(name string, shape []int, v []float32)) {
	h := len(p.Norm)
	fn("model.embed_tokens.weight", []int{len(p.Embed) / h, h}, p.Embed)
	for i := range p.Layers {
		L := &p.Layers[i]
		pre := "model.layers." + strconv.Itoa(i) + "."
		for _, s := range []struct {
			name string
			l    *Linear
		}{
			{"self_attn.q_proj", &L.Q}, {"self_attn.k_proj", &L.K}, {"self_attn.v_proj", &L.V},
			{"self_attn.o_proj", &L.O}, {"mlp.gate_proj", &L.Gate}, {"mlp.up_proj", &L.Up},
			{"mlp.down_proj", &L.Down},
		} {
			fn(pre+s.name+".weight", []int{s.l.Out, s.l.In}, s.l.W)
			if s.l.B != nil {
				fn(pre+s.name+".bias", []int{s.l.Out}, s.l.B)
			}
		}
		norms := []struct {
			name string
			v    []float32
		}{{"input_layernorm", L.AttnNorm}, {"post_attention_layernorm", L.MLPNorm}}
		if p.gemma {
			norms = norms[:1]
			norms = append(norms, []struct {
				name string
				v    []float32
			}{{"post_attention_layernorm", L.PostAttnNorm}, {"pre_feedforward_layernorm", L.MLPNorm},
				{"post_feedforward_layernorm", L.PostMLPNorm}}...)
		}
		norms = append(norms, []struct {
			name string
			v    []float32
		}{{"self_attn.q_norm", L.QNorm}, {"self_attn.k_norm", L.KNorm}}...)
		for _, nm := range norms {
			if nm.v != nil {
				fn(pre+nm.name+".weight", []int{len(nm.v)}, nm.v)
			}
		}
	}
	fn("model.norm.weight", []int{h}, p.Norm)
	if &p.Head[0] != &p.Embed[0] {
		fn("lm_head.weight", []int{len(p.Head) / h, h}, p.Head)
	}
}

// Zero sets every value of p to 0.
func (p *Params) Zero() { p.Each(func(_ string, v []float32) { clear(v) }) }

// SaveWeights writes m's weights as a float32 safetensors file with Hugging Face's tensor
// names and layout (a GGUF model's dequantized, its Q and K rows in Hugging Face's order), so
// that PyTorch can go on training them (tools/pretrain/pretrain.py --init).
func SaveWeights(m *model.Model, path string) error { return paramsOf(m).Save(path) }

// Save writes p as a float32 safetensors file with Hugging Face's tensor names.
func (p *Params) Save(path string) error {
	var ts []safetensors.Tensor
	p.EachShaped(func(name string, shape []int, v []float32) {
		if p.gemma && strings.Contains(name, "norm") {
			w := make([]float32, len(v))
			for i, x := range v {
				w[i] = x - 1 // held as 1 + w
			}
			v = w
		}
		ts = append(ts, safetensors.FromFloat32s(name, shape, v))
	})
	return writeAtomic(path, func(w *bufio.Writer) error { return safetensors.Write(w, ts, map[string]string{"format": "pt"}) })
}
