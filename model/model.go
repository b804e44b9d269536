// Package model runs Llama-family transformers (Llama 2/3, SmolLM, Mistral, Qwen2)
// for a chunk of tokens against a KV cache that it reaches only through Cache.
package model

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/kvfoot/kvfoot/compute"
	"github.com/kvfoot/kvfoot/format/safetensors"
	"github.com/kvfoot/kvfoot/tensor"
)

// Linear is a weight matrix with an optional bias (nil when absent).
type Linear struct {
	W    tensor.Mat
	Bias []float32
}

// To is the product of l into dst.
func (l *Linear) To(dst compute.Buf) compute.Out { return compute.Out{Dst: dst, W: &l.W, Bias: l.Bias} }

// layerLinear is one of a layer's projections: where it goes, its shape [out, in]
// and whether the config gives it a bias.
type layerLinear struct {
	dst     *Linear
	out, in int
	bias    bool
}

// linears lists L's seven projections in the order q, k, v, o, gate, up, down, which
// every weight format's names follow (hfLinearNames, ggufLinearNames).
func (c *Config) linears(L *Layer) [7]layerLinear {
	q, kv := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	return [7]layerLinear{
		{&L.Q, q, c.Hidden, c.QKVBias}, {&L.K, kv, c.Hidden, c.QKVBias}, {&L.V, kv, c.Hidden, c.QKVBias},
		{&L.O, c.Hidden, q, c.OBias},
		{&L.Gate, c.Intermediate, c.Hidden, c.MLPBias}, {&L.Up, c.Intermediate, c.Hidden, c.MLPBias},
		{&L.Down, c.Hidden, c.Intermediate, c.MLPBias},
	}
}

