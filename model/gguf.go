package model

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/kvfoot/kvfoot/format/gguf"
	"github.com/kvfoot/kvfoot/tensor"
)

// ggufArchs maps general.architecture to the Hugging Face architecture whose
// semantics kvfoot runs, and says whether llama.cpp's converter permuted the Q and
// K rows (for its adjacent-pair RoPE), which the loader undoes.
var ggufArchs = map[string]struct {
	hf       string
	permuted bool
}{
	"llama":   {"LlamaForCausalLM", true},
	"mistral": {"MistralForCausalLM", true},
	"qwen2":   {"Qwen2ForCausalLM", false},
	"qwen3":   {"Qwen3ForCausalLM", false},
	"gemma2":  {"Gemma2ForCausalLM", false},
	"gemma3":  {"Gemma3ForCausalLM", false},
}

// blockFormats are the GGUF block types, F16 (one value a block) among them. Weight
// matrices stay in their blocks (the kernels compute on them); under LoadOptions.F32
// they are widened to float32 at load.
var blockFormats = map[gguf.Type]*tensor.BlockFormat{
	gguf.F16: &tensor.BlockF16, gguf.Q8_0: &tensor.BlockQ8_0, gguf.Q4_0: &tensor.BlockQ4_0,
	gguf.Q4_1: &tensor.BlockQ4_1, gguf.Q5_0: &tensor.BlockQ5_0, gguf.Q5_1: &tensor.BlockQ5_1, gguf.Q4_K: &tensor.BlockQ4_K, gguf.Q5_K: &tensor.BlockQ5_K, gguf.Q6_K: &tensor.BlockQ6_K,
}

// LoadGGUF reads a model from a GGUF file (general.architecture llama, mistral,
// qwen2, qwen3, gemma2 or gemma3). Weights are read into memory: F32 as is, BF16 as
// bf16, the F16 and quantized matrices in their blocks; opts.F32 widens everything.
// The file is closed on return.
func LoadGGUF(path string, opts LoadOptions) (*Model, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cfg, err := GGUFConfig(f)
	if err != nil {
		return nil, err
	}
	if err := checkGGUFMemory(f, opts); err != nil {
		return nil, err
	}
	m := &Model{Config: cfg}
	m.setInvFreq()
	arch, _ := f.String("general.architecture")
	l := ggufLoader{f: f, opts: opts}
	if err := l.weights(m, ggufArchs[arch].permuted); err != nil {
		return nil, err
	}
	return m, nil
}

