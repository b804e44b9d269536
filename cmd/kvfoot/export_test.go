package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kvfoot/kvfoot/format/gguf"
	"github.com/kvfoot/kvfoot/format/safetensors"
	"github.com/kvfoot/kvfoot/kv"
	"github.com/kvfoot/kvfoot/model"
	"github.com/kvfoot/kvfoot/tensor"
	"github.com/kvfoot/kvfoot/tokenizer"
)

// exportLogits returns every position's logits of ids.
func exportLogits(t *testing.T, m *model.Model, ids []int) []float32 {
	t.Helper()
	cache, err := kv.New(kv.Shape(m.Shape()), "full")
	if err != nil {
		t.Fatal(err)
	}
	var out []float32
	r := model.NewRunner(m, len(ids))
	if _, err := r.Prefill(cache, ids, model.PrefillOptions{Chunk: len(ids), All: true, OnChunk: func(_ int, l []float32) error {
		out = append(out, l...)
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	return out
}

func relL2(got, want []float32) float64 {
	var num, den float64
	for i, w := range want {
		d := float64(got[i]) - float64(w)
		num, den = num+d*d, den+float64(w)*float64(w)
	}
	return math.Sqrt(num / den)
}

// roundWeights replaces every weight matrix of m by its values as typ stores them
// (F16 rounding, or Q8_0 quantized and widened back; F16 where a row is not whole
// Q8_0 blocks), the model a GGUF of that type holds, computed independently of export.
func roundWeights(m *model.Model, typ string) {
	round := func(w *tensor.Mat) {
		v := slices.Clone(w.Float32s())
		switch {
		case typ == "q8_0" && w.Cols%32 == 0:
			rb := tensor.BlockQ8_0.RowBytes(w.Cols)
			blk := make([]byte, rb)
			for r := range w.Rows {
				tensor.BlockQ8_0.Quantize(blk, v[r*w.Cols:(r+1)*w.Cols])
				tensor.BlockQ8_0.Dequant(v[r*w.Cols:(r+1)*w.Cols], blk)
			}
		case typ != "f32":
			for i, x := range v {
				v[i] = tensor.F16ToFloat(tensor.FloatToF16(x))
			}
		}
		*w = tensor.Mat{Rows: w.Rows, Cols: w.Cols, F32: v}
	}
	tied := m.Config.TieEmbeddings
	round(&m.Embed)
	if tied {
		m.Head = m.Embed
	} else {
		round(&m.Head)
	}
	for i := range m.Layers {
		L := &m.Layers[i]
		for _, l := range []*model.Linear{&L.Q, &L.K, &L.V, &L.O, &L.Gate, &L.Up, &L.Down} {
			round(&l.W)
		}
	}
}

// TestExportRoundTrip writes each transformers oracle checkpoint (llama, GQA, Llama 3
// and linear rope scaling, qwen2 biases, mistral bf16, head_dim ≠ hidden/heads) as
// GGUF in each type and loads it back: the logits are those of the folder's model
// with its weights rounded as the type stores them (f32: unchanged), to float
// rounding, so the hyper-parameters, names, Q/K permutation and rope factors all
// survive the trip.
func TestExportRoundTrip(t *testing.T) {
	ids := []int{1, 17, 200, 3, 99, 45, 7, 300, 12, 0, 64, 5}
	for _, name := range []string{"llama-gqa", "llama3-rope-scaling", "qwen2-bias", "mistral-bf16", "llama-headdim-bias", "llama-mha-linear"} {
		for _, typ := range []string{"f32", "f16", "q8_0"} {
			t.Run(name+"/"+typ, func(t *testing.T) {
				dir := filepath.Join("..", "..", "testdata", "models", name)
				src, err := model.Load(dir, model.LoadOptions{})
				if err != nil {
					t.Fatal(err)
				}
				kvs, ts, err := exportGGUF(src, exportTypes[typ])
				if err != nil {
					t.Fatal(err)
				}
				path := filepath.Join(t.TempDir(), "m.gguf")
				if err := gguf.WriteFile(path, kvs, ts, false); err != nil {
					t.Fatal(err)
				}
				// q8_0 widened at load: on its blocks, 12 tokens take the matrix-vector
				// kernels, which round the activations to 8 bits (tensor's integer dots).
				got, err := model.LoadGGUF(path, model.LoadOptions{F32: typ == "q8_0"})
				if err != nil {
					t.Fatal(err)
				}
				if g, w := got.Config.Rope, src.Config.Rope; g.Type != w.Type || math.Abs(g.Factor-w.Factor) > 1e-6*w.Factor {
					t.Errorf("rope %+v, want %+v", g, w)
				}
				ref, err := model.Load(dir, model.LoadOptions{F32: true})
				if err != nil {
					t.Fatal(err)
				}
				roundWeights(ref, typ)
				want := exportLogits(t, ref, ids)
				if e := relL2(exportLogits(t, got, ids), want); !(e <= 1e-5) {
					t.Errorf("logits %.3g rel L2 from the folder's model with %s weights, want ≤ 1e-5", e, typ)
				}
			})
		}
	}
}

// writeRandomLlama writes a Hugging Face Llama folder with random float32 weights
// and the tokenizer of testdata/tokenizers/fam, whose vocabulary size it takes.
func writeRandomLlama(t *testing.T, dir, fam string, vocab int) {
	t.Helper()
	const hidden, inter, heads, kvHeads, layers = 64, 128, 4, 2, 2
	r := rand.New(rand.NewPCG(9, 10))
	var ts []safetensors.Tensor
	add := func(name string, shape ...int) {
		n := 1
		for _, s := range shape {
			n *= s
		}
		raw := make([]byte, 4*n)
		for i := range n {
			v := float32(r.NormFloat64() * 0.1)
			if len(shape) == 1 {
				v += 1 // norms near 1
			}
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
		}
		ts = append(ts, safetensors.Tensor{Name: name, Dtype: safetensors.F32, Shape: shape, Data: raw})
	}
	add("model.embed_tokens.weight", vocab, hidden)
	add("model.norm.weight", hidden)
	add("lm_head.weight", vocab, hidden)
	hd := hidden / heads
	for i := range layers {
		p := fmt.Sprintf("model.layers.%d.", i)
		add(p+"input_layernorm.weight", hidden)
		add(p+"post_attention_layernorm.weight", hidden)
		add(p+"self_attn.q_proj.weight", heads*hd, hidden)
		add(p+"self_attn.k_proj.weight", kvHeads*hd, hidden)
		add(p+"self_attn.v_proj.weight", kvHeads*hd, hidden)
		add(p+"self_attn.o_proj.weight", hidden, heads*hd)
		add(p+"mlp.gate_proj.weight", inter, hidden)
		add(p+"mlp.up_proj.weight", inter, hidden)
		add(p+"mlp.down_proj.weight", hidden, inter)
		if fam == "qwen3" {
			add(p+"self_attn.q_norm.weight", hd)
			add(p+"self_attn.k_norm.weight", hd)
		}
	}
	var buf bytes.Buffer
	if err := safetensors.Write(&buf, ts, nil); err != nil {
		t.Fatal(err)
	}
	arch := "LlamaForCausalLM"
	if fam == "qwen3" {
		arch = "Qwen3ForCausalLM" // q/k norms; head_dim is explicit in its configs
	}
	cfg := fmt.Sprintf(`{"architectures": [%q], "head_dim": %d, "hidden_size": %d, "intermediate_size": %d, "num_attention_heads": %d,
 "num_key_value_heads": %d, "num_hidden_layers": %d, "vocab_size": %d, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
 "max_position_embeddings": 2048, "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": false}`, arch, hd, hidden, inter, heads, kvHeads, layers, vocab)
	tokDir := filepath.Join("..", "..", "testdata", "tokenizers", fam)
	for name, data := range map[string][]byte{"model.safetensors": buf.Bytes(), "config.json": []byte(cfg),
		"tokenizer.json.gz":     must(os.ReadFile(filepath.Join(tokDir, "tokenizer.json.gz"))),
		"tokenizer_config.json": must(os.ReadFile(filepath.Join(tokDir, "tokenizer_config.json")))} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestExportQwen3: a random Qwen3 folder exports to a GGUF whose model gives the
// folder's logits exactly (f32), its per-head q/k norms carried over.
func TestExportQwen3(t *testing.T) {
	dir := t.TempDir()
	writeRandomLlama(t, dir, "qwen3", 151936)
	src, err := model.Load(dir, model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "q.gguf")
	if _, err := quiet(t, func() error { return runExport([]string{"--model", dir, "--out", out, "--type", "f32"}) }); err != nil {
		t.Fatal(err)
	}
	m, err := model.Open(out, model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !m.Config.QKNorm {
		t.Fatalf("the GGUF's model has no q/k norms: %+v", m.Config)
	}
	ids := []int{1, 415, 2936, 9060, 285, 1142, 10575, 754}
	if e := relL2(exportLogits(t, m, ids), exportLogits(t, src, ids)); e != 0 {
		t.Errorf("logits %.3g rel L2 from the folder's, want 0", e)
	}
}

// TestExportCommand runs kvfoot export on a random Llama with Llama 2's tokenizer
// (vocabulary 32000, padded to 32008 rows as llama.cpp's converter pads): the file
// loads as the folder's model (f32: the same logits), its tokenizer encodes the
// shared test strings as tokenizer.json does, and bad flags and an existing output
// are refused by name. With KVFOOT_EXPORT_CHECK_DIR set, the folder and the f16 and
// q8_0 files stay there, with kvfoot's logits of a fixed sequence, for
// tools/gguf-peer/export-check.sh to run llama.cpp on.
func TestExportCommand(t *testing.T) {
	work := os.Getenv("KVFOOT_EXPORT_CHECK_DIR")
	if work == "" {
		work = t.TempDir()
	}
	dir := filepath.Join(work, "folder")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeRandomLlama(t, dir, "llama2", 32008)
	src, err := model.Load(dir, model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ids := []int{1, 415, 2936, 9060, 285, 1142, 10575, 754, 272, 17898, 3914, 28723, 13, 28705, 31999, 32005}
	want := exportLogits(t, src, ids)
	for _, typ := range []string{"f32", "f16", "q8_0"} {
		out := filepath.Join(work, typ+".gguf")
		if err := runExport([]string{"--model", dir, "--out", out, "--type", typ, "--force"}); err != nil {
			t.Fatal(err)
		}
		m, err := model.Open(out, model.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got := exportLogits(t, m, ids)
		e := relL2(got, want)
		t.Logf("%s: logits %.3g rel L2 from the folder's", typ, e)
		// q8_0: the weights rounded to 8 bits, and on the matrix-vector route (16
		// tokens) the activations too, as llama.cpp does (tensor's integer dots).
		if bound := map[string]float64{"f32": 0, "f16": 2e-3, "q8_0": 3e-2}[typ]; !(e <= bound) {
			t.Errorf("%s: logits %.3g rel L2 from the folder's, want ≤ %g", typ, e, bound)
		}
		var lines []string
		for _, v := range got {
			lines = append(lines, fmt.Sprint(v))
		}
		if err := os.WriteFile(filepath.Join(work, typ+".kvfoot-logits.txt"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if typ == "f16" {
			checkExportedTokenizer(t, out, dir)
		}
	}
	var idList []string
	for _, id := range ids {
		idList = append(idList, fmt.Sprint(id))
	}
	if err := os.WriteFile(filepath.Join(work, "tokens.txt"), []byte(strings.Join(idList, ",")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(work, "f32.gguf")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--model", dir, "--out", out}, "f32.gguf"},
		{[]string{"--model", dir, "--out", out + "x", "--type", "q4_k"}, "--type"},
		{[]string{"--out", out + "x"}, "--model"},
		{[]string{"--model", filepath.Join(work, "nothing"), "--out", out + "x"}, "nothing"},
	} {
		if err := runExport(c.args); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("export %q: %v, want an error naming %s", c.args, err, c.want)
		}
	}
}

// checkExportedTokenizer: the GGUF's tokenizer encodes every shared test string of
// Llama 2's tokenizer as the tokenizers library did (encodings.jsonl) and as the
// folder's tokenizer does.
func checkExportedTokenizer(t *testing.T, path, dir string) {
	t.Helper()
	g, err := tokenizer.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	hf, err := tokenizer.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := os.Open(filepath.Join("..", "..", "testdata", "tokenizers", "llama2", "encodings.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	sc := bufio.NewScanner(fd)
	sc.Buffer(nil, 1<<24)
	n := 0
	for sc.Scan() {
		var ref struct {
			Text           string `json:"text"`
			IDs            []int  `json:"ids"`
			IDsWithSpecial []int  `json:"ids_with_special"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ref); err != nil {
			t.Fatal(err)
		}
		n++
		if got := g.Encode(ref.Text); !slices.Equal(got, ref.IDs) || !slices.Equal(got, hf.Encode(ref.Text)) {
			t.Fatalf("exported tokenizer: Encode(%q) = %v, want %v", ref.Text, got, ref.IDs)
		}
		if got := g.EncodeWithSpecial(ref.Text); !slices.Equal(got, ref.IDsWithSpecial) {
			t.Fatalf("exported tokenizer: EncodeWithSpecial(%q) = %v, want %v", ref.Text, got, ref.IDsWithSpecial)
		}
	}
	if n < 10 {
		t.Fatalf("only %d reference strings", n)
	}
}

// TestExportGemma writes the transformers Gemma 2/3 checkpoints as GGUF in each type
// and loads them back: over 200 tokens (past every sliding window) the logits are
// those of the folder's model with its weights rounded as the type stores them, so
// the norms (1 + w), post-norms, soft caps, windows and their pattern, the attention
// scale, the local RoPE and a bf16 model's embedding scale all survive; and the keys
// llama.cpp would not honour are the ones these checkpoints need.
func TestExportGemma(t *testing.T) {
	ignored := map[string]string{
		// query_pre_attn_scalar 24 ≠ head_dim 16; the alternation is llama.cpp's own
		"gemma2": "[gemma2.attention.scale]",
		// every third layer global, not every sixth; query_pre_attn_scalar 20
		"gemma3": "[gemma3.attention.sliding_window_pattern gemma3.attention.scale]",
		// and √72 rounded to bf16
		"gemma3-bf16": "[gemma3.attention.sliding_window_pattern gemma3.embedding_scale]",
	}
	r := rand.New(rand.NewPCG(3, 4))
	for _, name := range []string{"gemma2", "gemma3", "gemma3-bf16"} {
		for _, typ := range []string{"f32", "f16", "q8_0"} {
			t.Run(name+"/"+typ, func(t *testing.T) {
				dir := filepath.Join("..", "..", "testdata", "models", name)
				src, err := model.Load(dir, model.LoadOptions{})
				if err != nil {
					t.Fatal(err)
				}
				kvs, ts, err := exportGGUF(src, exportTypes[typ])
				if err != nil {
					t.Fatal(err)
				}
				if got := fmt.Sprint(llamaCppIgnores(kvs)); got != ignored[name] {
					t.Errorf("keys llama.cpp ignores: %s, want %s", got, ignored[name])
				}
				path := filepath.Join(t.TempDir(), "m.gguf")
				if err := gguf.WriteFile(path, kvs, ts, false); err != nil {
					t.Fatal(err)
				}
				// q8_0 widened at load: on its blocks, a pre-fill may run on integer
				// products, which round the activations to 8 bits (tensor's IntegerPrefill).
				got, err := model.LoadGGUF(path, model.LoadOptions{F32: typ == "q8_0"})
				if err != nil {
					t.Fatal(err)
				}
				ref, err := model.Load(dir, model.LoadOptions{F32: true})
				if err != nil {
					t.Fatal(err)
				}
				roundWeights(ref, typ)
				ids := make([]int, 200)
				for i := range ids {
					ids[i] = r.IntN(src.Config.Vocab)
				}
				if e := relL2(exportLogits(t, got, ids), exportLogits(t, ref, ids)); !(e <= 1e-5) {
					t.Errorf("logits %.3g rel L2 from the folder's model with %s weights, want ≤ 1e-5", e, typ)
				}
			})
		}
	}
	// What no key of llama.cpp can say is refused.
	src, err := model.Load(filepath.Join("..", "..", "testdata", "models", "gemma2"), model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	src.Config.FinalSoftCap = 0
	if _, _, err := exportGGUF(src, exportTypes["f32"]); err == nil || !strings.Contains(err.Error(), "without attention and logit soft caps") {
		t.Errorf("Gemma 2 without a logit cap: %v, want a refusal", err)
	}
}

// TestExportWeights: a folder's and its GGUF files' weights written as float32 safetensors
// carry Hugging Face's names and layout: from the folder and from an f32 GGUF exactly the
// folder's weights (the GGUF's Q and K rows unpermuted), from a q8_0 GGUF within its rounding;
// a .gguf is refused as the model of a .gguf export.
func TestExportWeights(t *testing.T) {
	dir := t.TempDir()
	writeRandomLlama(t, dir, "llama2", 32008)
	ref, err := safetensors.Open(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	read := func(path string) map[string][]float32 {
		f, err := safetensors.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		got := map[string][]float32{}
		for _, name := range f.Names() {
			ts, _ := f.Tensor(name)
			if ts.Dtype != safetensors.F32 {
				t.Fatalf("%s: %s is %s, want F32", path, name, ts.Dtype)
			}
			v := make([]float32, ts.Len())
			for i := range v {
				v[i] = math.Float32frombits(binary.LittleEndian.Uint32(ts.Data[4*i:]))
			}
			got[name] = v
		}
		return got
	}
	want := map[string][]float32{}
	for _, name := range ref.Names() {
		ts, _ := ref.Tensor(name)
		v := make([]float32, ts.Len())
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(ts.Data[4*i:]))
		}
		want[name] = v
	}
	for _, typ := range []string{"f32", "q8_0"} {
		g := filepath.Join(dir, typ+".gguf")
		if err := runExport([]string{"--model", dir, "--out", g, "--type", typ}); err != nil {
			t.Fatal(err)
		}
		err := runExport([]string{"--model", g, "--out", filepath.Join(dir, "again.gguf")})
		if err == nil || !strings.Contains(err.Error(), "not a model folder") {
			t.Errorf("a .gguf exported to .gguf: %v", err)
		}
	}
	for src, bound := range map[string]float64{dir: 0, filepath.Join(dir, "f32.gguf"): 0, filepath.Join(dir, "q8_0.gguf"): 1e-2} {
		out := filepath.Join(t.TempDir(), "w.safetensors")
		if _, err := quiet(t, func() error { return runExport([]string{"--model", src, "--out", out}) }); err != nil {
			t.Fatal(err)
		}
		got := read(out)
		if len(got) != len(want) {
			t.Errorf("%s: %d tensors, want %d", src, len(got), len(want))
		}
		for name, w := range want {
			if e := relL2(got[name], w); len(got[name]) != len(w) || !(e <= bound) {
				t.Errorf("%s: %s: %d values, rel L2 %.3g from the folder's; want %d within %g", src, name, len(got[name]), e, len(w), bound)
			}
		}
	}
}
