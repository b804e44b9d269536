package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/kvfoot/kvfoot/format/gguf"
)

// llama.cpp's token types (tokenizer.ggml.token_type).
const (
	ggufNormal      = 1
	ggufUnknown     = 2
	ggufControl     = 3
	ggufUserDefined = 4
	ggufUnused      = 5
	ggufByte        = 6
)

// ggufPre maps tokenizer.ggml.pre (llama.cpp's name for a byte-level pre-tokenizer)
// to the tokenizer.json components of the same models.
var ggufPre = map[string]struct {
	normalizer   string // JSON, "" for none
	pattern      string // the Split regex; "" for ByteLevel's own (GPT-2's)
	ignoreMerges bool
}{
	"llama-bpe": {pattern: llama3Pattern, ignoreMerges: true},
	"llama3":    {pattern: llama3Pattern, ignoreMerges: true},
	"qwen2":     {normalizer: `{"type":"NFC"}`, pattern: qwen2Pattern},
	"gpt2":      {},
	"default":   {},
}

// LoadGGUF builds a tokenizer from a GGUF file's tokenizer.ggml.* metadata: a
// SentencePiece vocabulary ("llama": pieces, scores and token types, with byte
// fallback) or a byte-level BPE one ("gpt2": tokens, merges, and
// tokenizer.ggml.pre naming the pre-tokenizer). It assembles the tokenizer.json and
// tokenizer_config.json that Hugging Face ships for such models and parses them,
// so both sources share one implementation. A SentencePiece vocabulary has no merges
// in GGUF; they are derived from the scores as transformers' SentencePieceExtractor
// does when it converts such a model.
func LoadGGUF(f *gguf.File) (*Tokenizer, error) {
	t, err := loadGGUF(f)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", f.Path, err)
	}
	return t, nil
}