// GGUFConfig reads the architecture from a GGUF file's metadata (the {arch}.* keys
// llama.cpp writes) and the presence of its optional tensors.
func GGUFConfig(f *gguf.File) (Config, error) {
	arch, err := f.String("general.architecture")
	if err != nil {
		return Config{}, err
	}
	a, ok := ggufArchs[arch]
	if !ok {
		return Config{}, fmt.Errorf("%s: metadata \"general.architecture\": %q is not supported (want llama, mistral, qwen2, qwen3, gemma2 or gemma3)", f.Path, arch)
	}
	c := Config{Arch: a.hf, BOS: -1, WeightsDtypeHint: mainType(f), QKNorm: arch == "qwen3" || arch == "gemma3"}
	num := func(key string, dst *int, max int64, required bool) error {
		if !f.Has(arch+"."+key) && !required {
			return nil
		}
		v, err := f.Int(arch + "." + key)
		if err != nil {
			return err
		}
		if v <= 0 || v > max {
			return fmt.Errorf("%s: metadata %q: %d, want a positive integer up to %d", f.Path, arch+"."+key, v, max)
		}
		*dst = int(v)
		return nil
	}
	for _, k := range []struct {
		key      string
		dst      *int
		max      int64
		required bool
	}{
		{"embedding_length", &c.Hidden, 1 << 20, true},
		{"feed_forward_length", &c.Intermediate, 1 << 22, true},
		{"block_count", &c.Layers, 1 << 12, true},
		{"attention.head_count", &c.Heads, 1 << 12, true},
		{"context_length", &c.MaxPositions, 1 << 30, false},
		{"vocab_size", &c.Vocab, 1 << 24, false},
	} {
		if err := num(k.key, k.dst, k.max, k.required); err != nil {
			return Config{}, err
		}
	}
	c.KVHeads = c.Heads
	if err := num("attention.head_count_kv", &c.KVHeads, 1<<12, false); err != nil {
		return Config{}, err
	}
	if c.Heads%c.KVHeads != 0 {
		return Config{}, fmt.Errorf("%s: metadata %q: %d does not divide the head count %d", f.Path, arch+".attention.head_count_kv", c.KVHeads, c.Heads)
	}
	if c.Hidden%c.Heads == 0 {
		c.HeadDim = c.Hidden / c.Heads
	}
	if err := num("attention.key_length", &c.HeadDim, 1<<16, c.HeadDim == 0); err != nil {
		return Config{}, err
	}
	if c.HeadDim%2 != 0 {
		return Config{}, fmt.Errorf("%s: head dimension %d is odd (RoPE rotates pairs)", f.Path, c.HeadDim)
	}
	for _, k := range []string{"attention.value_length", "rope.dimension_count"} {
		if v, err := f.Int(arch + "." + k); err == nil && v != int64(c.HeadDim) {
			return Config{}, fmt.Errorf("%s: metadata %q: %d, kvfoot runs only %d (the head dimension)", f.Path, arch+"."+k, v, c.HeadDim)
		}
	}
	if c.Vocab == 0 {
		emb, ok := f.Tensor("token_embd.weight")
		if !ok || len(emb.Dims) != 2 || emb.Dims[1] == 0 || emb.Dims[1] > 1<<24 {
			return Config{}, fmt.Errorf("%s: metadata %q: missing, and no 2-D token_embd.weight tells it", f.Path, arch+".vocab_size")
		}
		c.Vocab = int(emb.Dims[1])
	}
	c.NormEps = 1e-5
	if f.Has(arch + ".attention.layer_norm_rms_epsilon") {
		eps, err := f.Float(arch + ".attention.layer_norm_rms_epsilon")
		if err != nil {
			return Config{}, err
		}
		if !(eps > 0 && eps < 1) {
			return Config{}, fmt.Errorf("%s: metadata %q: %g, want 0 < eps < 1", f.Path, arch+".attention.layer_norm_rms_epsilon", eps)
		}
		c.NormEps = float32(eps)
	}
	if c.Rope, err = ggufRope(f, arch); err != nil {
		return Config{}, err
	}
	_, hasOutput := f.Tensor("output.weight")
	c.TieEmbeddings = !hasOutput
	_, c.QKVBias = f.Tensor("blk.0.attn_q.bias")
	_, c.OBias = f.Tensor("blk.0.attn_output.bias")
	_, c.MLPBias = f.Tensor("blk.0.ffn_up.bias")
	if f.Has("tokenizer.ggml.bos_token_id") {
		bos, err := f.Int("tokenizer.ggml.bos_token_id")
		if err != nil {
			return Config{}, err
		}
		if bos < 0 || bos >= int64(c.Vocab) {
			return Config{}, fmt.Errorf("%s: metadata \"tokenizer.ggml.bos_token_id\": %d is outside the vocabulary [0, %d)", f.Path, bos, c.Vocab)
		}
		c.BOS = int(bos)
	}
	// Generation stops at the end of text and, for chat models, at the end of a turn
	// or message, which llama.cpp keeps under their own keys.
	for _, key := range []string{"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"} {
		if !f.Has(key) {
			continue
		}
		id, err := f.Int(key)
		if err != nil {
			return Config{}, err
		}
		if id < 0 || id >= int64(c.Vocab) {
			return Config{}, fmt.Errorf("%s: metadata %q: %d is outside the vocabulary [0, %d)", f.Path, key, id, c.Vocab)
		}
		if !slices.Contains(c.EOS, int(id)) {
			c.EOS = append(c.EOS, int(id))
		}
	}
	if a.hf == "Gemma2ForCausalLM" || a.hf == "Gemma3ForCausalLM" {
		if err := ggufGemma(f, arch, &c); err != nil {
			return Config{}, err
		}
	} else if f.Has(arch + ".attention.sliding_window") {
		var w int
		if err := num("attention.sliding_window", &w, 1<<30, true); err != nil {
			return Config{}, err
		}
		c.Window = make([]int, c.Layers) // every layer local, as Mistral's config means it
		for l := range c.Window {
			c.Window[l] = w
		}
	}
	return c, nil
}

