package tokenizer

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/text/unicode/norm"
)

// The parts of tokenizer.json that kvfoot reads. Anything else in the file is
// ignored; an unsupported component is an error that names its field.
type fileJSON struct {
	AddedTokens   []addedTokenJSON `json:"added_tokens"`
	Normalizer    json.RawMessage  `json:"normalizer"`
	PreTokenizer  json.RawMessage  `json:"pre_tokenizer"`
	PostProcessor json.RawMessage  `json:"post_processor"`
	Decoder       json.RawMessage  `json:"decoder"`
	Model         *modelJSON       `json:"model"`
}

type addedTokenJSON struct {
	ID         int    `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

type modelJSON struct {
	Type                    string          `json:"type"`
	Vocab                   map[string]int  `json:"vocab"`
	Merges                  json.RawMessage `json:"merges"`
	UnkToken                *string         `json:"unk_token"`
	ContinuingSubwordPrefix *string         `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string         `json:"end_of_word_suffix"`
	FuseUnk                 bool            `json:"fuse_unk"`
	ByteFallback            bool            `json:"byte_fallback"`
	IgnoreMerges            bool            `json:"ignore_merges"`
	Dropout                 *float64        `json:"dropout"`
}

// component is the common shape of normalizers, pre-tokenizers, post-processors
// and decoders: a type tag plus type-specific fields.
type component struct {
	Type           string            `json:"type"`
	Normalizers    []json.RawMessage `json:"normalizers"`
	Pretokenizers  []json.RawMessage `json:"pretokenizers"`
	Processors     []json.RawMessage `json:"processors"`
	Decoders       []json.RawMessage `json:"decoders"`
	Pattern        *patternJSON      `json:"pattern"`
	Content        *string           `json:"content"`
	Prepend        *string           `json:"prepend"`
	Behavior       string            `json:"behavior"`
	Invert         bool              `json:"invert"`
	AddPrefixSpace bool              `json:"add_prefix_space"`
	UseRegex       *bool             `json:"use_regex"`
	Start          int               `json:"start"`
	Stop           int               `json:"stop"`
	Single         []templatePiece   `json:"single"`
	SpecialTokens  map[string]struct {
		IDs []int `json:"ids"`
	} `json:"special_tokens"`
}

type patternJSON struct {
	String *string `json:"String"`
	Regex  *string `json:"Regex"`
}

type templatePiece struct {
	SpecialToken *struct {
		ID string `json:"id"`
	} `json:"SpecialToken"`
	Sequence *struct {
		ID string `json:"id"`
	} `json:"Sequence"`
}

// The most bytes Load reads of each file: far above any real one, and a bound on
// what a model folder can make kvfoot allocate.
const (
	MaxTokenizerBytes    = 512 << 20 // tokenizer.json (after gunzip)
	MaxConfigBytes       = 64 << 20  // tokenizer_config.json
	MaxChatTemplateBytes = 1 << 20   // a chat template, from either file
)

// Load reads a tokenizer from a tokenizer.json file (optionally gzip-compressed,
// named *.gz) or from a folder holding tokenizer.json, in which case
// tokenizer_config.json beside it, when present, supplies the chat template and
// the BOS/EOS names, and chat_template.jinja beside it (the newer layout), when
// present, the chat template: it wins over tokenizer_config.json's, as in
// transformers.
func Load(path string) (*Tokenizer, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	file, cfgPath := path, ""
	if st.IsDir() {
		file = filepath.Join(path, "tokenizer.json")
		if _, err := os.Stat(file); err != nil {
			if _, err2 := os.Stat(file + ".gz"); err2 != nil {
				return nil, fmt.Errorf("tokenizer: folder %s has no tokenizer.json", path)
			}
			file += ".gz"
		}
		cfgPath = filepath.Join(path, "tokenizer_config.json")
	} else {
		cfgPath = filepath.Join(filepath.Dir(path), "tokenizer_config.json")
	}
	data, err := readMaybeGzip(file)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	cfg, err := readOptional(cfgPath, MaxConfigBytes)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	jinjaPath := filepath.Join(filepath.Dir(cfgPath), "chat_template.jinja")
	tmpl, err := readOptional(jinjaPath, MaxChatTemplateBytes)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	t, err := Parse(data, cfg)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", file, err)
	}
	if tmpl != nil {
		t.chatTemplate = string(tmpl)
	}
	return t, nil
}