var hfLinearNames = [7]string{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
	"mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}

// Layer holds one transformer block's weights.
type Layer struct {
	AttnNorm, MLPNorm []float32 // the inputs' norms of attention and MLP
	Q, K, V, O        Linear
	Gate, Up, Down    Linear
	// QNorm and KNorm normalise each head of q and k before RoPE ([head_dim]; nil
	// without Config.QKNorm).
	QNorm, KNorm []float32
	// PostAttnNorm and PostMLPNorm normalise the outputs of attention and MLP before
	// the residual add (Gemma; nil otherwise).
	PostAttnNorm, PostMLPNorm []float32
}

// Model is a loaded model: config and weights. It is read-only once loaded, so one
// Model can serve many sequences at once, each with its own Runner and Cache.
type Model struct {
	Config Config
	Embed  tensor.Mat // [vocab, hidden]; bf16 rows are widened on lookup
	Layers []Layer
	Norm   []float32
	Head   tensor.Mat // [vocab, hidden]; the same storage as Embed when tied
	// invFreq are the rotary inverse frequencies, head_dim/2 of them; localInvFreq
	// those of local layers when their RoPE differs (nil otherwise).
	invFreq, localInvFreq []float32
	ckpt                  *safetensors.Checkpoint
	backend               compute.Backend // nil: CPU
}

// Backend is the backend the model's weights are on: CPU unless SetBackend moved them.
func (m *Model) Backend() compute.Backend {
	if m.backend == nil {
		return compute.CPU
	}
	return m.backend
}

// SetBackend makes b the backend of every Runner made afterwards; b must hold (or have
// uploaded) the model's weights.
func (m *Model) SetBackend(b compute.Backend) { m.backend = b }

// Shape returns the attention geometry (kv.Shape(m.Shape()) converts it).
func (m *Model) Shape() Shape { return m.Config.Shape() }

// Close releases the memory-mapped weight files; m must not be used afterwards.
func (m *Model) Close() error {
	if m.ckpt == nil {
		return nil
	}
	return m.ckpt.Close()
}

// LoadOptions chooses how weights are held in memory.
type LoadOptions struct {
	// F32 widens bf16 weight matrices to float32 at load (twice the memory);
	// by default they stay bf16, memory-mapped, and the kernels widen them.
	F32 bool
}

// Load reads config.json and the safetensors weights of a Hugging Face model folder.
func Load(dir string, opts LoadOptions) (*Model, error) {
	if g := FolderGGUF(dir); g != "" {
		return LoadGGUF(g, opts)
	}
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	ckpt, err := safetensors.OpenCheckpoint(dir)
	if err != nil {
		return nil, err
	}
	m := &Model{Config: cfg, ckpt: ckpt}
	m.setInvFreq()
	if err := m.loadWeights(opts); err != nil {
		ckpt.Close()
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return m, nil
}

func (m *Model) setInvFreq() {
	c := &m.Config
	m.invFreq = c.Rope.InvFreq(c.HeadDim)
	if c.LocalRope.Theta != 0 && c.LocalLayers() > 0 {
		m.localInvFreq = c.LocalRope.InvFreq(c.HeadDim)
	}
}

// loader fetches tensors by name and checks them against the config's shapes.
type loader struct {
	ckpt *safetensors.Checkpoint
	opts LoadOptions
	// prefix of every tensor's name: "" or, for a text model saved from its multimodal
	// parent (Gemma 3), "model.language_model." with "model." dropped from the names.
	prefix string
	plus1  bool // Gemma's norms scale by (1 + w): vecs of norms are stored plus one
}

// norm loads a norm's weight: w, or 1 + w (computed in float32, as transformers does)
// for Gemma.
func (l loader) norm(name string, n int) ([]float32, error) {
	w, err := l.vec(name, n)
	if err != nil || !l.plus1 {
		return w, err
	}
	out := make([]float32, len(w)) // w may alias the read-only mapping of an f32 file
	for i, x := range w {
		out[i] = 1 + x
	}
	return out, nil
}

func (l loader) get(name string, shape ...int) (safetensors.Tensor, error) {
	t, f, err := l.ckpt.Tensor(l.prefix + name)
	if err != nil {
		return t, err
	}
	where := filepath.Base(f.Path)
	if len(t.Shape) != len(shape) {
		return t, fmt.Errorf("%s: tensor %q: shape %v, want %v", where, name, t.Shape, shape)
	}
	for i := range shape {
		if t.Shape[i] != shape[i] {
			return t, fmt.Errorf("%s: tensor %q: shape %v, want %v", where, name, t.Shape, shape)
		}
	}
	switch t.Dtype {
	case safetensors.F32, safetensors.BF16, safetensors.F16:
	default:
		return t, fmt.Errorf("%s: tensor %q: dtype %s, want F32, BF16 or F16", where, name, t.Dtype)
	}
	return t, nil
}

// vec loads a 1-D tensor as float32 (norm weights and biases are small: always widened).
func (l loader) vec(name string, n int) ([]float32, error) {
	t, err := l.get(name, n)
	if err != nil {
		return nil, err
	}
	return t.Float32s()
}

// mat loads a [rows, cols] weight: bf16 stays bf16 (aliasing the mapping) unless
// F32 was asked for; f16 is widened to float32.
func (l loader) mat(name string, rows, cols int) (tensor.Mat, error) {
	t, err := l.get(name, rows, cols)
	if err != nil {
		return tensor.Mat{}, err
	}
	m := tensor.Mat{Rows: rows, Cols: cols}
	if t.Dtype == safetensors.BF16 && !l.opts.F32 {
		m.BF16, err = t.BF16s()
	} else {
		m.F32, err = t.Float32s()
	}
	return m, err
}

// weightSource is what a loader of one file format gives loadLinear.
type weightSource interface {
	mat(name string, rows, cols int) (tensor.Mat, error)
	vec(name string, n int) ([]float32, error)
}

// loadLinear reads prefix.weight, out×in, and prefix.bias when the layer has one.
func loadLinear(l weightSource, prefix string, out, in int, bias bool) (Linear, error) {
	w, err := l.mat(prefix+".weight", out, in)
	if err != nil {
		return Linear{}, err
	}
	lin := Linear{W: w}
	if bias {
		if lin.Bias, err = l.vec(prefix+".bias", out); err != nil {
			return Linear{}, err
		}
	}
	return lin, nil
}

func (m *Model) loadWeights(opts LoadOptions) error {
	c := &m.Config
	l := loader{ckpt: m.ckpt, opts: opts, plus1: c.Gemma}
	if _, _, err := m.ckpt.Tensor("model.embed_tokens.weight"); err != nil {
		if _, _, err2 := m.ckpt.Tensor("model.language_model.embed_tokens.weight"); err2 == nil {
			l.prefix = "model.language_model."
		}
	}
	// names below are relative to "model." (the head is "lm_head.weight" in both layouts)
	mname := func(n string) string {
		if l.prefix != "" {
			return n
		}
		return "model." + n
	}
	var err error
	if m.Embed, err = l.mat(mname("embed_tokens.weight"), c.Vocab, c.Hidden); err != nil {
		return err
	}
	if m.Norm, err = l.norm(mname("norm.weight"), c.Hidden); err != nil {
		return err
	}
	// Some tied checkpoints still store lm_head; the tie decides, as in transformers.
	if c.TieEmbeddings {
		m.Head = m.Embed
	} else if m.Head, err = (loader{ckpt: l.ckpt, opts: l.opts}).mat("lm_head.weight", c.Vocab, c.Hidden); err != nil {
		return err
	}
	m.Layers = make([]Layer, c.Layers)
	for i := range m.Layers {
		p := mname(fmt.Sprintf("layers.%d.", i))
		L := &m.Layers[i]
		for i, s := range c.linears(L) {
			if *s.dst, err = loadLinear(l, p+hfLinearNames[i], s.out, s.in, s.bias); err != nil {
				return err
			}
		}
		norms := []struct {
			dst  *[]float32
			name string
			n    int
		}{{&L.AttnNorm, "input_layernorm", c.Hidden}}
		if c.Gemma {
			norms = append(norms, []struct {
				dst  *[]float32
				name string
				n    int
			}{{&L.PostAttnNorm, "post_attention_layernorm", c.Hidden}, {&L.MLPNorm, "pre_feedforward_layernorm", c.Hidden},
				{&L.PostMLPNorm, "post_feedforward_layernorm", c.Hidden}}...)
		} else {
			norms = append(norms, struct {
				dst  *[]float32
				name string
				n    int
			}{&L.MLPNorm, "post_attention_layernorm", c.Hidden})
		}
		if c.QKNorm {
			norms = append(norms, []struct {
				dst  *[]float32
				name string
				n    int
			}{{&L.QNorm, "self_attn.q_norm", c.HeadDim}, {&L.KNorm, "self_attn.k_norm", c.HeadDim}}...)
		}
		for _, nm := range norms {
			if *nm.dst, err = l.norm(p+nm.name+".weight", nm.n); err != nil {
				return err
			}
		}
	}
	return nil
}

// NewRandom builds a model of the given config with random float32 weights (normal,
// std 0.02; norms 1), for benchmarks and for tests that need no checkpoint.
func NewRandom(cfg Config, seed uint64) *Model {
	r := rand.New(rand.NewPCG(seed, 0x6b76666f6f74))
	fill := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64() * 0.02)
		}
		return v
	}
	return newRandom(cfg, func(rows, cols int) tensor.Mat {
		return tensor.Mat{Rows: rows, Cols: cols, F32: fill(rows * cols)}
	}, fill)
}