// mainType names the tensor type that holds most of the file's bytes, lower case
// ("q4_k", "f16"), for the weights' dtype as reports give it.
func mainType(f *gguf.File) string {
	bytes := map[gguf.Type]uint64{}
	var top gguf.Type
	for _, t := range f.Tensors {
		bytes[t.Type] += t.Size
		if bytes[t.Type] > bytes[top] || bytes[t.Type] == bytes[top] && t.Type < top {
			top = t.Type
		}
	}
	return strings.ToLower(top.String())
}

// ggufRope reads rope.freq_base and the rope.scaling.* keys. Llama 3's scaling is in
// GGUF a tensor of per-frequency factors, rope_freqs.weight, which ggufLlama3 turns
// back into the parameters it was made from.
func ggufRope(f *gguf.File, arch string) (Rope, error) {
	r := Rope{Theta: 10000, Type: "default", Factor: 1}
	if f.Has(arch + ".rope.freq_base") {
		var err error
		if r.Theta, err = f.Float(arch + ".rope.freq_base"); err != nil {
			return r, err
		}
		if !(r.Theta > 1) || math.IsInf(r.Theta, 0) {
			return r, fmt.Errorf("%s: metadata %q: %g, want > 1", f.Path, arch+".rope.freq_base", r.Theta)
		}
	}
	typ := "none"
	if f.Has(arch + ".rope.scaling.type") {
		var err error
		if typ, err = f.String(arch + ".rope.scaling.type"); err != nil {
			return r, err
		}
	}
	switch typ {
	case "none":
	case "linear":
		factor, err := f.Float(arch + ".rope.scaling.factor")
		if err != nil {
			return r, err
		}
		if !(factor > 0) || math.IsInf(factor, 0) {
			return r, fmt.Errorf("%s: metadata %q: %g, want > 0", f.Path, arch+".rope.scaling.factor", factor)
		}
		if factor != 1 {
			r.Type, r.Factor = "linear", factor
		}
	default:
		return r, fmt.Errorf("%s: metadata %q: %q is not supported (want none or linear)", f.Path, arch+".rope.scaling.type", typ)
	}
	if _, ok := f.Tensor("rope_freqs.weight"); ok {
		if r.Type != "default" {
			return r, fmt.Errorf("%s: tensor \"rope_freqs.weight\" together with %s scaling is not supported", f.Path, r.Type)
		}
		return ggufLlama3(f, r)
	}
	return r, nil
}

// ggufLlama3 recovers Llama 3's rope scaling from rope_freqs.weight, whose factor i
// divides inverse frequency i. llama.cpp's converter made them from (factor,
// low_freq_factor, high_freq_factor, original_max_position_embeddings): 1 for short
// wavelengths, factor for long ones, and between them 1/((1−s)/factor + s) with
// s = (old/wavelength − low)/(high − low), linear in the frequency: s = a·freq − b.
// InvFreq depends only on factor and that line, so the original context is taken as
// 8192 (Llama 3's) and the low and high factors follow from a and b. Two or more
// factors strictly between 1 and factor fix the line; with fewer, any line that puts
// the neighbouring frequencies on the right side of 0 and 1 gives the same
// frequencies. The result is checked against every factor.
func ggufLlama3(f *gguf.File, r Rope) (Rope, error) {
	ti, _ := f.Tensor("rope_freqs.weight")
	bad := func(why string) (Rope, error) {
		return r, fmt.Errorf("%s: tensor \"rope_freqs.weight\": %s", f.Path, why)
	}
	if ti.Type != gguf.F32 || len(ti.Dims) != 1 || ti.Dims[0] == 0 || ti.Dims[0] > 1<<15 {
		return bad(fmt.Sprintf("%s %v, want a 1-D F32 vector of half the head dimension", ti.Type, ti.Dims))
	}
	raw, err := f.ReadTensor(ti)
	if err != nil {
		return r, err
	}
	n := len(raw) / 4
	ff, freq := make([]float64, n), make([]float64, n)
	for i := range ff {
		ff[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:])))
		if !(ff[i] >= 1) || math.IsInf(ff[i], 0) {
			return bad(fmt.Sprintf("factor %d is %g, want ≥ 1", i, ff[i]))
		}
		freq[i] = math.Pow(r.Theta, -2*float64(i)/float64(2*n)) // decreasing in i
	}
	factor := ff[n-1]
	if factor == 1 {
		return r, nil // no scaling at all
	}
	smooth := func(i int) float64 { return (1/ff[i] - 1/factor) / (1 - 1/factor) }
	var mid []int // indices strictly between
	lastOne, firstFull := -1, n
	for i, v := range ff {
		switch {
		case v == 1:
			lastOne = i
		case v == factor:
			firstFull = min(firstFull, i)
		default:
			mid = append(mid, i)
		}
	}
	var a, b float64
	switch {
	case len(mid) >= 2:
		i, j := mid[0], mid[len(mid)-1]
		a = (smooth(i) - smooth(j)) / (freq[i] - freq[j])
		b = a*freq[i] - smooth(i)
	case len(mid) == 1:
		// Steep enough that the next lower frequency has s ≤ 0 and the next higher s ≥ 1.
		i := mid[0]
		s0 := smooth(i)
		if i+1 < n {
			a = max(a, s0/(freq[i]-freq[i+1]))
		}
		if i > 0 {
			a = max(a, (1-s0)/(freq[i-1]-freq[i]))
		}
		a *= 1.01
		b = a*freq[i] - s0
	case lastOne >= 0 && firstFull < n:
		// No factor between: s runs from just below 0 to just above 1 between the two groups.
		const d = 0.01
		a = (1 + 2*d) / (freq[lastOne] - freq[firstFull])
		b = a*freq[firstFull] + d
	default:
		return bad("the factors do not follow Llama 3's scaling")
	}
	const old = 8192
	span := old / (2 * math.Pi * a)
	r.Type, r.Factor, r.OriginalMaxPositions = "llama3", factor, old
	r.LowFreqFactor = b * span
	r.HighFreqFactor = r.LowFreqFactor + span
	if !(a > 0) || !(r.LowFreqFactor > 0) {
		return bad("the factors do not follow Llama 3's scaling")
	}
	def := Rope{Theta: r.Theta, Type: "default", Factor: 1}.InvFreq(2 * n)
	got := r.InvFreq(2 * n)
	for i := range ff {
		want := float64(def[i]) / ff[i]
		if math.Abs(float64(got[i])-want) > 1e-5*want {
			return bad(fmt.Sprintf("the factors do not follow Llama 3's scaling (factor %d is %g; the recovered scaling gives %g)",
				i, ff[i], float64(def[i])/float64(got[i])))
		}
	}
	return r, nil
}