// readLimited reads the file path, refusing one over max bytes before reading it.
func readLimited(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() && st.Size() > max {
		return nil, fmt.Errorf("%s: %d bytes, more than the %d this file may have", path, st.Size(), max)
	}
	return readAllLimited(f, path, max)
}

// readAllLimited reads r to its end, failing past max bytes (a pipe, a growing
// file or a gzip stream may be longer than its size said).
func readAllLimited(r io.Reader, path string, max int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s: more than the %d bytes this file may have", path, max)
	}
	return data, nil
}

// readOptional reads a file that may be absent (nil, nil then).
func readOptional(path string, max int64) ([]byte, error) {
	data, err := readLimited(path, max)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return data, err
}

func readMaybeGzip(path string) ([]byte, error) {
	data, err := readLimited(path, MaxTokenizerBytes)
	if err != nil || !strings.HasSuffix(path, ".gz") {
		return data, err
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return readAllLimited(zr, path+" (uncompressed)", MaxTokenizerBytes)
}

// Parse builds a tokenizer from the bytes of tokenizer.json and, when config is
// not nil, of tokenizer_config.json.
func Parse(data, config []byte) (*Tokenizer, error) {
	var f fileJSON
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("not a tokenizer.json: %w", err)
	}
	t := &Tokenizer{bos: -1, eos: -1, cache: newWordCache()}
	if err := t.loadModel(f.Model); err != nil {
		return nil, err
	}
	if err := t.loadAdded(f.AddedTokens); err != nil {
		return nil, err
	}
	if err := t.loadNormalizer(f.Normalizer, "normalizer"); err != nil {
		return nil, err
	}
	if err := t.loadPreTokenizer(f.PreTokenizer, "pre_tokenizer"); err != nil {
		return nil, err
	}
	if t.byteLevel && t.byteFallback {
		return nil, errors.New("model.byte_fallback: not supported with a ByteLevel pre-tokenizer")
	}
	if t.byteLevel {
		for b := 0; b < 256; b++ {
			id, ok := t.vocab[string(byteToRune[b])]
			if !ok {
				return nil, fmt.Errorf("model.vocab: byte-level vocabulary lacks the token for byte 0x%02X", b)
			}
			t.byteTokens[b] = int32(id)
		}
		t.rawVocab = make(map[string]int, len(t.vocab))
		for tok, id := range f.Model.Vocab {
			t.rawVocab[string(byteLevelDecode(nil, tok))] = id
		}
	} else if t.split != nil {
		return nil, errors.New("pre_tokenizer: a Split pattern without ByteLevel is not supported")
	}
	if err := t.loadPostProcessor(f.PostProcessor, "post_processor"); err != nil {
		return nil, err
	}
	if err := t.loadDecoder(f.Decoder, "decoder"); err != nil {
		return nil, err
	}
	if t.split == nil {
		t.wordBreaks = true
		for tok := range t.vocab {
			if strings.Contains(strings.TrimLeft(tok, metaSpace), metaSpace) {
				t.wordBreaks = false
			}
		}
	}
	if len(t.prefix) > 0 {
		t.bos = t.prefix[0]
	}
	if config != nil {
		if err := t.loadConfig(config); err != nil {
			return nil, fmt.Errorf("tokenizer_config.json: %w", err)
		}
	}
	return t, nil
}

