package tokenizer

import (
	"strings"
	"unicode/utf8"
)

type decoderKind int

const (
	decByteLevel decoderKind = iota
	decByteFallback
	decFuse
	decReplace
	decStrip
)

// decoder is one step of the decoder chain. Like the tokenizers library, each
// step maps the list of token strings to a new list.
type decoder struct {
	kind        decoderKind
	from, to    string
	start, stop int
}

// Decode returns the text of ids, special tokens included. Unknown ids are
// skipped, as in the tokenizers library.
func (t *Tokenizer) Decode(ids []int) string { return t.decode(ids, false) }

// DecodeSkipSpecial returns the text of ids without the special tokens.
func (t *Tokenizer) DecodeSkipSpecial(ids []int) string { return t.decode(ids, true) }

func (t *Tokenizer) decode(ids []int, skipSpecial bool) string {
	toks := make([]string, 0, len(ids))
	for _, id := range ids {
		if id < 0 || id >= len(t.tokens) || t.tokens[id] == "" || (skipSpecial && t.special[id]) {
			continue
		}
		toks = append(toks, t.tokens[id])
	}
	if len(t.decoders) == 0 {
		return strings.Join(toks, " ")
	}
	for _, d := range t.decoders {
		toks = d.apply(toks)
	}
	return strings.Join(toks, "")
}

func (d decoder) apply(toks []string) []string {
	switch d.kind {
	case decByteLevel:
		var raw []byte
		for _, tok := range toks {
			raw = byteLevelDecode(raw, tok)
		}
		return []string{string(appendLossy(nil, raw))}
	case decByteFallback:
		return byteFallback(toks)
	case decFuse:
		return []string{strings.Join(toks, "")}
	case decReplace:
		for i, tok := range toks {
			toks[i] = strings.ReplaceAll(tok, d.from, d.to)
		}
	case decStrip:
		for i, tok := range toks {
			toks[i] = d.strip(tok)
		}
	}
	return toks
}

// strip removes up to start leading and stop trailing copies of the content rune.
func (d decoder) strip(tok string) string {
	for k := 0; k < d.start && strings.HasPrefix(tok, d.from); k++ {
		tok = tok[len(d.from):]
	}
	for k := 0; k < d.stop && strings.HasSuffix(tok, d.from); k++ {
		tok = tok[:len(tok)-len(d.from)]
	}
	return tok
}

// byteFallback turns runs of <0xNN> tokens into text: the run's bytes when they
// are valid UTF-8, else one U+FFFD per byte (the library's rule).
func byteFallback(toks []string) []string {
	out := make([]string, 0, len(toks))
	var run []byte
	flush := func() {
		if len(run) == 0 {
			return
		}
		if utf8.Valid(run) {
			out = append(out, string(run))
		} else {
			out = append(out, strings.Repeat("\uFFFD", len(run)))
		}
		run = run[:0]
	}
	for _, tok := range toks {
		if b, ok := fallbackByte(tok); ok {
			run = append(run, b)
			continue
		}
		flush()
		out = append(out, tok)
	}
	flush()
	return out
}

// fallbackByte parses a token spelled <0xNN>.
func fallbackByte(tok string) (byte, bool) {
	if len(tok) != 6 || !strings.HasPrefix(tok, "<0x") || tok[5] != '>' {
		return 0, false
	}
	var v byte
	for _, c := range []byte(tok[3:5]) {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | (c - '0')
		case c >= 'A' && c <= 'F':
			v = v<<4 | (c - 'A' + 10)
		case c >= 'a' && c <= 'f':
			v = v<<4 | (c - 'a' + 10)
		default:
			return 0, false
		}
	}
	return v, true
}

// Stream decodes ids one at a time for streaming output. Next returns only text
// that is final: a token that ends inside a multi-byte character is held back
// until the character completes, so the pieces never split a rune, and their
// concatenation equals Decode of all the ids. It follows the tokenizers
// library's DecodeStream: decode a short window of recent ids and emit what it
// adds beyond the window's previous decoding.
type Stream struct {
	t           *Tokenizer
	skipSpecial bool
	ids         []int  // the window: ids from the previous emit's start
	prefix      string // decoding of ids[:prefixIdx]
	prefixIdx   int
}

// NewStream returns a streaming decoder; skipSpecial drops special tokens.
func (t *Tokenizer) NewStream(skipSpecial bool) *Stream {
	return &Stream{t: t, skipSpecial: skipSpecial}
}

// Next adds one id and returns the text it completes ("" when none yet).
func (s *Stream) Next(id int) string {
	s.ids = append(s.ids, id)
	text := s.t.decode(s.ids, s.skipSpecial)
	if len(text) <= len(s.prefix) || strings.HasSuffix(text, "\uFFFD") || !strings.HasPrefix(text, s.prefix) {
		return ""
	}
	out := text[len(s.prefix):]
	n := len(s.ids) - s.prefixIdx
	s.ids = append(s.ids[:0], s.ids[s.prefixIdx:]...)
	s.prefix = s.t.decode(s.ids, s.skipSpecial)
	s.prefixIdx = n
	return out
}

// Flush returns what is held back (an incomplete character comes out as
// U+FFFD, as Decode would write it) and resets the stream.
func (s *Stream) Flush() string {
	text := s.t.decode(s.ids, s.skipSpecial)
	out := ""
	if len(text) > len(s.prefix) && strings.HasPrefix(text, s.prefix) {
		out = text[len(s.prefix):]
	}
	*s = Stream{t: s.t, skipSpecial: s.skipSpecial}
	return out
}