// ggufLoader reads tensors by their GGUF names and checks their shapes.
type ggufLoader struct {
	f    *gguf.File
	opts LoadOptions
}

// tensor returns a tensor's info after checking its ggml dimensions.
func (l ggufLoader) tensor(name string, dims ...int) (*gguf.TensorInfo, error) {
	t, ok := l.f.Tensor(name)
	if !ok {
		return nil, fmt.Errorf("%s: tensor %q: missing", l.f.Path, name)
	}
	same := len(t.Dims) == len(dims)
	for i := range dims {
		same = same && t.Dims[i] == uint64(dims[i])
	}
	if !same {
		return nil, fmt.Errorf("%s: tensor %q: dimensions %v, want %v", l.f.Path, name, t.Dims, dims)
	}
	return t, nil
}

// floats reads a tensor widened to float32; keepBF16 returns bf16 tensors as bf16.
func (l ggufLoader) floats(t *gguf.TensorInfo, keepBF16 bool) ([]float32, []uint16, error) {
	raw, err := l.f.ReadTensor(t)
	if err != nil {
		return nil, nil, err
	}
	n := int(t.Elements())
	switch t.Type {
	case gguf.F32:
		v := make([]float32, n)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		return v, nil, nil
	case gguf.BF16:
		b := make([]uint16, n)
		for i := range b {
			b[i] = binary.LittleEndian.Uint16(raw[2*i:])
		}
		if keepBF16 {
			return nil, b, nil
		}
		v := make([]float32, n)
		tensor.BF16ToFloats(v, b)
		return v, nil, nil
	}
	bf, ok := blockFormats[t.Type]
	if !ok {
		return nil, nil, fmt.Errorf("%s: tensor %q: type %s is not supported (want F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K or Q6_K)", l.f.Path, t.Name, t.Type)
	}
	v := make([]float32, n)
	// The reader checked that rows are whole blocks.
	row := int(t.Dims[0])
	rb := bf.RowBytes(row)
	for r := 0; r < n/max(row, 1); r++ {
		bf.Dequant(v[r*row:(r+1)*row], raw[r*rb:(r+1)*rb])
	}
	return v, nil, nil
}