// NewRandomBF16 is NewRandom with bf16 weight matrices filled in parallel (other weights than
// NewRandom's: each piece of a matrix has its own generator), for benchmarks of models whose
// float32 weights would not fit in memory or take minutes to draw (8B parameters).
func NewRandomBF16(cfg Config, seed uint64) *Model {
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	piece := uint64(0)
	mat := func(rows, cols int) tensor.Mat {
		w := tensor.Mat{Rows: rows, Cols: cols, BF16: make([]uint16, rows*cols)}
		const size = 1 << 22
		for lo := 0; lo < len(w.BF16); lo += size {
			part := w.BF16[lo:min(lo+size, len(w.BF16))]
			piece++
			r := rand.New(rand.NewPCG(seed, piece))
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				for i := range part {
					part[i] = tensor.FloatToBF16(float32(r.NormFloat64() * 0.02))
				}
			})
		}
		return w
	}
	r := rand.New(rand.NewPCG(seed, 0))
	fill := func(n int) []float32 { // biases: few
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64() * 0.02)
		}
		return v
	}
	m := newRandom(cfg, mat, fill)
	wg.Wait()
	return m
}

// newRandom builds a model of cfg whose weight matrices come from mat and biases from fill,
// called in a fixed order; norms are 1.
func newRandom(c Config, mat func(rows, cols int) tensor.Mat, fill func(n int) []float32) *Model {
	ones := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = 1
		}
		return v
	}
	lin := func(out, in int, bias bool) Linear {
		l := Linear{W: mat(out, in)}
		if bias {
			l.Bias = fill(out)
		}
		return l
	}
	m := &Model{Config: c, Norm: ones(c.Hidden)}
	m.setInvFreq()
	m.Embed = mat(c.Vocab, c.Hidden)
	m.Head = m.Embed
	if !c.TieEmbeddings {
		m.Head = mat(c.Vocab, c.Hidden)
	}
	q, kv := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	m.Layers = make([]Layer, c.Layers)
	for i := range m.Layers {
		m.Layers[i] = Layer{
			AttnNorm: ones(c.Hidden), MLPNorm: ones(c.Hidden),
			Q: lin(q, c.Hidden, c.QKVBias), K: lin(kv, c.Hidden, c.QKVBias), V: lin(kv, c.Hidden, c.QKVBias),
			O:    lin(c.Hidden, q, c.OBias),
			Gate: lin(c.Intermediate, c.Hidden, c.MLPBias), Up: lin(c.Intermediate, c.Hidden, c.MLPBias),
			Down: lin(c.Hidden, c.Intermediate, c.MLPBias),
		}
		if c.QKNorm {
			m.Layers[i].QNorm, m.Layers[i].KNorm = ones(c.HeadDim), ones(c.HeadDim)
		}
		if c.Gemma {
			m.Layers[i].PostAttnNorm, m.Layers[i].PostMLPNorm = ones(c.Hidden), ones(c.Hidden)
		}
	}
	return m
}