func loadGGUF(f *gguf.File) (*Tokenizer, error) {
	kind, err := f.String("tokenizer.ggml.model")
	if err != nil {
		return nil, err
	}
	toks, err := f.Strings("tokenizer.ggml.tokens")
	if err != nil {
		return nil, err
	}
	if len(toks) == 0 {
		return nil, fmt.Errorf("metadata \"tokenizer.ggml.tokens\": empty")
	}
	types := make([]int64, len(toks))
	for i := range types {
		types[i] = ggufNormal
	}
	if f.Has("tokenizer.ggml.token_type") {
		if types, err = f.Ints("tokenizer.ggml.token_type"); err != nil {
			return nil, err
		}
		if len(types) != len(toks) {
			return nil, fmt.Errorf("metadata \"tokenizer.ggml.token_type\": %d entries for %d tokens", len(types), len(toks))
		}
	}
	id := func(key string) (int, bool, error) {
		if !f.Has(key) {
			return -1, false, nil
		}
		v, err := f.Int(key)
		if err != nil {
			return -1, false, err
		}
		if v < 0 || v >= int64(len(toks)) {
			return -1, false, fmt.Errorf("metadata %q: %d is outside the vocabulary [0, %d)", key, v, len(toks))
		}
		return int(v), true, nil
	}
	flag := func(key string, def bool) (bool, error) {
		if !f.Has(key) {
			return def, nil
		}
		return f.Bool(key)
	}

	file := fileJSON{Model: &modelJSON{Type: "BPE", Vocab: map[string]int{}}}
	var merges [][2]string
	var addBOSDefault bool
	switch kind {
	case "llama":
		if merges, err = spmMerges(f, toks, types); err != nil {
			return nil, err
		}
		addBOSDefault = true
		file.Model.ByteFallback, file.Model.FuseUnk = true, true
		space, err := flag("tokenizer.ggml.add_space_prefix", true)
		if err != nil {
			return nil, err
		}
		var norms []string
		if space {
			norms = append(norms, `{"type":"Prepend","prepend":"▁"}`)
		}
		norms = append(norms, `{"type":"Replace","pattern":{"String":" "},"content":"▁"}`)
		file.Normalizer = json.RawMessage(`{"type":"Sequence","normalizers":[` + strings.Join(norms, ",") + `]}`)
		strip := ""
		if space {
			strip = `,{"type":"Strip","content":" ","start":1,"stop":0}`
		}
		file.Decoder = json.RawMessage(`{"type":"Sequence","decoders":[{"type":"Replace","pattern":{"String":"▁"},"content":" "},` +
			`{"type":"ByteFallback"},{"type":"Fuse"}` + strip + `]}`)
	case "gpt2":
		pre := "default"
		if f.Has("tokenizer.ggml.pre") {
			if pre, err = f.String("tokenizer.ggml.pre"); err != nil {
				return nil, err
			}
		}
		p, ok := ggufPre[pre]
		if !ok {
			return nil, fmt.Errorf("metadata \"tokenizer.ggml.pre\": %q is not supported (want llama-bpe, qwen2, gpt2 or default)", pre)
		}
		raw, err := f.Strings("tokenizer.ggml.merges")
		if err != nil {
			return nil, err
		}
		merges = make([][2]string, len(raw))
		for i, m := range raw {
			// llama.cpp looks for the separating space from the second byte on.
			sp := strings.IndexByte(m[min(1, len(m)):], ' ') + 1
			if sp <= 0 {
				return nil, fmt.Errorf("metadata \"tokenizer.ggml.merges\": entry %d, %q, is not \"a b\"", i, m)
			}
			merges[i] = [2]string{m[:sp], m[sp+1:]}
		}
		file.Model.IgnoreMerges = p.ignoreMerges
		if p.normalizer != "" {
			file.Normalizer = json.RawMessage(p.normalizer)
		}
		if p.pattern != "" {
			pat, _ := json.Marshal(p.pattern)
			file.PreTokenizer = json.RawMessage(`{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":` + string(pat) +
				`},"behavior":"Isolated","invert":false},{"type":"ByteLevel","add_prefix_space":false,"use_regex":false}]}`)
		} else {
			file.PreTokenizer = json.RawMessage(`{"type":"ByteLevel","add_prefix_space":false,"use_regex":true}`)
		}
		file.Decoder = json.RawMessage(`{"type":"ByteLevel"}`)
	default:
		return nil, fmt.Errorf("metadata \"tokenizer.ggml.model\": %q is not supported (want llama or gpt2)", kind)
	}

	// Control, user-defined and unknown tokens are tokenizer.json's added tokens,
	// matched in the text before the model runs; a byte-level model's vocabulary
	// leaves them out, as Hugging Face's does.
	for i, tok := range toks {
		switch types[i] {
		case ggufUnused:
			continue
		case ggufControl, ggufUserDefined, ggufUnknown:
			if tok == "" {
				return nil, fmt.Errorf("metadata \"tokenizer.ggml.tokens\": token %d is empty", i)
			}
			file.AddedTokens = append(file.AddedTokens, addedTokenJSON{ID: i, Content: tok, Special: types[i] != ggufUserDefined})
			if kind == "gpt2" {
				continue
			}
		case ggufNormal, ggufByte:
		default:
			return nil, fmt.Errorf("metadata \"tokenizer.ggml.token_type\": token %d has type %d (want 1…6)", i, types[i])
		}
		if prev, dup := file.Model.Vocab[tok]; dup {
			return nil, fmt.Errorf("metadata \"tokenizer.ggml.tokens\": %q is token %d and %d", tok, prev, i)
		}
		file.Model.Vocab[tok] = i
	}
	if file.Model.Merges, err = json.Marshal(merges); err != nil {
		return nil, err
	}
	unk, hasUnk, err := id("tokenizer.ggml.unknown_token_id")
	if err != nil {
		return nil, err
	}
	if hasUnk {
		file.Model.UnkToken = &toks[unk]
	}
	bos, hasBOS, err := id("tokenizer.ggml.bos_token_id")
	if err != nil {
		return nil, err
	}
	eos, hasEOS, err := id("tokenizer.ggml.eos_token_id")
	if err != nil {
		return nil, err
	}
	// The tokenizer has no use for the padding id, but a file whose id lies is refused.
	if _, _, err := id("tokenizer.ggml.padding_token_id"); err != nil {
		return nil, err
	}
	addBOS, err := flag("tokenizer.ggml.add_bos_token", addBOSDefault)
	if err != nil {
		return nil, err
	}
	addEOS, err := flag("tokenizer.ggml.add_eos_token", false)
	if err != nil {
		return nil, err
	}
	type piece = map[string]map[string]string
	var single []piece
	specials := map[string]map[string]any{}
	if addBOS && hasBOS {
		single = append(single, piece{"SpecialToken": {"id": toks[bos]}})
		specials[toks[bos]] = map[string]any{"ids": []int{bos}}
	}
	single = append(single, piece{"Sequence": {"id": "A"}})
	if addEOS && hasEOS {
		single = append(single, piece{"SpecialToken": {"id": toks[eos]}})
		specials[toks[eos]] = map[string]any{"ids": []int{eos}}
	}
	if file.PostProcessor, err = json.Marshal(map[string]any{"type": "TemplateProcessing", "single": single, "special_tokens": specials}); err != nil {
		return nil, err
	}

	cfg := map[string]any{}
	if hasBOS {
		cfg["bos_token"] = toks[bos]
	}
	if hasEOS {
		cfg["eos_token"] = toks[eos]
	}
	if f.Has("tokenizer.chat_template") {
		if cfg["chat_template"], err = f.String("tokenizer.chat_template"); err != nil {
			return nil, err
		}
	}
	data, err := json.Marshal(file)
	if err != nil {
		return nil, err
	}
	config, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	return Parse(data, config)
}

