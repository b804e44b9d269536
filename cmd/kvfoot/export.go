package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"

	"github.com/kvfoot/kvfoot/format/gguf"
	"github.com/kvfoot/kvfoot/internal/outfile"
	"github.com/kvfoot/kvfoot/model"
	"github.com/kvfoot/kvfoot/tensor"
	"github.com/kvfoot/kvfoot/tokenizer"
	"github.com/kvfoot/kvfoot/train"
)

func init() {
	register("export", "write a model as a GGUF file that llama.cpp loads (f32, f16 or q8_0 weights), or its weights as float32 safetensors", runExport)
}

func runExport(args []string) error {
	fs := newFlags("export")
	dir := fs.String("model", "", "model: a folder (config.json, safetensors weights, tokenizer.json); for a .safetensors --out also a .gguf file")
	out := fs.String("out", "", "output: a .gguf file, or a .safetensors file of the weights alone in float32 with Hugging Face's names and layout (a GGUF model's dequantized), to go on training them elsewhere")
	typ := fs.String("type", "f16", "weight matrix type of a .gguf: f32, f16 or q8_0 (norms and biases stay f32)")
	force := fs.Bool("force", false, "replace --out if it exists")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case *dir == "":
		return errors.New("--model is required (a model folder)")
	case *out == "":
		return errors.New("--out is required")
	}
	if err := outfile.Check(*out, *force); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if strings.HasSuffix(*out, ".safetensors") {
		return exportWeights(*dir, *out)
	}
	wt, ok := exportTypes[*typ]
	if !ok {
		return fmt.Errorf("--type %q: want f32, f16 or q8_0", *typ)
	}
	if st, err := os.Stat(*dir); err != nil || !st.IsDir() {
		return fmt.Errorf("--model %s: not a model folder (a .gguf exports to .safetensors only)", *dir)
	}
	m, err := model.Load(*dir, model.LoadOptions{})
	if err != nil {
		return err
	}
	defer m.Close()
	tok, err := tokenizer.GGUFMetadata(*dir)
	if err != nil {
		return err
	}
	kv, ts, err := exportGGUF(m, wt)
	if err != nil {
		return fmt.Errorf("--model %s: %w", *dir, err)
	}
	if tok, err = padVocab(tok, m.Config.Vocab); err != nil {
		return fmt.Errorf("--model %s: %w", *dir, err)
	}
	kv = append(kv, tok...)
	if err := gguf.WriteFile(*out, kv, ts, *force); err != nil {
		return err
	}
	if keys := llamaCppIgnores(kv); len(keys) > 0 {
		fmt.Fprintf(os.Stderr, "kvfoot export: warning: this model departs from what llama.cpp fixes for %s; kvfoot reads %s, llama.cpp ignores them and will compute other logits\n",
			m.Config.Arch, strings.Join(keys, ", "))
	}
	var bytes uint64
	for _, t := range ts {
		bytes += uint64(len(t.Data))
	}
	fmt.Fprintf(os.Stderr, "kvfoot export: wrote %s: %s, %d tensors, %.1f MiB of weights\n", *out, *typ, len(ts), float64(bytes)/(1<<20))
	return nil
}

// exportWeights writes the weights of the model at path (a folder or a .gguf) to out as
// float32 safetensors.
func exportWeights(path, out string) error {
	m, err := model.Open(path, model.LoadOptions{})
	if err != nil {
		return err
	}
	defer m.Close()
	if err := train.SaveWeights(m, out); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "kvfoot export: wrote %s: the float32 weights of %s (%.1fM parameters)\n", out, path, float64(m.Config.Params())/1e6)
	return nil
}

// exportType is a --type: the GGUF type of the weight matrices and the
// general.file_type (llama_ftype) that names it.
type exportType struct {
	gguf     gguf.Type
	fileType uint32
}

var exportTypes = map[string]exportType{
	"f32":  {gguf.F32, 0},  // LLAMA_FTYPE_ALL_F32
	"f16":  {gguf.F16, 1},  // LLAMA_FTYPE_MOSTLY_F16
	"q8_0": {gguf.Q8_0, 7}, // LLAMA_FTYPE_MOSTLY_Q8_0
}

// exportArchs maps config.json's architecture to llama.cpp's general.architecture
// and whether its Q/K rows are permuted for llama.cpp's adjacent-pair RoPE. Mistral
// is llama to llama.cpp's converter too.
var exportArchs = map[string]struct {
	name    string
	permute bool
}{
	"LlamaForCausalLM":   {"llama", true},
	"MistralForCausalLM": {"llama", true},
	"Qwen2ForCausalLM":   {"qwen2", false},
	"Qwen3ForCausalLM":   {"qwen3", false},
	"Gemma2ForCausalLM":  {"gemma2", false},
	"Gemma3ForCausalLM":  {"gemma3", false},
}