// Presets are configs of published models, for random-weight benchmarks.
var Presets = map[string]Config{
	"smollm2-135m": {
		Arch: "LlamaForCausalLM", Hidden: 576, Intermediate: 1536, Layers: 30, Heads: 9, KVHeads: 3,
		HeadDim: 64, Vocab: 49152, NormEps: 1e-5, TieEmbeddings: true, MaxPositions: 8192,
		Rope: Rope{Theta: 100000, Type: "default", Factor: 1}, BOS: 1, EOS: []int{2},
	},
	"llama-3.2-1b": {
		Arch: "LlamaForCausalLM", Hidden: 2048, Intermediate: 8192, Layers: 16, Heads: 32, KVHeads: 8,
		HeadDim: 64, Vocab: 128256, NormEps: 1e-5, TieEmbeddings: true, MaxPositions: 131072,
		Rope: llama3Rope(32), BOS: 128000, EOS: []int{128001},
	},
	"llama-3.1-8b": {
		Arch: "LlamaForCausalLM", Hidden: 4096, Intermediate: 14336, Layers: 32, Heads: 32, KVHeads: 8,
		HeadDim: 128, Vocab: 128256, NormEps: 1e-5, MaxPositions: 131072,
		Rope: llama3Rope(8), BOS: 128000, EOS: []int{128001},
	},
}

// llama3Rope is Llama 3.1's and 3.2's rotary scaling (their config.json's rope_scaling:
// factor 8 for 3.1, 32 for 3.2).
func llama3Rope(factor float64) Rope {
	return Rope{Theta: 500000, Type: "llama3", Factor: factor, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositions: 8192}
}

// Params is the number of parameters (tied embeddings counted once).
func (c *Config) Params() int64 {
	q, kv := int64(c.Heads*c.HeadDim), int64(c.KVHeads*c.HeadDim)
	h, f := int64(c.Hidden), int64(c.Intermediate)
	layer := 2*h + h*q + 2*h*kv + q*h + 3*h*f
	if c.QKNorm {
		layer += 2 * int64(c.HeadDim)
	}
	if c.Gemma {
		layer += 2 * h
	}
	if c.QKVBias {
		layer += q + 2*kv
	}
	if c.OBias {
		layer += h
	}
	if c.MLPBias {
		layer += 2*f + h
	}
	n := int64(c.Layers)*layer + int64(c.Vocab)*h + h
	if !c.TieEmbeddings {
		n += int64(c.Vocab) * h
	}
	return n
}

// ToBF16 stores every float32 weight matrix as bf16 (rounded to nearest even), as
// a bf16 checkpoint would be held; norms and biases stay float32. For benchmarks of
// random-weight models.
func (m *Model) ToBF16() {
	conv := func(w *tensor.Mat) {
		if w.F32 == nil {
			return
		}
		b := make([]uint16, len(w.F32))
		for i, f := range w.F32 {
			b[i] = tensor.FloatToBF16(f)
		}
		w.F32, w.BF16 = nil, b
	}
	tied := m.Head.F32 != nil && &m.Head.F32[0] == &m.Embed.F32[0]
	conv(&m.Embed)
	if tied {
		m.Head = m.Embed
	} else {
		conv(&m.Head)
	}
	for i := range m.Layers {
		L := &m.Layers[i]
		for _, l := range []*Linear{&L.Q, &L.K, &L.V, &L.O, &L.Gate, &L.Up, &L.Down} {
			conv(&l.W)
		}
	}
}
