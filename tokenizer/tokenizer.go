// Package tokenizer reads Hugging Face tokenizer.json files (byte-level BPE as in
// Llama 3 and Qwen 2/3, SentencePiece-style BPE with byte fallback as in Llama 2
// and Mistral) and encodes and decodes exactly as the tokenizers library does. It
// also renders chat templates and trains byte-level BPE vocabularies.
package tokenizer

import (
	"strings"
	"sync"

	"golang.org/x/text/unicode/norm"
)

// Tokenizer encodes text to token ids and back. It is safe for concurrent use.
type Tokenizer struct {
	vocab map[string]int // token text -> id, added tokens included
	// rawVocab maps the raw bytes of a byte-level model's tokens to ids.
	rawVocab map[string]int
	tokens   []string // id -> token text ("" for holes)
	merges   map[uint64]merge
	added    addedSet
	// special marks added tokens flagged special (skipped by DecodeSkipSpecial).
	special map[int]bool

	unk                   int
	fuseUnk, ignoreMerges bool
	byteFallback          bool
	// byteTokens holds, per byte, the initial symbol of a byte-level model or the
	// <0xNN> token of a byte-fallback model.
	byteTokens [256]int32

	normalizers []normalizer
	split       splitter // nil: the whole segment is one word
	// wordBreaks: no token holds "▁" after another character, so a segment may
	// be cut before each such "▁" without changing the BPE result. It turns a
	// SentencePiece segment (a whole text) into cacheable words.
	wordBreaks bool
	byteLevel  bool
	decoders   []decoder

	prefix, suffix   []int // post-processor template around the sequence
	bos, eos         int
	bosName, eosName string
	chatTemplate     string
	chat             chatCompiled

	cache *wordCache
}

type merge struct{ rank, id int32 }

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// normalizer is one step of the normalizer chain.
type normalizer struct {
	unicode  bool
	form     norm.Form
	prepend  string
	from, to string
}

func (n normalizer) apply(s string) string {
	switch {
	case n.unicode:
		if n.form.IsNormalString(s) {
			return s
		}
		return n.form.String(s)
	case n.prepend != "":
		if s == "" {
			return s
		}
		return n.prepend + s
	}
	return strings.ReplaceAll(s, n.from, n.to)
}

// VocabSize returns one more than the largest token id.
func (t *Tokenizer) VocabSize() int { return len(t.tokens) }

// BOS returns the beginning-of-sequence id, or -1 when the tokenizer has none.
func (t *Tokenizer) BOS() int { return t.bos }

// EOS returns the end-of-sequence id named by tokenizer_config.json (for chat
// models the end-of-turn token), or -1 when unknown.
func (t *Tokenizer) EOS() int { return t.eos }

// TokenID returns the id of a token given in its vocabulary spelling.
func (t *Tokenizer) TokenID(tok string) (int, bool) {
	id, ok := t.vocab[tok]
	return id, ok
}

// Token returns the vocabulary spelling of id, or "" and false when id is unused.
func (t *Tokenizer) Token(id int) (string, bool) {
	if id < 0 || id >= len(t.tokens) || t.tokens[id] == "" {
		return "", false
	}
	return t.tokens[id], true
}

// IsSpecial reports whether id is an added token marked special.
func (t *Tokenizer) IsSpecial(id int) bool { return t.special[id] }

// ChatTemplate returns the Jinja chat template (from chat_template.jinja, else
// tokenizer_config.json), or "".
func (t *Tokenizer) ChatTemplate() string { return t.chatTemplate }

// Encode returns the ids of text without the post-processor's special tokens.
// Added and special tokens written in the text are recognised, as in the
// tokenizers library. Invalid UTF-8 is first replaced by U+FFFD per maximal
// ill-formed subsequence, as Python's decode(errors="replace") does.
func (t *Tokenizer) Encode(text string) []int {
	return t.AppendEncode(nil, text, false)
}

// EncodeWithSpecial is Encode plus the post-processor's template (such as BOS).
func (t *Tokenizer) EncodeWithSpecial(text string) []int {
	return t.AppendEncode(nil, text, true)
}

// AppendEncode appends the ids of text to dst; addSpecial applies the
// post-processor template.
func (t *Tokenizer) AppendEncode(dst []int, text string, addSpecial bool) []int {
	text = validUTF8(text)
	if addSpecial {
		dst = append(dst, t.prefix...)
	}
	for len(text) > 0 {
		a, b, id := t.added.find(text)
		if a < 0 {
			dst = t.encodeSegment(dst, text)
			break
		}
		dst = t.encodeSegment(dst, text[:a])
		dst = append(dst, int(id))
		text = text[b:]
	}
	if addSpecial {
		dst = append(dst, t.suffix...)
	}
	return dst
}