func (t *Tokenizer) loadModel(m *modelJSON) error {
	if m == nil {
		return errors.New("model: missing")
	}
	if m.Type != "BPE" && m.Type != "" {
		return fmt.Errorf("model.type: %q is not supported (want BPE)", m.Type)
	}
	if m.Dropout != nil && *m.Dropout != 0 {
		return errors.New("model.dropout: BPE dropout is not supported")
	}
	if m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "" {
		return errors.New("model.continuing_subword_prefix: not supported")
	}
	if m.EndOfWordSuffix != nil && *m.EndOfWordSuffix != "" {
		return errors.New("model.end_of_word_suffix: not supported")
	}
	if len(m.Vocab) == 0 {
		return errors.New("model.vocab: missing or empty")
	}
	n := 0
	for tok, id := range m.Vocab {
		if id < 0 || id > 1<<24 {
			return fmt.Errorf("model.vocab: token %q has id %d out of range", tok, id)
		}
		n = max(n, id+1)
	}
	t.vocab = m.Vocab
	t.tokens = make([]string, n)
	for tok, id := range m.Vocab {
		t.tokens[id] = tok
	}
	pairs, err := parseMerges(m.Merges)
	if err != nil {
		return err
	}
	t.merges = make(map[uint64]merge, len(pairs))
	for rank, p := range pairs {
		a, okA := m.Vocab[p[0]]
		b, okB := m.Vocab[p[1]]
		c, okC := m.Vocab[p[0]+p[1]]
		if !okA || !okB || !okC {
			return fmt.Errorf("model.merges[%d]: %q %q: token not in model.vocab", rank, p[0], p[1])
		}
		key := pairKey(int32(a), int32(b))
		if _, dup := t.merges[key]; !dup { // the first (lowest) rank wins
			t.merges[key] = merge{rank: int32(rank), id: int32(c)}
		}
	}
	t.unk = -1
	if m.UnkToken != nil {
		id, ok := m.Vocab[*m.UnkToken]
		if !ok {
			return fmt.Errorf("model.unk_token: %q not in model.vocab", *m.UnkToken)
		}
		t.unk = id
	}
	t.fuseUnk, t.ignoreMerges = m.FuseUnk, m.IgnoreMerges
	if m.ByteFallback {
		t.byteFallback = true
		for b := 0; b < 256; b++ {
			id, ok := m.Vocab[fmt.Sprintf("<0x%02X>", b)]
			if !ok {
				return fmt.Errorf("model.byte_fallback: vocab lacks <0x%02X>", b)
			}
			t.byteTokens[b] = int32(id)
		}
	}
	return nil
}

// parseMerges accepts both merge spellings: "a b" strings and ["a", "b"] pairs.
func parseMerges(raw json.RawMessage) ([][2]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var strs []string
	if err := json.Unmarshal(raw, &strs); err == nil {
		out := make([][2]string, len(strs))
		for i, s := range strs {
			a, b, ok := strings.Cut(s, " ")
			if !ok {
				return nil, fmt.Errorf("model.merges[%d]: %q is not \"a b\"", i, s)
			}
			out[i] = [2]string{a, b}
		}
		return out, nil
	}
	var pairs [][2]string
	if err := json.Unmarshal(raw, &pairs); err != nil {
		return nil, fmt.Errorf("model.merges: want strings \"a b\" or pairs [a, b]: %w", err)
	}
	return pairs, nil
}

func (t *Tokenizer) loadAdded(list []addedTokenJSON) error {
	t.special = map[int]bool{}
	for i, a := range list {
		if a.Content == "" {
			return fmt.Errorf("added_tokens[%d]: empty content", i)
		}
		if a.ID < 0 || a.ID > 1<<24 {
			return fmt.Errorf("added_tokens[%d]: id %d out of range", i, a.ID)
		}
		if a.SingleWord || a.LStrip || a.RStrip || a.Normalized {
			return fmt.Errorf("added_tokens[%d] %q: single_word, lstrip, rstrip and normalized must be false (not supported)", i, a.Content)
		}
		for a.ID >= len(t.tokens) {
			t.tokens = append(t.tokens, "")
		}
		t.tokens[a.ID] = a.Content
		t.vocab[a.Content] = a.ID
		t.added.add(a.Content, int32(a.ID))
		if a.Special {
			t.special[a.ID] = true
		}
	}
	return nil
}