// exportGGUF lays a model out as llama.cpp's convert_hf_to_gguf.py does: the {arch}.*
// hyper-parameters, tensors by their GGUF names (ggml dimensions [cols, rows]), Q and
// K rows permuted, Llama 3 rope scaling as the rope_freqs.weight factors; weight
// matrices in wt (Q8_0 where a row is whole 32-value blocks, else F16, as llama.cpp
// falls back), vectors in F32.
func exportGGUF(m *model.Model, wt exportType) ([]gguf.KV, []gguf.Tensor, error) {
	c := m.Config
	a, ok := exportArchs[c.Arch]
	if !ok {
		return nil, nil, fmt.Errorf("config.json architecture %q: export writes Llama, Mistral, Qwen2, Qwen3, Gemma 2 and Gemma 3 models", c.Arch)
	}
	arch := a.name
	name := "kvfoot export"
	kv := []gguf.KV{
		{Key: "general.architecture", Value: arch},
		{Key: "general.name", Value: name},
		{Key: "general.file_type", Value: wt.fileType},
		{Key: arch + ".context_length", Value: uint32(max(c.MaxPositions, 1))},
		{Key: arch + ".embedding_length", Value: uint32(c.Hidden)},
		{Key: arch + ".block_count", Value: uint32(c.Layers)},
		{Key: arch + ".feed_forward_length", Value: uint32(c.Intermediate)},
		{Key: arch + ".attention.head_count", Value: uint32(c.Heads)},
		{Key: arch + ".attention.head_count_kv", Value: uint32(c.KVHeads)},
		{Key: arch + ".attention.key_length", Value: uint32(c.HeadDim)},
		{Key: arch + ".attention.value_length", Value: uint32(c.HeadDim)},
		{Key: arch + ".rope.dimension_count", Value: uint32(c.HeadDim)},
		{Key: arch + ".attention.layer_norm_rms_epsilon", Value: c.NormEps},
		{Key: arch + ".rope.freq_base", Value: float32(c.Rope.Theta)},
		{Key: arch + ".vocab_size", Value: uint32(c.Vocab)},
	}
	switch c.Rope.Type {
	case "default":
	case "linear":
		kv = append(kv, gguf.KV{Key: arch + ".rope.scaling.type", Value: "linear"},
			gguf.KV{Key: arch + ".rope.scaling.factor", Value: float32(c.Rope.Factor)})
	case "llama3":
	default:
		return nil, nil, fmt.Errorf("rope scaling %q: GGUF export writes default, linear and llama3", c.Rope.Type)
	}
	if c.Gemma {
		g, err := exportGemma(c, arch)
		if err != nil {
			return nil, nil, err
		}
		kv = append(kv, g...)
	} else if len(c.Window) > 0 {
		// GGUF's llama layout has one window for every layer; a model whose layers
		// differ (Qwen2's max_window_layers) has no GGUF form here
		for _, w := range c.Window {
			if w != c.Window[0] || w == 0 {
				return nil, nil, fmt.Errorf("sliding windows %v differ between layers: GGUF export writes one window for every layer", c.Window)
			}
		}
		kv = append(kv, gguf.KV{Key: arch + ".attention.sliding_window", Value: uint32(c.Window[0])})
	}
	var ts []gguf.Tensor
	mat := func(name string, w *tensor.Mat, permuteHeads int) {
		v := w.Float32s()
		if permuteHeads > 0 {
			v = permuteQK(v, permuteHeads, w.Rows, w.Cols)
		}
		ts = append(ts, exportMatrix(name, v, w.Rows, w.Cols, wt.gguf))
	}
	vec := func(name string, v []float32, permuteHeads int) {
		if permuteHeads > 0 {
			v = permuteQK(v, permuteHeads, len(v), 1)
		}
		ts = append(ts, gguf.Tensor{Name: name, Dims: []uint64{uint64(len(v))}, Type: gguf.F32, Data: f32Bytes(v)})
	}
	qh, kh := 0, 0
	if a.permute {
		qh, kh = c.Heads, c.KVHeads
	}
	mat("token_embd.weight", &m.Embed, 0)
	vec("output_norm.weight", m.Norm, 0)
	if !c.TieEmbeddings {
		mat("output.weight", &m.Head, 0)
	}
	if c.Rope.Type == "llama3" {
		vec("rope_freqs.weight", llama3Factors(c.Rope, c.HeadDim), 0)
	}
	for i := range m.Layers {
		L := &m.Layers[i]
		p := fmt.Sprintf("blk.%d.", i)
		vec(p+"attn_norm.weight", L.AttnNorm, 0)
		vec(p+"ffn_norm.weight", L.MLPNorm, 0)
		if c.Gemma { // the norms hold 1 + w already, as llama.cpp's converter stores them
			vec(p+"post_attention_norm.weight", L.PostAttnNorm, 0)
			vec(p+"post_ffw_norm.weight", L.PostMLPNorm, 0)
		}
		if L.QNorm != nil {
			vec(p+"attn_q_norm.weight", L.QNorm, 0)
			vec(p+"attn_k_norm.weight", L.KNorm, 0)
		}
		for _, l := range []struct {
			name  string
			lin   *model.Linear
			heads int
		}{{"attn_q", &L.Q, qh}, {"attn_k", &L.K, kh}, {"attn_v", &L.V, 0}, {"attn_output", &L.O, 0},
			{"ffn_gate", &L.Gate, 0}, {"ffn_up", &L.Up, 0}, {"ffn_down", &L.Down, 0}} {
			mat(p+l.name+".weight", &l.lin.W, l.heads)
			if l.lin.Bias != nil {
				vec(p+l.name+".bias", l.lin.Bias, l.heads)
			}
		}
	}
	return kv, ts, nil
}