// spmMerges derives BPE merges from a SentencePiece vocabulary as transformers'
// SentencePieceExtractor does: every split of a piece into two pieces of the
// vocabulary is a merge, ranked by the piece's score (highest first; ties in
// vocabulary order), a piece's own splits by the ids of their halves.
func spmMerges(f *gguf.File, toks []string, types []int64) ([][2]string, error) {
	scores, err := f.Float32s("tokenizer.ggml.scores")
	if err != nil {
		return nil, err
	}
	if len(scores) != len(toks) {
		return nil, fmt.Errorf("metadata \"tokenizer.ggml.scores\": %d entries for %d tokens", len(scores), len(toks))
	}
	vocab := make(map[string]int, len(toks))
	for i, t := range toks {
		if types[i] != ggufUnused {
			if _, dup := vocab[t]; !dup {
				vocab[t] = i
			}
		}
	}
	type cand struct {
		l, r   int
		pieceI int
	}
	var all []cand
	for i, t := range toks {
		if types[i] == ggufUnused {
			continue
		}
		start := len(all)
		for k := 1; k < len(t); k++ {
			if !utf8.RuneStart(t[k]) {
				continue // Python splits between characters
			}
			l, okL := vocab[t[:k]]
			r, okR := vocab[t[k:]]
			if okL && okR {
				all = append(all, cand{l, r, i})
			}
		}
		local := all[start:]
		sort.Slice(local, func(a, b int) bool {
			if local[a].l != local[b].l {
				return local[a].l < local[b].l
			}
			return local[a].r < local[b].r
		})
	}
	sort.SliceStable(all, func(a, b int) bool { return scores[all[a].pieceI] > scores[all[b].pieceI] })
	out := make([][2]string, len(all))
	for i, c := range all {
		out[i] = [2]string{toks[c.l], toks[c.r]}
	}
	return out, nil
}

// GGUFMetadata is the tokenizer.ggml.* metadata (and tokenizer.chat_template) of
// the Hugging Face tokenizer in folder dir, laid out as llama.cpp's converter writes
// it: one dense token list (holes as unused [PADn] tokens) with token types (added
// special tokens control, other added tokens user-defined, <0xNN> bytes, the unknown
// token); a byte-level BPE vocabulary as "gpt2" with its merges and the
// pre-tokenizer's llama.cpp name (llama-bpe, qwen2 or gpt2, recognized by its split
// pattern); a SentencePiece-style one (byte fallback) as "llama" with scores, the
// negated rank of the merge that makes each piece, which orders merges as the
// SentencePiece scores they came from did. The result is checked: the tokenizer
// LoadGGUF builds from it must encode sample texts as the folder's does.
func GGUFMetadata(dir string) ([]gguf.KV, error) {
	tok, err := Load(dir)
	if err != nil {
		return nil, err
	}
	file := filepath.Join(dir, "tokenizer.json")
	raw, err := readMaybeGzip(file)
	if err != nil {
		file += ".gz"
		if raw, err = readMaybeGzip(file); err != nil {
			return nil, fmt.Errorf("tokenizer: %w", err)
		}
	}
	kv, err := ggufMetadata(tok, raw)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", file, err)
	}
	return kv, nil
}

// ggufSamples are the texts a tokenizer written as GGUF metadata must encode as the
// folder's tokenizer does.
var ggufSamples = []string{
	"Hello, world! It's 2026: 12345 tokens.", "  leading spaces\tand\ttabs\n\nnew lines ",
	"ünïcödé — 日本語のテキスト, emoji 🙂", "don't won't I'm we've they'll she'd",
}

