package model_test

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kvfoot/kvfoot/format/gguf"
	"github.com/kvfoot/kvfoot/model"
	"github.com/kvfoot/kvfoot/tensor"
)

const peerDir = "testdata/llamacpp-peer" // from ../shared/tools/llamacpp-peer/ref

// splitmix64 is the generator of the llamacpp-peer tool gguf-tiny-llama.
type splitmix64 struct{ s uint64 }

func (r *splitmix64) next() uint64 {
	r.s += 0x9E3779B97F4A7C15
	z := r.s
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

func (r *splitmix64) uni() float32 { return float32(float64(r.next()>>11)/float64(1<<53)*2 - 1) }

// peerVocab is gguf-tiny-llama's SentencePiece-style vocabulary.
func peerVocab(n int) ([]string, []float32, []int32) {
	var toks []string
	var scores []float32
	var types []int32
	add := func(s string, sc float32, t int32) {
		toks, scores, types = append(toks, s), append(scores, sc), append(types, t)
	}
	add("<unk>", 0, 2)
	add("<s>", 0, 3)
	add("</s>", 0, 3)
	for b := range 256 {
		add(fmt.Sprintf("<0x%02X>", b), 0, 6)
	}
	seen := map[string]bool{}
	for _, t := range toks {
		seen[t] = true
	}
	pieces := []string{"\u2581"}
	for c := 'a'; c <= 'z'; c++ {
		pieces = append(pieces, string(c), "\u2581"+string(c))
	}
	for c := 'A'; c <= 'Z'; c++ {
		pieces = append(pieces, string(c))
	}
	for c := '0'; c <= '9'; c++ {
		pieces = append(pieces, string(c))
	}
	for _, c := range ".,;:!?'\"()-" {
		pieces = append(pieces, string(c))
	}
	letters := "etaoinshrdlucmfwypvbgkjqxz"
	for i := range len(letters) {
		for j := range len(letters) {
			pieces = append(pieces, "\u2581"+letters[i:i+1]+letters[j:j+1], letters[i:i+1]+letters[j:j+1])
		}
	}
	for k := 0; len(toks) < n; k++ {
		s := fmt.Sprintf("\u2581w%d", k)
		if k < len(pieces) {
			s = pieces[k]
		}
		if seen[s] {
			continue
		}
		seen[s] = true
		add(s, -float32(len(toks)), 1)
	}
	return toks, scores, types
}

// writePeerTiny writes the llamacpp-peer "tiny" model (vocab 512, dim 256, 4 layers,
// 8 heads, 2 KV heads, ffn 688) with weights of type wt (F32 or F16), as
// gguf-tiny-llama does with its defaults, and returns the file's SHA-256.
func writePeerTiny(t *testing.T, path string, wt gguf.Type) string {
	t.Helper()
	const V, D, L, H, KVH, F = 512, 256, 4, 8, 2, 688
	hd := D / H
	r := &splitmix64{s: 1}
	randn := func(n int, std float32) []float32 {
		a := std * float32(math.Sqrt(3))
		v := make([]float32, n)
		for i := range v {
			v[i] = a * r.uni()
		}
		return v
	}
	normW := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = 1 + 0.1*r.uni()
		}
		return v
	}
	lin := func(in, out int) []float32 { return randn(in*out, float32(1/math.Sqrt(float64(in)))) }
	var ts []gguf.Tensor
	add := func(name string, typ gguf.Type, data []float32, dims ...uint64) {
		var raw []byte
		if typ == gguf.F16 {
			raw = make([]byte, 2*len(data))
			tensor.QuantizeF16(raw, data)
		} else {
			for _, v := range data {
				raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v))
			}
		}
		ts = append(ts, gguf.Tensor{Name: name, Dims: dims, Type: typ, Data: raw})
	}
	add("token_embd.weight", wt, randn(D*V, 1), D, V)
	add("output_norm.weight", gguf.F32, normW(D), D)
	add("output.weight", wt, lin(D, V), D, V)
	for l := range L {
		p := fmt.Sprintf("blk.%d.", l)
		add(p+"attn_norm.weight", gguf.F32, normW(D), D)
		add(p+"attn_q.weight", wt, lin(D, H*hd), D, uint64(H*hd))
		add(p+"attn_k.weight", wt, lin(D, KVH*hd), D, uint64(KVH*hd))
		add(p+"attn_v.weight", wt, lin(D, KVH*hd), D, uint64(KVH*hd))
		add(p+"attn_output.weight", wt, lin(H*hd, D), uint64(H*hd), D)
		add(p+"ffn_norm.weight", gguf.F32, normW(D), D)
		add(p+"ffn_gate.weight", wt, lin(D, F), D, F)
		add(p+"ffn_up.weight", wt, lin(D, F), D, F)
		add(p+"ffn_down.weight", wt, lin(F, D), F, D)
	}
	name, fileType := "f16", uint32(1)
	if wt == gguf.F32 {
		name, fileType = "f32", 0
	}
	toks, scores, types := peerVocab(V)
	kv := []gguf.KV{
		{Key: "general.architecture", Value: "llama"},
		{Key: "general.name", Value: "tiny-random-llama-d256-l4-h8-kv2-ff688-v512-" + name},
		{Key: "general.alignment", Value: uint32(32)},
		{Key: "general.file_type", Value: fileType},
		{Key: "llama.vocab_size", Value: uint32(V)},
		{Key: "llama.context_length", Value: uint32(4096)},
		{Key: "llama.embedding_length", Value: uint32(D)},
		{Key: "llama.block_count", Value: uint32(L)},
		{Key: "llama.feed_forward_length", Value: uint32(F)},
		{Key: "llama.attention.head_count", Value: uint32(H)},
		{Key: "llama.attention.head_count_kv", Value: uint32(KVH)},
		{Key: "llama.attention.layer_norm_rms_epsilon", Value: float32(1e-5)},
		{Key: "llama.rope.freq_base", Value: float32(10000)},
		{Key: "llama.rope.dimension_count", Value: uint32(hd)},
		{Key: "tokenizer.ggml.model", Value: "llama"},
		{Key: "tokenizer.ggml.tokens", Value: gguf.Array{Elem: gguf.TypeString, Values: toks}},
		{Key: "tokenizer.ggml.scores", Value: gguf.Array{Elem: gguf.TypeFloat32, Values: scores}},
		{Key: "tokenizer.ggml.token_type", Value: gguf.Array{Elem: gguf.TypeInt32, Values: types}},
		{Key: "tokenizer.ggml.bos_token_id", Value: uint32(1)},
		{Key: "tokenizer.ggml.eos_token_id", Value: uint32(2)},
		{Key: "tokenizer.ggml.unknown_token_id", Value: uint32(0)},
		{Key: "tokenizer.ggml.add_bos_token", Value: true},
		{Key: "tokenizer.ggml.add_eos_token", Value: false},
	}
	if err := gguf.WriteFile(path, kv, ts, false); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}