// exportMatrix stores a rows x cols float32 matrix as a GGUF tensor of type t (F16
// for a Q8_0 matrix whose rows are not whole blocks).
func exportMatrix(name string, v []float32, rows, cols int, t gguf.Type) gguf.Tensor {
	dims := []uint64{uint64(cols), uint64(rows)}
	if t == gguf.Q8_0 && cols%tensor.BlockQ8_0.Values != 0 {
		t = gguf.F16
	}
	switch t {
	case gguf.F16:
		raw := make([]byte, 2*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint16(raw[2*i:], tensor.FloatToF16(x))
		}
		return gguf.Tensor{Name: name, Dims: dims, Type: gguf.F16, Data: raw}
	case gguf.Q8_0:
		rb := tensor.BlockQ8_0.RowBytes(cols)
		raw := make([]byte, rows*rb)
		for r := range rows {
			tensor.BlockQ8_0.Quantize(raw[r*rb:(r+1)*rb], v[r*cols:(r+1)*cols])
		}
		return gguf.Tensor{Name: name, Dims: dims, Type: gguf.Q8_0, Data: raw}
	}
	return gguf.Tensor{Name: name, Dims: dims, Type: gguf.F32, Data: f32Bytes(v)}
}

func f32Bytes(v []float32) []byte {
	raw := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(x))
	}
	return raw
}

// permuteQK is llama.cpp's converter's permutation of Q and K rows for its
// adjacent-pair RoPE: reshape(heads, 2, rows/heads/2, cols).swapaxes(1, 2), so GGUF
// row (h, i, s) is Hugging Face row (h, s, i), whose rotate_half pairs i and i + d/2.
func permuteQK(w []float32, heads, rows, cols int) []float32 {
	out := make([]float32, len(w))
	half := rows / heads / 2
	for h := range heads {
		for s := range 2 {
			for i := range half {
				src, dst := (h*2+s)*half+i, (h*half+i)*2+s
				copy(out[dst*cols:(dst+1)*cols], w[src*cols:(src+1)*cols])
			}
		}
	}
	return out
}

// llama3Factors are the rope_freqs.weight values llama.cpp's converter writes for
// Llama 3's rope scaling (LlamaModel.generate_extra_tensors): per frequency, 1 for
// short wavelengths, the factor for long ones, and a smooth blend between.
func llama3Factors(r model.Rope, headDim int) []float32 {
	low, high := r.OriginalMaxPositions/r.LowFreqFactor, r.OriginalMaxPositions/r.HighFreqFactor
	var out []float32
	for i := 0; i < headDim; i += 2 {
		wavelen := 2 * math.Pi * math.Pow(r.Theta, float64(i)/float64(headDim))
		switch {
		case wavelen < high:
			out = append(out, 1)
		case wavelen > low:
			out = append(out, float32(r.Factor))
		default:
			s := (r.OriginalMaxPositions/wavelen - r.LowFreqFactor) / (r.HighFreqFactor - r.LowFreqFactor)
			out = append(out, float32(1/((1-s)/r.Factor+s)))
		}
	}
	return out
}

