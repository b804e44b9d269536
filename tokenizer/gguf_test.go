package tokenizer

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kvfoot/kvfoot/format/gguf"
)

// hfToGGUF writes the tokenizer.ggml.* metadata of a Hugging Face tokenizer folder
// as llama.cpp's convert_hf_to_gguf.py lays it out: one dense token list (holes as
// unused [PADn] tokens), token types (added special tokens control, other added
// tokens user-defined, <0xNN> bytes, the unknown token), merges as "a b" strings for
// byte-level BPE, and for the SentencePiece-style Llama 2 vocabulary, instead of
// merges, scores: here the negated rank of the first merge that makes a piece, which
// orders pieces as the SentencePiece scores the merges were extracted from did.
func hfToGGUF(t *testing.T, dir, pre string) string {
	t.Helper()
	raw, err := readMaybeGzip(filepath.Join(dir, "tokenizer.json.gz"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		AddedTokens []addedTokenJSON `json:"added_tokens"`
		Model       struct {
			Vocab    map[string]int  `json:"vocab"`
			Merges   json.RawMessage `json:"merges"`
			UnkToken *string         `json:"unk_token"`
		} `json:"model"`
		PostProcessor json.RawMessage `json:"post_processor"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		BOS          *string `json:"bos_token"`
		EOS          *string `json:"eos_token"`
		ChatTemplate *string `json:"chat_template"`
	}
	if err := json.Unmarshal(must(os.ReadFile(filepath.Join(dir, "tokenizer_config.json"))), &cfg); err != nil {
		t.Fatal(err)
	}
	n := 0
	ids := map[string]int{}
	for tok, id := range f.Model.Vocab {
		n, ids[tok] = max(n, id+1), id
	}
	for _, a := range f.AddedTokens {
		n, ids[a.Content] = max(n, a.ID+1), a.ID
	}
	toks := make([]string, n)
	types := make([]int32, n)
	for i := range toks {
		toks[i], types[i] = fmt.Sprintf("[PAD%d]", i), ggufUnused
	}
	for tok, id := range f.Model.Vocab {
		toks[id], types[id] = tok, ggufNormal
		if pre == "" && len(tok) == 6 && strings.HasPrefix(tok, "<0x") && strings.HasSuffix(tok, ">") {
			types[id] = ggufByte
		}
	}
	for _, a := range f.AddedTokens {
		toks[a.ID], types[a.ID] = a.Content, ggufUserDefined
		if a.Special {
			types[a.ID] = ggufControl
		}
	}
	merges, err := parseMerges(f.Model.Merges)
	if err != nil {
		t.Fatal(err)
	}
	kv := []gguf.KV{{Key: "general.architecture", Value: "llama"}}
	if pre == "" {
		scores := make([]float32, n)
		for i := range scores {
			scores[i] = -1e9
		}
		for rank, m := range slices.Backward(merges) {
			scores[ids[m[0]+m[1]]] = -float32(rank)
		}
		kv = append(kv, gguf.KV{Key: "tokenizer.ggml.model", Value: "llama"},
			gguf.KV{Key: "tokenizer.ggml.scores", Value: gguf.Array{Elem: gguf.TypeFloat32, Values: scores}})
	} else {
		ms := make([]string, len(merges))
		for i, m := range merges {
			ms[i] = m[0] + " " + m[1]
		}
		kv = append(kv, gguf.KV{Key: "tokenizer.ggml.model", Value: "gpt2"},
			gguf.KV{Key: "tokenizer.ggml.pre", Value: pre},
			gguf.KV{Key: "tokenizer.ggml.merges", Value: gguf.Array{Elem: gguf.TypeString, Values: ms}})
	}
	if f.Model.UnkToken != nil {
		types[ids[*f.Model.UnkToken]] = ggufUnknown
		kv = append(kv, gguf.KV{Key: "tokenizer.ggml.unknown_token_id", Value: uint32(ids[*f.Model.UnkToken])})
	}
	kv = append(kv, gguf.KV{Key: "tokenizer.ggml.tokens", Value: gguf.Array{Elem: gguf.TypeString, Values: toks}},
		gguf.KV{Key: "tokenizer.ggml.token_type", Value: gguf.Array{Elem: gguf.TypeInt32, Values: types}},
		gguf.KV{Key: "tokenizer.ggml.add_bos_token", Value: strings.Contains(string(f.PostProcessor), "SpecialToken")})
	if cfg.BOS != nil {
		kv = append(kv, gguf.KV{Key: "tokenizer.ggml.bos_token_id", Value: uint32(ids[*cfg.BOS])})
	}
	if cfg.EOS != nil {
		kv = append(kv, gguf.KV{Key: "tokenizer.ggml.eos_token_id", Value: uint32(ids[*cfg.EOS])})
	}
	if cfg.ChatTemplate != nil {
		kv = append(kv, gguf.KV{Key: "tokenizer.chat_template", Value: *cfg.ChatTemplate})
	}
	path := filepath.Join(t.TempDir(), "tok.gguf")
	if err := gguf.WriteFile(path, kv, nil, false); err != nil {
		t.Fatal(err)
	}
	return path
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func loadGGUFFile(t *testing.T, path string) *Tokenizer {
	t.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tok, err := LoadGGUF(f)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestGGUFConformance: a tokenizer read from GGUF metadata encodes and decodes the
// shared test strings exactly as the tokenizers library does with tokenizer.json.
func TestGGUFConformance(t *testing.T) {
	for _, c := range []struct{ fam, pre string }{{"llama2", ""}, {"llama3_1", "llama-bpe"}, {"qwen3", "qwen2"}} {
		t.Run(c.fam, func(t *testing.T) {
			dir := filepath.Join(testdataT, c.fam)
			tok := loadGGUFFile(t, hfToGGUF(t, dir, c.pre))
			hf := family(t, c.fam)
			checkSpecials(t, tok, hf)
			refs := readReferences(t, filepath.Join(dir, "encodings.jsonl"))
			refs = append(refs, readReferences(t, filepath.Join(dir, "extra.jsonl"))...)
			checkReferences(t, tok, refs)
		})
	}
}

func TestGGUFTokenizerErrors(t *testing.T) {
	base := func() []gguf.KV {
		return []gguf.KV{
			{Key: "tokenizer.ggml.model", Value: "gpt2"},
			{Key: "tokenizer.ggml.tokens", Value: gguf.Array{Elem: gguf.TypeString, Values: []string{"a", "b", "ab"}}},
			{Key: "tokenizer.ggml.merges", Value: gguf.Array{Elem: gguf.TypeString, Values: []string{"a b"}}},
		}
	}
	set := func(key string, v any) []gguf.KV {
		kv := base()
		for i := range kv {
			if kv[i].Key == key {
				kv[i].Value = v
				return kv
			}
		}
		return append(kv, gguf.KV{Key: key, Value: v})
	}
	cases := []struct {
		name string
		kv   []gguf.KV
		want string
	}{
		{"model", set("tokenizer.ggml.model", "bert"), `"tokenizer.ggml.model": "bert" is not supported`},
		{"pre", set("tokenizer.ggml.pre", "deepseek-llm"), `"tokenizer.ggml.pre": "deepseek-llm" is not supported`},
		{"bos", set("tokenizer.ggml.bos_token_id", uint32(3)), `"tokenizer.ggml.bos_token_id": 3 is outside`},
		{"pad", set("tokenizer.ggml.padding_token_id", int32(-1)), `"tokenizer.ggml.padding_token_id": -1 is outside`},
		{"types", set("tokenizer.ggml.token_type", gguf.Array{Elem: gguf.TypeInt32, Values: []int32{1}}), "1 entries for 3 tokens"},
		{"merge", set("tokenizer.ggml.merges", gguf.Array{Elem: gguf.TypeString, Values: []string{"ab"}}), `entry 0, "ab"`},
		{"dup", set("tokenizer.ggml.tokens", gguf.Array{Elem: gguf.TypeString, Values: []string{"a", "b", "a"}}), `"a" is token 0 and 2`},
		{"scores", set("tokenizer.ggml.model", "llama"), `"tokenizer.ggml.scores": missing`},
		{"no tokens", set("tokenizer.ggml.tokens", uint32(1)), `"tokenizer.ggml.tokens": uint32 1, want an array of strings`},
	}
	for _, c := range cases {
		path := filepath.Join(t.TempDir(), "bad.gguf")
		if err := gguf.WriteFile(path, c.kv, nil, false); err != nil {
			t.Fatal(err)
		}
		f, err := gguf.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		_, err = LoadGGUF(f)
		f.Close()
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "bad.gguf") {
			t.Errorf("%s: %v, want an error naming bad.gguf and containing %q", c.name, err, c.want)
		}
	}
}