func readFloats(t *testing.T, path string) []float64 {
	t.Helper()
	fd, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	var out []float64
	sc := bufio.NewScanner(fd)
	for sc.Scan() {
		for _, f := range strings.FieldsFunc(sc.Text(), func(r rune) bool { return r == ',' || r == ' ' }) {
			v, err := strconv.ParseFloat(f, 64)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			out = append(out, v)
		}
	}
	return out
}

// TestGGUFPeerModels loads the llamacpp-peer tiny models (the same bytes as its
// make-models.sh writes, checked by hash) and compares the last position's logits of
// its 48-token list with its float64 reference forward pass.
func TestGGUFPeerModels(t *testing.T) {
	sums := map[string]string{}
	for _, line := range strings.Split(string(must(os.ReadFile(filepath.Join(peerDir, "SHA256SUMS")))), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			sums[f[1]] = f[0]
		}
	}
	var ids []int
	for _, v := range readFloats(t, filepath.Join(peerDir, "tokens-v512-48.txt")) {
		ids = append(ids, int(v))
	}
	for _, c := range []struct {
		name string
		typ  gguf.Type
	}{{"tiny-f32", gguf.F32}, {"tiny-f16", gguf.F16}} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), c.name+".gguf")
			if sum := writePeerTiny(t, path, c.typ); sum != sums[c.name+".gguf"] {
				t.Fatalf("the generated model's SHA-256 is %s, the peer's %s: not the same file", sum, sums[c.name+".gguf"])
			}
			m, err := model.LoadGGUF(path, model.LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			cfg := m.Config
			if cfg.Hidden != 256 || cfg.Layers != 4 || cfg.Heads != 8 || cfg.KVHeads != 2 || cfg.HeadDim != 32 || cfg.Intermediate != 688 ||
				cfg.Vocab != 512 || cfg.BOS != 1 || fmt.Sprint(cfg.EOS) != "[2]" || cfg.TieEmbeddings || cfg.MaxPositions != 4096 || cfg.NormEps != 1e-5 ||
				cfg.WeightsDtypeHint != strings.ToLower(c.typ.String()) {
				t.Errorf("config %+v", cfg)
			}
			all := allLogits(t, m, ids, 0)
			got := all[len(all)-m.Config.Vocab:]
			want := readFloats(t, filepath.Join(peerDir, c.name+".ref-f64.logits.txt"))
			var num, den float64
			for i, w := range want {
				d := float64(got[i]) - w
				num += d * d
				den += w * w
			}
			rel := math.Sqrt(num / den)
			t.Logf("relative L2 %.3g", rel)
			if !(rel <= 1e-5) {
				t.Errorf("relative L2 distance to the float64 reference %.3g, want ≤ 1e-5", rel)
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// permuteForGGUF is llama.cpp's convert_hf_to_gguf permute for Q and K rows:
// reshape(heads, 2, rows/heads/2, cols).swapaxes(1, 2), so GGUF row (h, i, s) is
// Hugging Face row (h, s, i).
func permuteForGGUF[T any](w []T, heads, rows, cols int) []T {
	out := make([]T, len(w))
	half := rows / heads / 2
	for h := range heads {
		for s := range 2 {
			for i := range half {
				src := (h*2+s)*half + i
				dst := (h*half+i)*2 + s
				copy(out[dst*cols:(dst+1)*cols], w[src*cols:(src+1)*cols])
			}
		}
	}
	return out
}

// llama3Factors are the rope_freqs.weight values llama.cpp's converter writes for a
// Llama 3 rope scaling (convert_hf_to_gguf.py, LlamaModel.generate_extra_tensors).
func llama3Factors(r model.Rope, headDim int) []float32 {
	low, high := r.OriginalMaxPositions/r.LowFreqFactor, r.OriginalMaxPositions/r.HighFreqFactor
	var out []float32
	for i := 0; i < headDim; i += 2 {
		freq := 1 / math.Pow(r.Theta, float64(i)/float64(headDim))
		wavelen := 2 * math.Pi / freq
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

// hfToGGUF writes a Hugging Face oracle checkpoint as llama.cpp's converter would:
// the {arch}.* keys, GGUF tensor names, Q/K rows permuted for llama and mistral, and
// Llama 3 scaling as rope_freqs.weight.
func hfToGGUF(t *testing.T, m *model.Model, path string) {
	t.Helper()
	c := m.Config
	arch := map[string]string{"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral", "Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3"}[c.Arch]
	kv := []gguf.KV{
		{Key: "general.architecture", Value: arch},
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
	if c.Rope.Type == "linear" {
		kv = append(kv, gguf.KV{Key: arch + ".rope.scaling.type", Value: "linear"},
			gguf.KV{Key: arch + ".rope.scaling.factor", Value: float32(c.Rope.Factor)})
	}
	if c.BOS >= 0 {
		kv = append(kv, gguf.KV{Key: "tokenizer.ggml.bos_token_id", Value: uint32(c.BOS)})
	}
	var ts []gguf.Tensor
	mat := func(name string, w tensor.Mat, permuteHeads int) {
		dims := []uint64{uint64(w.Cols), uint64(w.Rows)}
		var raw []byte
		if w.BF16 != nil {
			v := w.BF16
			if permuteHeads > 0 {
				v = permuteForGGUF(v, permuteHeads, w.Rows, w.Cols)
			}
			for _, x := range v {
				raw = binary.LittleEndian.AppendUint16(raw, x)
			}
			ts = append(ts, gguf.Tensor{Name: name, Dims: dims, Type: gguf.BF16, Data: raw})
			return
		}
		v := w.F32
		if permuteHeads > 0 {
			v = permuteForGGUF(v, permuteHeads, w.Rows, w.Cols)
		}
		for _, x := range v {
			raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(x))
		}
		ts = append(ts, gguf.Tensor{Name: name, Dims: dims, Type: gguf.F32, Data: raw})
	}
	vec := func(name string, v []float32, permuteHeads int) {
		if permuteHeads > 0 {
			v = permuteForGGUF(v, permuteHeads, len(v), 1)
		}
		var raw []byte
		for _, x := range v {
			raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(x))
		}
		ts = append(ts, gguf.Tensor{Name: name, Dims: []uint64{uint64(len(v))}, Type: gguf.F32, Data: raw})
	}
	qh, kh := 0, 0
	if arch == "llama" || arch == "mistral" {
		qh, kh = c.Heads, c.KVHeads
	}
	mat("token_embd.weight", m.Embed, 0)
	vec("output_norm.weight", m.Norm, 0)
	if !c.TieEmbeddings {
		mat("output.weight", m.Head, 0)
	}
	if c.Rope.Type == "llama3" {
		vec("rope_freqs.weight", llama3Factors(c.Rope, c.HeadDim), 0)
	}
	for i, L := range m.Layers {
		p := fmt.Sprintf("blk.%d.", i)
		vec(p+"attn_norm.weight", L.AttnNorm, 0)
		vec(p+"ffn_norm.weight", L.MLPNorm, 0)
		if L.QNorm != nil {
			vec(p+"attn_q_norm.weight", L.QNorm, 0)
			vec(p+"attn_k_norm.weight", L.KNorm, 0)
		}
		for _, l := range []struct {
			name  string
			lin   model.Linear
			heads int
		}{{"attn_q", L.Q, qh}, {"attn_k", L.K, kh}, {"attn_v", L.V, 0}, {"attn_output", L.O, 0},
			{"ffn_gate", L.Gate, 0}, {"ffn_up", L.Up, 0}, {"ffn_down", L.Down, 0}} {
			mat(p+l.name+".weight", l.lin.W, l.heads)
			if l.lin.Bias != nil {
				vec(p+l.name+".bias", l.lin.Bias, l.heads)
			}
		}
	}
	if err := gguf.WriteFile(path, kv, ts, false); err != nil {
		t.Fatal(err)
	}
}

// TestGGUFFromHF converts the transformers oracle checkpoints to GGUF as llama.cpp's
// converter lays them out (permuted Q/K rows for llama and mistral, Llama 3 scaling
// as factors, bf16 kept) and expects the oracle's logits from the GGUF file.
func TestGGUFFromHF(t *testing.T) {
	for _, name := range oracles {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join("..", "testdata", "models", name)
			ref := loadReference(t, dir)
			hf := ref.load(t, dir)
			path := filepath.Join(t.TempDir(), name+".gguf")
			hfToGGUF(t, hf, path)
			m, err := model.LoadGGUF(path, model.LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			want, got := hf.Config, m.Config
			if got.Rope.Type != want.Rope.Type || got.Rope.Factor != want.Rope.Factor || got.Rope.Theta != float64(float32(want.Rope.Theta)) {
				t.Errorf("rope %+v, want %+v", got.Rope, want.Rope)
			}
			want.Rope, got.Rope = model.Rope{}, model.Rope{}
			want.WeightsDtypeHint, got.WeightsDtypeHint = "", ""
			want.EOS, got.EOS = nil, nil
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("config\n got %+v\nwant %+v", got, want)
			}
			checkLogits(t, allLogits(t, m, ref.ids, 0), ref.logits)
		})
	}
}

// TestGGUFQwen3: a Qwen3 model (per-head q/k norms, here unequal so that a swap
// shows; explicit head_dim) written as llama.cpp's converter lays it out loads with
// its config and gives the same logits to the last bit (float32 weights either way).
func TestGGUFQwen3(t *testing.T) {
	cfg := model.Config{Arch: "Qwen3ForCausalLM", Hidden: 64, Intermediate: 96, Layers: 2, Heads: 4, KVHeads: 2,
		HeadDim: 32, Vocab: 160, NormEps: 1e-6, MaxPositions: 256, QKNorm: true, BOS: -1,
		Rope: model.Rope{Theta: 1000000, Type: "default", Factor: 1}}
	src := model.NewRandom(cfg, 5)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range src.Layers {
		for _, v := range [][]float32{src.Layers[i].QNorm, src.Layers[i].KNorm} {
			for j := range v {
				v[j] = 0.5 + r.Float32()
			}
		}
	}
	path := filepath.Join(t.TempDir(), "qwen3.gguf")
	hfToGGUF(t, src, path)
	m, err := model.LoadGGUF(path, model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !m.Config.QKNorm || m.Config.Arch != cfg.Arch || m.Config.HeadDim != 32 {
		t.Fatalf("config %+v", m.Config)
	}
	ids := []int{3, 17, 99, 5, 140, 2, 77, 31}
	if got, want := allLogits(t, m, ids, 3), allLogits(t, src, ids, 3); !slices.Equal(got, want) {
		t.Errorf("logits differ from the model written: rel L2 %g", relL2(got, want))
	}
}

// writeTiny writes a one-layer llama GGUF with the given metadata changes and
// tensor type, for the error tests.
func writeTiny(t *testing.T, edit func(kv []gguf.KV) []gguf.KV, typ gguf.Type) string {
	t.Helper()
	const D, F, V = 32, 32, 8
	kv := []gguf.KV{
		{Key: "general.architecture", Value: "llama"},
		{Key: "llama.embedding_length", Value: uint32(D)},
		{Key: "llama.block_count", Value: uint32(1)},
		{Key: "llama.feed_forward_length", Value: uint32(F)},
		{Key: "llama.attention.head_count", Value: uint32(2)},
	}
	if edit != nil {
		kv = edit(kv)
	}
	zero := func(name string, dims ...uint64) gguf.Tensor {
		n := uint64(1)
		for _, d := range dims {
			n *= d
		}
		tt := gguf.F32
		if len(dims) == 2 {
			tt = typ
		}
		vals, bytes, _ := tt.BlockSize()
		return gguf.Tensor{Name: name, Dims: dims, Type: tt, Data: make([]byte, n/uint64(vals)*uint64(bytes))}
	}
	ts := []gguf.Tensor{zero("token_embd.weight", D, V), zero("output_norm.weight", D)}
	for _, n := range []string{"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"} {
		ts = append(ts, zero("blk.0."+n+".weight", D, D))
	}
	ts = append(ts, zero("blk.0.attn_norm.weight", D), zero("blk.0.ffn_norm.weight", D))
	path := filepath.Join(t.TempDir(), "tiny.gguf")
	if err := gguf.WriteFile(path, kv, ts, false); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestGGUFErrors(t *testing.T) {
	set := func(key string, v any) func([]gguf.KV) []gguf.KV {
		return func(kv []gguf.KV) []gguf.KV {
			for i := range kv {
				if kv[i].Key == key {
					kv[i].Value = v
					return kv
				}
			}
			return append(kv, gguf.KV{Key: key, Value: v})
		}
	}
	cases := []struct {
		name string
		edit func([]gguf.KV) []gguf.KV
		typ  gguf.Type
		want string
	}{
		{"ok", nil, gguf.F32, ""},
		{"ok q8_0", nil, gguf.Q8_0, ""},
		{"gemma3n", set("general.architecture", "gemma3n"), gguf.F32, `"gemma3n" is not supported (want llama, mistral, qwen2, qwen3, gemma2 or gemma3)`},
		{"gemma-embedding", set("general.architecture", "gemma-embedding"), gguf.F32, `"gemma-embedding" is not supported`},
		{"gemma", set("general.architecture", "gemma"), gguf.F32, `"gemma" is not supported`},
		{"type", nil, gguf.IQ4_NL, `tensor "token_embd.weight": type IQ4_NL is not supported`},
		{"heads", set("llama.attention.head_count_kv", uint32(3)), gguf.F32, "does not divide"},
		{"absurd layers", set("llama.block_count", uint32(1<<20)), gguf.F32, `"llama.block_count": 1048576`},
		{"missing tensor", set("llama.block_count", uint32(2)), gguf.F32, `tensor "blk.1.attn_q.weight": missing`},
		{"wrong type", set("llama.embedding_length", "32"), gguf.F32, `"llama.embedding_length": string`},
		{"scaling", set("llama.rope.scaling.type", "yarn"), gguf.F32, `"yarn" is not supported`},
		{"eot", set("tokenizer.ggml.eot_token_id", uint32(8)), gguf.F32, `"tokenizer.ggml.eot_token_id": 8 is outside the vocabulary [0, 8)`},
		{"shape", set("llama.feed_forward_length", uint32(64)), gguf.F32, `tensor "blk.0.ffn_gate.weight": dimensions [32 32], want [32 64]`},
	}
	for _, c := range cases {
		path := writeTiny(t, c.edit, c.typ)
		m, err := model.LoadGGUF(path, model.LoadOptions{})
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want == "" && m.Config.Vocab != 8:
			t.Errorf("%s: vocab %d from token_embd.weight, want 8", c.name, m.Config.Vocab)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "tiny.gguf")):
			t.Errorf("%s: %v, want an error naming tiny.gguf and containing %q", c.name, err, c.want)
		}
	}
}