// padVocab extends the token list (and its types and scores) with unused [PADn]
// tokens to the model's vocabulary size, as llama.cpp's converter does: llama.cpp
// takes the vocabulary size from the token list and checks token_embd against it.
func padVocab(kv []gguf.KV, vocab int) ([]gguf.KV, error) {
	out := make([]gguf.KV, len(kv))
	for i, e := range kv {
		a, ok := e.Value.(gguf.Array)
		switch {
		case !ok:
		case e.Key == "tokenizer.ggml.tokens":
			toks := a.Values.([]string)
			if len(toks) > vocab {
				return nil, fmt.Errorf("the tokenizer has %d tokens, more than the model's vocabulary of %d", len(toks), vocab)
			}
			for n := len(toks); n < vocab; n++ {
				toks = append(toks, fmt.Sprintf("[PAD%d]", n))
			}
			a.Values = toks
		case e.Key == "tokenizer.ggml.token_type":
			types := a.Values.([]int32)
			for len(types) < vocab {
				types = append(types, 5) // unused
			}
			a.Values = types
		case e.Key == "tokenizer.ggml.scores":
			scores := a.Values.([]float32)
			for len(scores) < vocab {
				scores = append(scores, -1e9)
			}
			a.Values = scores
		}
		if ok {
			e.Value = a
		}
		out[i] = e
	}
	return out, nil
}

// exportGemma is the Gemma 2/3 metadata: what llama.cpp's converter writes (soft caps,
// sliding window), and, under llama.cpp's own keys, whatever of the model departs from
// what llama.cpp fixes for the architecture (model.LoadGGUF reads them; llama.cpp does
// not: llamaCppIgnores names them). A model llama.cpp's keys cannot describe at all
// (Gemma 2 without soft caps or windows, Gemma 3 with scaled local RoPE) is refused.
func exportGemma(c model.Config, arch string) ([]gguf.KV, error) {
	var kv []gguf.KV
	add := func(key string, v any) { kv = append(kv, gguf.KV{Key: arch + "." + key, Value: v}) }
	if arch == "gemma2" {
		if c.AttnSoftCap == 0 || c.FinalSoftCap == 0 || len(c.Window) == 0 {
			return nil, fmt.Errorf("a Gemma 2 model without attention and logit soft caps or without sliding windows has no GGUF form: llama.cpp caps at 50 and 30 and slides 4096 unless told otherwise")
		}
		add("attn_logit_softcapping", c.AttnSoftCap)
		add("final_logit_softcapping", c.FinalSoftCap)
	} else {
		if c.FinalSoftCap != 0 {
			add("final_logit_softcapping", c.FinalSoftCap)
		}
		if c.AttnSoftCap != 0 {
			add("attn_logit_softcapping", c.AttnSoftCap)
		}
	}
	period := map[string]int{"gemma2": 2, "gemma3": 6}[arch]
	if len(c.Window) > 0 {
		w, local, differs := 0, make([]bool, c.Layers), false
		for l, lw := range c.Window {
			if lw != 0 && w != 0 && lw != w {
				return nil, fmt.Errorf("sliding windows %v differ between local layers: GGUF has one window", c.Window)
			}
			w, local[l] = max(w, lw), lw != 0
			differs = differs || local[l] != (l%period < period-1)
		}
		add("attention.sliding_window", uint32(w))
		if differs {
			add("attention.sliding_window_pattern", gguf.Array{Elem: gguf.TypeBool, Values: local})
		}
	}
	if lr := c.LocalRope; arch == "gemma3" && lr.Theta != 0 && len(c.Window) > 0 {
		if lr.Type != "default" {
			return nil, fmt.Errorf("local layers' rope scaling %q: GGUF has no key for it (llama.cpp leaves local layers unscaled)", lr.Type)
		}
		if lr.Theta != 10000 {
			add("rope.freq_base_swa", float32(lr.Theta))
		}
	}
	// llama.cpp's attention scale: 1/√(hidden/heads) for the 27B models, else 1/√head_dim.
	scale := 1 / math.Sqrt(float64(c.HeadDim))
	if arch == "gemma2" && c.Layers == 46 || arch == "gemma3" && c.Layers == 62 {
		scale = 1 / math.Sqrt(float64(c.Hidden/c.Heads))
	}
	if math.Abs(float64(c.AttnScale)/scale-1) > 1e-6 { // more than float32 rounding
		add("attention.scale", c.AttnScale)
	}
	if c.EmbedScale != float32(math.Sqrt(float64(c.Hidden))) {
		add("embedding_scale", c.EmbedScale)
	}
	return kv, nil
}

// llamaCppIgnores lists the metadata keys of kv that model.LoadGGUF reads and
// llama.cpp does not for the file's architecture: where llama.cpp's logits will
// differ from kvfoot's on the exported file.
func llamaCppIgnores(kv []gguf.KV) []string {
	var out []string
	for _, e := range kv {
		for _, k := range []string{".attention.scale", ".attention.sliding_window_pattern", ".rope.freq_base_swa", ".embedding_scale", "gemma3.attn_logit_softcapping"} {
			if strings.HasPrefix(e.Key, "gemma") && strings.HasSuffix(e.Key, k) {
				out = append(out, e.Key)
			}
		}
	}
	return out
}