func (l ggufLoader) vec(name string, n int) ([]float32, error) {
	t, err := l.tensor(name, n)
	if err != nil {
		return nil, err
	}
	v, _, err := l.floats(t, false)
	return v, err
}

// mat reads a [rows, cols] matrix (ggml dimensions [cols, rows]).
func (l ggufLoader) mat(name string, rows, cols int) (tensor.Mat, error) {
	t, err := l.tensor(name, cols, rows)
	if err != nil {
		return tensor.Mat{}, err
	}
	if bf, ok := blockFormats[t.Type]; ok && !l.opts.F32 {
		raw, err := l.f.ReadTensor(t)
		if err != nil {
			return tensor.Mat{}, err
		}
		m, err := tensor.NewBlockMat(rows, cols, bf, raw)
		if err != nil {
			return tensor.Mat{}, fmt.Errorf("%s: tensor %q: %w", l.f.Path, name, err)
		}
		return m, nil
	}
	m := tensor.Mat{Rows: rows, Cols: cols}
	m.F32, m.BF16, err = l.floats(t, !l.opts.F32)
	return m, err
}

func (l ggufLoader) weights(m *Model, permuted bool) error {
	c := &m.Config
	var err error
	if m.Embed, err = l.mat("token_embd.weight", c.Vocab, c.Hidden); err != nil {
		return err
	}
	if m.Norm, err = l.vec("output_norm.weight", c.Hidden); err != nil {
		return err
	}
	m.Head = m.Embed
	if !c.TieEmbeddings {
		if m.Head, err = l.mat("output.weight", c.Vocab, c.Hidden); err != nil {
			return err
		}
	}
	m.Layers = make([]Layer, c.Layers)
	for i := range m.Layers {
		p := fmt.Sprintf("blk.%d.", i)
		L := &m.Layers[i]
		for i, s := range c.linears(L) {
			if *s.dst, err = loadLinear(l, p+ggufLinearNames[i], s.out, s.in, s.bias); err != nil {
				return err
			}
		}
		if L.AttnNorm, err = l.vec(p+"attn_norm.weight", c.Hidden); err != nil {
			return err
		}
		if L.MLPNorm, err = l.vec(p+"ffn_norm.weight", c.Hidden); err != nil {
			return err
		}
		if c.Gemma {
			if L.PostAttnNorm, err = l.vec(p+"post_attention_norm.weight", c.Hidden); err != nil {
				return err
			}
			if L.PostMLPNorm, err = l.vec(p+"post_ffw_norm.weight", c.Hidden); err != nil {
				return err
			}
		}
		if c.QKNorm {
			if L.QNorm, err = l.vec(p+"attn_q_norm.weight", c.HeadDim); err != nil {
				return err
			}
			if L.KNorm, err = l.vec(p+"attn_k_norm.weight", c.HeadDim); err != nil {
				return err
			}
		}
		if permuted {
			unpermuteRoPE(&L.Q, c.Heads, c.HeadDim)
			unpermuteRoPE(&L.K, c.KVHeads, c.HeadDim)
		}
	}
	return nil
}

var ggufLinearNames = [7]string{"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"}

// unpermuteRoPE undoes llama.cpp's converter's permutation of a Q or K projection,
// which interleaves each head's rows so that its adjacent-pair RoPE computes what
// Hugging Face's rotate_half does: GGUF row h·d + 2i + s is Hugging Face row
// h·d + s·d/2 + i. kvfoot rotates halves, so it takes the rows back.
func unpermuteRoPE(l *Linear, heads, headDim int) {
	w := &l.W
	switch w.Type() {
	case tensor.F32:
		w.F32 = unpermuteRows(w.F32, heads, headDim, w.Cols)
	case tensor.BF16:
		w.BF16 = unpermuteRows(w.BF16, heads, headDim, w.Cols)
	case tensor.Blocked:
		w.Blocks = unpermuteRows(w.Blocks, heads, headDim, w.Block.RowBytes(w.Cols))
	}
	if l.Bias != nil {
		l.Bias = unpermuteRows(l.Bias, heads, headDim, 1)
	}
}

func unpermuteRows[T any](src []T, heads, headDim, width int) []T {
	dst := make([]T, len(src))
	half := headDim / 2
	for h := range heads {
		for i := range half {
			for s := range 2 {
				to, from := h*headDim+s*half+i, h*headDim+2*i+s
				copy(dst[to*width:(to+1)*width], src[from*width:(from+1)*width])
			}
		}
	}
	return dst
}