func decodeComponent(raw json.RawMessage, field string) (*component, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var c component
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	return &c, nil
}

func (t *Tokenizer) loadNormalizer(raw json.RawMessage, field string) error {
	c, err := decodeComponent(raw, field)
	if err != nil || c == nil {
		return err
	}
	switch c.Type {
	case "Sequence":
		for i, sub := range c.Normalizers {
			if err := t.loadNormalizer(sub, fmt.Sprintf("%s.normalizers[%d]", field, i)); err != nil {
				return err
			}
		}
	case "NFC":
		t.normalizers = append(t.normalizers, normalizer{form: norm.NFC, unicode: true})
	case "NFD":
		t.normalizers = append(t.normalizers, normalizer{form: norm.NFD, unicode: true})
	case "NFKC":
		t.normalizers = append(t.normalizers, normalizer{form: norm.NFKC, unicode: true})
	case "NFKD":
		t.normalizers = append(t.normalizers, normalizer{form: norm.NFKD, unicode: true})
	case "Prepend":
		if c.Prepend == nil {
			return fmt.Errorf("%s.prepend: missing", field)
		}
		t.normalizers = append(t.normalizers, normalizer{prepend: *c.Prepend})
	case "Replace":
		if c.Pattern == nil || c.Pattern.String == nil || c.Content == nil {
			return fmt.Errorf("%s: Replace needs pattern.String and content (regex patterns are not supported)", field)
		}
		t.normalizers = append(t.normalizers, normalizer{from: *c.Pattern.String, to: *c.Content})
	default:
		return fmt.Errorf("%s.type: %q is not supported", field, c.Type)
	}
	return nil
}

func (t *Tokenizer) loadPreTokenizer(raw json.RawMessage, field string) error {
	c, err := decodeComponent(raw, field)
	if err != nil || c == nil {
		return err
	}
	switch c.Type {
	case "Sequence":
		for i, sub := range c.Pretokenizers {
			if err := t.loadPreTokenizer(sub, fmt.Sprintf("%s.pretokenizers[%d]", field, i)); err != nil {
				return err
			}
		}
	case "Split":
		if t.split != nil {
			return fmt.Errorf("%s: only one Split pre-tokenizer is supported", field)
		}
		if c.Pattern == nil || c.Pattern.Regex == nil {
			return fmt.Errorf("%s.pattern: want a Regex pattern", field)
		}
		if c.Behavior != "Isolated" || c.Invert {
			return fmt.Errorf("%s.behavior: %q (invert %v) is not supported (want Isolated)", field, c.Behavior, c.Invert)
		}
		sp, err := newSplitter(*c.Pattern.Regex)
		if err != nil {
			return fmt.Errorf("%s.pattern.Regex: %w", field, err)
		}
		t.split = sp
	case "ByteLevel":
		if c.AddPrefixSpace {
			return fmt.Errorf("%s.add_prefix_space: true is not supported", field)
		}
		if c.UseRegex == nil || *c.UseRegex {
			if t.split != nil {
				return fmt.Errorf("%s.use_regex: a second split pattern is not supported", field)
			}
			sp, err := newSplitter(gpt2Pattern)
			if err != nil {
				return err
			}
			t.split = sp
		}
		t.byteLevel = true
	default:
		return fmt.Errorf("%s.type: %q is not supported", field, c.Type)
	}
	return nil
}