func ggufMetadata(tok *Tokenizer, raw []byte) ([]gguf.KV, error) {
	var f fileJSON
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, err
	}
	if f.Model == nil || f.Model.Type != "BPE" {
		return nil, fmt.Errorf("model.type: GGUF holds BPE vocabularies only")
	}
	ids := map[string]int{}
	n := 0
	for t, id := range f.Model.Vocab {
		n, ids[t] = max(n, id+1), id
	}
	for _, a := range f.AddedTokens {
		n, ids[a.Content] = max(n, a.ID+1), a.ID
	}
	toks := make([]string, n)
	types := make([]int32, n)
	for i := range toks {
		toks[i], types[i] = fmt.Sprintf("[PAD%d]", i), ggufUnused
	}
	for t, id := range f.Model.Vocab {
		toks[id], types[id] = t, ggufNormal
		if tok.byteFallback && len(t) == 6 && strings.HasPrefix(t, "<0x") && strings.HasSuffix(t, ">") {
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
		return nil, err
	}
	var kv []gguf.KV
	switch {
	case tok.byteLevel:
		pre := "gpt2"
		switch {
		case strings.Contains(string(f.PreTokenizer), jsonString(llama3Pattern)):
			pre = "llama-bpe"
		case strings.Contains(string(f.PreTokenizer), jsonString(qwen2Pattern)):
			pre = "qwen2"
		}
		ms := make([]string, len(merges))
		for i, m := range merges {
			ms[i] = m[0] + " " + m[1]
		}
		kv = append(kv, gguf.KV{Key: "tokenizer.ggml.model", Value: "gpt2"}, gguf.KV{Key: "tokenizer.ggml.pre", Value: pre},
			gguf.KV{Key: "tokenizer.ggml.merges", Value: gguf.Array{Elem: gguf.TypeString, Values: ms}})
	case tok.byteFallback:
		scores := make([]float32, n)
		for i := range scores {
			scores[i] = -1e9
		}
		for rank, m := range slices.Backward(merges) {
			if id, ok := ids[m[0]+m[1]]; ok {
				scores[id] = -float32(rank)
			}
		}
		space := strings.Contains(string(f.Normalizer), `"Prepend"`) || strings.Contains(string(f.PreTokenizer), `"prepend_scheme":"first"`) ||
			strings.Contains(string(f.PreTokenizer), `"prepend_scheme":"always"`)
		kv = append(kv, gguf.KV{Key: "tokenizer.ggml.model", Value: "llama"},
			gguf.KV{Key: "tokenizer.ggml.scores", Value: gguf.Array{Elem: gguf.TypeFloat32, Values: scores}},
			gguf.KV{Key: "tokenizer.ggml.add_space_prefix", Value: space})
	default:
		return nil, fmt.Errorf("model: neither byte-level nor byte-fallback BPE, which GGUF's gpt2 and llama vocabularies are")
	}
	if f.Model.UnkToken != nil {
		if id, ok := ids[*f.Model.UnkToken]; ok {
			types[id] = ggufUnknown
			kv = append(kv, gguf.KV{Key: "tokenizer.ggml.unknown_token_id", Value: uint32(id)})
		}
	}
	kv = append(kv, gguf.KV{Key: "tokenizer.ggml.tokens", Value: gguf.Array{Elem: gguf.TypeString, Values: toks}},
		gguf.KV{Key: "tokenizer.ggml.token_type", Value: gguf.Array{Elem: gguf.TypeInt32, Values: types}},
		gguf.KV{Key: "tokenizer.ggml.add_bos_token", Value: tok.bos >= 0 && slices.Contains(tok.prefix, tok.bos)},
		gguf.KV{Key: "tokenizer.ggml.add_eos_token", Value: tok.eos >= 0 && slices.Contains(tok.suffix, tok.eos)})
	if tok.bos >= 0 {
		kv = append(kv, gguf.KV{Key: "tokenizer.ggml.bos_token_id", Value: uint32(tok.bos)})
	}
	if tok.eos >= 0 {
		kv = append(kv, gguf.KV{Key: "tokenizer.ggml.eos_token_id", Value: uint32(tok.eos)})
	}
	if tok.chatTemplate != "" {
		kv = append(kv, gguf.KV{Key: "tokenizer.chat_template", Value: tok.chatTemplate})
	}
	if err := checkGGUFMetadata(tok, kv); err != nil {
		return nil, err
	}
	return kv, nil
}

// jsonString is s as a JSON string literal without its quotes, as it appears in a
// tokenizer.json.
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b[1 : len(b)-1])
}

// checkGGUFMetadata builds the tokenizer that LoadGGUF would from kv and compares its
// encodings of the samples with tok's.
func checkGGUFMetadata(tok *Tokenizer, kv []gguf.KV) error {
	var buf bytes.Buffer
	if err := gguf.Write(&buf, append([]gguf.KV{{Key: "general.architecture", Value: "llama"}}, kv...), nil); err != nil {
		return err
	}
	f, err := gguf.Read(bytes.NewReader(buf.Bytes()), int64(buf.Len()), "metadata")
	if err != nil {
		return err
	}
	back, err := loadGGUF(f)
	if err != nil {
		return err
	}
	for _, s := range ggufSamples {
		if got, want := back.EncodeWithSpecial(s), tok.EncodeWithSpecial(s); !slices.Equal(got, want) {
			return fmt.Errorf("as GGUF metadata the tokenizer would encode %q as %v, not %v (a pre-tokenizer or normalizer GGUF cannot name?)", s, got, want)
		}
	}
	return nil
}