// TestGGUFQuantizedLoad writes one random model twice, with quantized matrices and
// with their dequantized values as F32. Loaded with LoadOptions.F32 the quantized
// file gives exactly the dequantized file's logits (the loader widens every row of
// every type as the format defines it); loaded by default its matrices stay in
// their blocks and the kernels' on-block products agree to float rounding.
func TestGGUFQuantizedLoad(t *testing.T) {
	const D, F, V = 256, 512, 64
	r := &splitmix64{s: 7}
	for _, c := range []struct {
		typ gguf.Type
		bf  *tensor.BlockFormat
	}{{gguf.Q8_0, &tensor.BlockQ8_0}, {gguf.Q4_0, &tensor.BlockQ4_0}, {gguf.Q4_K, &tensor.BlockQ4_K},
		{gguf.Q5_K, &tensor.BlockQ5_K}, {gguf.Q6_K, &tensor.BlockQ6_K}, {gguf.F16, &tensor.BlockF16},
		{gguf.Q4_1, &tensor.BlockQ4_1}, {gguf.Q5_0, &tensor.BlockQ5_0}, {gguf.Q5_1, &tensor.BlockQ5_1}} {
		var quant, wide []gguf.Tensor
		add := func(name string, rows, cols int) {
			v := make([]float32, rows*cols)
			for i := range v {
				v[i] = r.uni() / 16
			}
			dims := []uint64{uint64(cols), uint64(rows)}
			if rows == 1 {
				dims = dims[:1]
				for i := range v {
					v[i] += 1
				}
			}
			var f32 []byte
			if rows > 1 {
				q := make([]byte, rows*c.bf.RowBytes(cols))
				for j := range rows {
					c.bf.Quantize(q[j*c.bf.RowBytes(cols):], v[j*cols:(j+1)*cols])
					c.bf.Dequant(v[j*cols:(j+1)*cols], q[j*c.bf.RowBytes(cols):])
				}
				quant = append(quant, gguf.Tensor{Name: name, Dims: dims, Type: c.typ, Data: q})
			}
			for _, x := range v {
				f32 = binary.LittleEndian.AppendUint32(f32, math.Float32bits(x))
			}
			wide = append(wide, gguf.Tensor{Name: name, Dims: dims, Type: gguf.F32, Data: f32})
			if rows == 1 {
				quant = append(quant, wide[len(wide)-1])
			}
		}
		add("token_embd.weight", V, D)
		add("output_norm.weight", 1, D)
		for _, n := range []string{"attn_q", "attn_k", "attn_v", "attn_output"} {
			add("blk.0."+n+".weight", D, D)
		}
		add("blk.0.ffn_gate.weight", F, D)
		add("blk.0.ffn_up.weight", F, D)
		add("blk.0.ffn_down.weight", D, F)
		add("blk.0.attn_norm.weight", 1, D)
		add("blk.0.ffn_norm.weight", 1, D)
		kv := []gguf.KV{
			{Key: "general.architecture", Value: "llama"},
			{Key: "llama.embedding_length", Value: uint32(D)},
			{Key: "llama.block_count", Value: uint32(1)},
			{Key: "llama.feed_forward_length", Value: uint32(F)},
			{Key: "llama.attention.head_count", Value: uint32(4)},
		}
		// 20 tokens at once go through the GEMM on widened panels.
		ids := []int{1, 5, 9, 63, 0, 2, 7, 11, 40, 33, 3, 8, 60, 12, 19, 25, 4, 6, 50, 31}
		var logits [3][]float32
		var onBlocks []float32
		for i, run := range []struct {
			ts   []gguf.Tensor
			opts model.LoadOptions
		}{{wide, model.LoadOptions{}}, {quant, model.LoadOptions{F32: true}}, {quant, model.LoadOptions{}}} {
			path := filepath.Join(t.TempDir(), "m.gguf")
			if err := gguf.WriteFile(path, kv, run.ts, false); err != nil {
				t.Fatal(err)
			}
			m, err := model.LoadGGUF(path, run.opts)
			if err != nil {
				t.Fatal(err)
			}
			want := "F32"
			if i == 2 {
				want = c.bf.Name
			}
			for _, w := range []*tensor.Mat{&m.Embed, &m.Layers[0].Q.W, &m.Layers[0].Down.W} {
				if w.TypeName() != want {
					t.Fatalf("%s (load %d): a matrix held as %s, want %s", c.typ, i, w.TypeName(), want)
				}
			}
			logits[i] = allLogits(t, m, ids, 0)
			if i == 2 { // one token at a time: the matrix-vector kernels' on-block dots
				onBlocks = allLogits(t, m, ids, 1)
			}
		}
		for i := range logits[0] {
			if logits[1][i] != logits[0][i] {
				t.Fatalf("%s: logit %d is %g from the quantized file widened, %g from its dequantized values", c.typ, i, logits[1][i], logits[0][i])
			}
		}
		// Where this CPU runs the format's pre-fill on integer products (tensor's
		// IntegerPrefill), the GEMM rounds the activations to 8 bits as the
		// matrix-vector kernels below do, with their bound.
		gemmBound := 1e-5
		if c.bf.IntegerPrefill(len(ids)) {
			gemmBound = 5e-2
		}
		if e := relL2(logits[2], logits[0]); !(e <= gemmBound) {
			t.Errorf("%s: logits on the blocks are %.3g rel L2 from the dequantized values', want ≤ %g", c.typ, e, gemmBound)
		}
		// The matrix-vector kernels of the formats with an integer dot round the
		// activations to 8 bits, as llama.cpp does (tensor's integer dots; they agree
		// with llama.cpp in gguf_peer_test.go): each dot then moves by up to half a step
		// of max|x|/127 per value, about 1% of these random logits.
		bound := 1e-5
		switch c.typ {
		case gguf.Q8_0, gguf.Q4_0, gguf.Q4_1, gguf.Q5_0, gguf.Q5_1, gguf.Q4_K, gguf.Q5_K, gguf.Q6_K:
			bound = 5e-2
		}
		if e := relL2(onBlocks, logits[0]); !(e <= bound) {
			t.Errorf("%s: logits of the matrix-vector kernels on the blocks are %.3g rel L2 from the dequantized values', want ≤ %g", c.typ, e, bound)
		}
	}
}

// relL2 is ‖got − want‖ / ‖want‖ in float64.
func relL2(got, want []float32) float64 {
	var num, den float64
	for i, w := range want {
		d := float64(got[i]) - float64(w)
		num += d * d
		den += float64(w) * float64(w)
	}
	return math.Sqrt(num / den)
}