func (t *Tokenizer) loadPostProcessor(raw json.RawMessage, field string) error {
	c, err := decodeComponent(raw, field)
	if err != nil || c == nil {
		return err
	}
	switch c.Type {
	case "Sequence":
		for i, sub := range c.Processors {
			if err := t.loadPostProcessor(sub, fmt.Sprintf("%s.processors[%d]", field, i)); err != nil {
				return err
			}
		}
	case "ByteLevel": // changes offsets only
	case "TemplateProcessing":
		seen := false
		for i, p := range c.Single {
			switch {
			case p.Sequence != nil:
				seen = true
			case p.SpecialToken != nil:
				st, ok := c.SpecialTokens[p.SpecialToken.ID]
				if !ok {
					return fmt.Errorf("%s.single[%d]: special token %q not in special_tokens", field, i, p.SpecialToken.ID)
				}
				ids := make([]int, len(st.IDs))
				for k, id := range st.IDs {
					if id < 0 || id >= len(t.tokens) {
						return fmt.Errorf("%s.special_tokens[%q]: id %d out of range", field, p.SpecialToken.ID, id)
					}
					ids[k] = id
				}
				if seen {
					t.suffix = append(t.suffix, ids...)
				} else {
					t.prefix = append(t.prefix, ids...)
				}
			default:
				return fmt.Errorf("%s.single[%d]: want SpecialToken or Sequence", field, i)
			}
		}
	default:
		return fmt.Errorf("%s.type: %q is not supported", field, c.Type)
	}
	return nil
}

func (t *Tokenizer) loadDecoder(raw json.RawMessage, field string) error {
	c, err := decodeComponent(raw, field)
	if err != nil || c == nil {
		return err
	}
	switch c.Type {
	case "Sequence":
		for i, sub := range c.Decoders {
			if err := t.loadDecoder(sub, fmt.Sprintf("%s.decoders[%d]", field, i)); err != nil {
				return err
			}
		}
	case "ByteLevel":
		t.decoders = append(t.decoders, decoder{kind: decByteLevel})
	case "ByteFallback":
		t.decoders = append(t.decoders, decoder{kind: decByteFallback})
	case "Fuse":
		t.decoders = append(t.decoders, decoder{kind: decFuse})
	case "Replace":
		if c.Pattern == nil || c.Pattern.String == nil || c.Content == nil {
			return fmt.Errorf("%s: Replace needs pattern.String and content", field)
		}
		t.decoders = append(t.decoders, decoder{kind: decReplace, from: *c.Pattern.String, to: *c.Content})
	case "Strip":
		if c.Content == nil || len([]rune(*c.Content)) != 1 {
			return fmt.Errorf("%s.content: want one character", field)
		}
		t.decoders = append(t.decoders, decoder{kind: decStrip, from: *c.Content, start: c.Start, stop: c.Stop})
	default:
		return fmt.Errorf("%s.type: %q is not supported", field, c.Type)
	}
	return nil
}

// loadConfig reads what kvfoot needs from tokenizer_config.json.
func (t *Tokenizer) loadConfig(data []byte) error {
	var cfg struct {
		ChatTemplate json.RawMessage `json:"chat_template"`
		BOS          json.RawMessage `json:"bos_token"`
		EOS          json.RawMessage `json:"eos_token"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return err
	}
	var err error
	if t.bosName, err = tokenName(cfg.BOS, "bos_token"); err != nil {
		return err
	}
	if t.eosName, err = tokenName(cfg.EOS, "eos_token"); err != nil {
		return err
	}
	for field, name := range map[string]string{"bos_token": t.bosName, "eos_token": t.eosName} {
		if name == "" {
			continue
		}
		id, ok := t.vocab[name]
		if !ok {
			return fmt.Errorf("%s: %q is not a token", field, name)
		}
		if field == "bos_token" {
			t.bos = id
		} else {
			t.eos = id
		}
	}
	if len(cfg.ChatTemplate) > 0 && string(cfg.ChatTemplate) != "null" {
		if err := json.Unmarshal(cfg.ChatTemplate, &t.chatTemplate); err != nil {
			return errors.New("chat_template: want a string (named template lists are not supported)")
		}
	}
	return nil
}

// tokenName reads a token given as a string or as an AddedToken object.
func tokenName(raw json.RawMessage, field string) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var obj struct {
		Content string `json:"content"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return "", fmt.Errorf("%s: want a string or {\"content\": ...}", field)
	}
	return obj.Content, nil
}
