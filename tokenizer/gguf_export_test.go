package tokenizer

import (
	"path/filepath"
	"testing"

	"github.com/kvfoot/kvfoot/format/gguf"
)

// TestGGUFMetadataConformance: GGUFMetadata of each family's folder, written to a
// GGUF file and read back by LoadGGUF, encodes and decodes the shared test strings as
// the tokenizers library does with tokenizer.json, with the same special tokens and
// chat template.
func TestGGUFMetadataConformance(t *testing.T) {
	for _, c := range []struct{ fam, model, pre string }{{"llama2", "llama", ""}, {"llama3_1", "gpt2", "llama-bpe"}, {"qwen3", "gpt2", "qwen2"}} {
		t.Run(c.fam, func(t *testing.T) {
			dir := filepath.Join(testdataT, c.fam)
			kv, err := GGUFMetadata(dir)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "tok.gguf")
			if err := gguf.WriteFile(path, append([]gguf.KV{{Key: "general.architecture", Value: "llama"}}, kv...), nil, false); err != nil {
				t.Fatal(err)
			}
			f, err := gguf.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if m, _ := f.String("tokenizer.ggml.model"); m != c.model {
				t.Errorf("tokenizer.ggml.model %q, want %q", m, c.model)
			}
			if c.pre != "" {
				if p, _ := f.String("tokenizer.ggml.pre"); p != c.pre {
					t.Errorf("tokenizer.ggml.pre %q, want %q", p, c.pre)
				}
			}
			tok, err := LoadGGUF(f)
			if err != nil {
				t.Fatal(err)
			}
			hf := family(t, c.fam)
			checkSpecials(t, tok, hf)
			refs := readReferences(t, filepath.Join(dir, "encodings.jsonl"))
			refs = append(refs, readReferences(t, filepath.Join(dir, "extra.jsonl"))...)
			checkReferences(t, tok, refs)
		})
	}
}