// encodeSegment encodes text that holds no added token.
func (t *Tokenizer) encodeSegment(dst []int, s string) []int {
	for _, n := range t.normalizers {
		s = n.apply(s)
	}
	if s == "" {
		return dst
	}
	if t.split == nil {
		if !t.wordBreaks {
			return t.encodeWord(dst, s)
		}
		start := 0
		for i := 1; i < len(s); {
			k := strings.Index(s[i:], metaSpace)
			if k < 0 {
				break
			}
			i += k
			if i < len(metaSpace) || s[i-len(metaSpace):i] != metaSpace {
				dst = t.encodeWord(dst, s[start:i])
				start = i
			}
			i += len(metaSpace)
		}
		return t.encodeWord(dst, s[start:])
	}
	t.split.split(s, func(a, b int) {
		dst = t.encodeWord(dst, s[a:b])
	})
	return dst
}

// encodeWord appends the BPE encoding of one pre-token, through the cache.
func (t *Tokenizer) encodeWord(dst []int, w string) []int {
	if len(w) > maxCachedWord {
		return t.word(dst, w)
	}
	if ids, ok := t.cache.get(w); ok {
		return append(dst, ids...)
	}
	n := len(dst)
	dst = t.word(dst, w)
	t.cache.put(w, dst[n:])
	return dst
}

// word appends the encoding of one pre-token: the token itself when the model
// ignores merges for in-vocabulary words, else its BPE.
func (t *Tokenizer) word(dst []int, w string) []int {
	if t.ignoreMerges {
		v := t.vocab
		if t.byteLevel {
			v = t.rawVocab
		}
		if id, ok := v[w]; ok {
			return append(dst, id)
		}
	}
	return t.bpe(dst, w)
}

// metaSpace is SentencePiece's visible space.
const metaSpace = "\u2581"

const maxCachedWord = 256

// wordCache memoises the BPE of frequent words. It is cleared when full rather
// than evicting piecemeal: the working set of a text refills it quickly.
type wordCache struct {
	mu sync.Mutex
	m  map[string][]int
}

const wordCacheSize = 1 << 16

func newWordCache() *wordCache { return &wordCache{m: make(map[string][]int, 1024)} }

func (c *wordCache) get(w string) ([]int, bool) {
	c.mu.Lock()
	ids, ok := c.m[w]
	c.mu.Unlock()
	return ids, ok
}

func (c *wordCache) put(w string, ids []int) {
	cp := append([]int(nil), ids...)
	c.mu.Lock()
	if len(c.m) >= wordCacheSize {
		clear(c.m)
	}
	c.m[strings.Clone(w)] = cp
	c.mu.Unlock()
}

// addedSet finds added tokens in text: leftmost match, longest at that position,
// as the tokenizers library's Aho-Corasick (leftmost-longest) does. Candidates
// are indexed by their first two bytes, since texts such as HTML are full of
// '<' while added tokens mostly start with "<|".
type addedSet struct {
	first [256]bool
	// byPrefix lists, per leading byte pair (or single byte for one-byte
	// tokens, keyed with 0x100 set), the tokens longest first.
	byPrefix map[uint32][]addedTok
}

type addedTok struct {
	text string
	id   int32
}

func prefixKey(s string) uint32 {
	if len(s) == 1 {
		return 0x10000 | uint32(s[0])
	}
	return uint32(s[0])<<8 | uint32(s[1])
}

func (a *addedSet) add(text string, id int32) {
	if a.byPrefix == nil {
		a.byPrefix = map[uint32][]addedTok{}
	}
	a.first[text[0]] = true
	k := prefixKey(text)
	list := append(a.byPrefix[k], addedTok{text, id})
	for i := len(list) - 1; i > 0 && len(list[i].text) > len(list[i-1].text); i-- {
		list[i], list[i-1] = list[i-1], list[i]
	}
	a.byPrefix[k] = list
}

// find returns the byte range and id of the first added token in s, or start = -1.
func (a *addedSet) find(s string) (start, end int, id int32) {
	if a.byPrefix == nil {
		return -1, -1, 0
	}
	for i := 0; i < len(s); i++ {
		if !a.first[s[i]] {
			continue
		}
		if i+1 < len(s) {
			for _, tok := range a.byPrefix[prefixKey(s[i:i+2])] {
				if strings.HasPrefix(s[i:], tok.text) {
					return i, i + len(tok.text), tok.id
				}
			}
		}
		if list := a.byPrefix[prefixKey(s[i:i+1])]; len(list) > 0 {
			return i, i + 1, list[0].id
		}
	}
	return -1, -1, 0
}
