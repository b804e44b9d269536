package tokenizer

import (
	"unicode"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
)

// The split patterns of the byte-level tokenizers kvfoot knows by heart. They
// differ only in how many digits one pre-token may hold.
const (
	llama3Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	qwen2Pattern  = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	// gpt2Pattern is what a ByteLevel pre-tokenizer with use_regex applies.
	gpt2Pattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
)

// splitter cuts a normalized segment into pre-tokens, calling emit with the
// byte range of each in order; the ranges tile s.
type splitter interface {
	split(s string, emit func(a, b int))
}

// newSplitter returns the hand-written scanner for a known pattern and a regexp2
// (backtracking, lookahead-capable) matcher for any other.
func newSplitter(pattern string) (splitter, error) {
	switch pattern {
	case llama3Pattern:
		return scanner{maxDigits: 3}, nil
	case qwen2Pattern:
		return scanner{maxDigits: 1}, nil
	}
	re, err := regexp2.Compile(pattern, regexp2.Unicode)
	if err != nil {
		return nil, err
	}
	return &regexSplitter{re: re}, nil
}

// Rune classes of the split patterns.
const (
	clLetter = 1 << iota
	clNumber
	clSpace   // \s: Unicode White_Space
	clNewline // \r or \n (also clSpace)
	clOther   // [^\s\p{L}\p{N}]
)

var asciiClass [utf8.RuneSelf]uint8

func init() {
	for c := 0; c < utf8.RuneSelf; c++ {
		asciiClass[c] = classOf(rune(c))
	}
}

func classOf(r rune) uint8 {
	switch {
	case r == '\r' || r == '\n':
		return clSpace | clNewline
	case unicode.IsLetter(r):
		return clLetter
	case unicode.IsNumber(r):
		return clNumber
	case unicode.IsSpace(r):
		return clSpace
	}
	return clOther
}

// runeAt decodes the rune at s[i] and its class; s is valid UTF-8.
func runeAt(s string, i int) (rune, int, uint8) {
	if c := s[i]; c < utf8.RuneSelf {
		return rune(c), 1, asciiClass[c]
	}
	r, w := utf8.DecodeRuneInString(s[i:])
	return r, w, classOf(r)
}

// scanner matches the Llama 3 / Qwen 2 split pattern without a regex engine. It
// tries the pattern's alternatives in order at i, with the same backtracking
// outcome as a regex engine:
//
//	1 (?i:'s|'t|'re|'ve|'m|'ll|'d)
//	2 [^\r\n\p{L}\p{N}]?\p{L}+
//	3 \p{N}{1,maxDigits}
//	4 ' '?[^\s\p{L}\p{N}]+[\r\n]*
//	5 \s*[\r\n]+      (ends after the last newline of the whitespace run)
//	6 \s+(?!\S)       (the run, less its last rune when text follows)
//	7 \s+
type scanner struct{ maxDigits int }

func (sc scanner) split(s string, emit func(a, b int)) {
	for i := 0; i < len(s); {
		j := sc.next(s, i)
		emit(i, j)
		i = j
	}
}

// next returns the end of the pre-token that starts at i < len(s).
func (sc scanner) next(s string, i int) int {
	r0, w0, c0 := runeAt(s, i)
	j := i + w0
	if r0 == '\'' && j < len(s) {
		if n := contraction(s[j:]); n > 0 {
			return j + n
		}
	}
	switch {
	case c0&clLetter != 0:
		return skipClass(s, j, clLetter)
	case c0&clNumber != 0:
		for k := 1; k < sc.maxDigits && j < len(s); k++ {
			_, w, c := runeAt(s, j)
			if c&clNumber == 0 {
				break
			}
			j += w
		}
		return j
	}
	// Rule 2 with its optional leading rune (anything but \r, \n, L, N).
	if c0&clNewline == 0 && j < len(s) {
		if _, _, c1 := runeAt(s, j); c1&clLetter != 0 {
			return skipClass(s, j, clLetter)
		}
	}
	if c0&clOther != 0 {
		return skipClass(s, skipClass(s, j, clOther), clNewline)
	}
	if r0 == ' ' && j < len(s) {
		if _, _, c1 := runeAt(s, j); c1&clOther != 0 {
			return skipClass(s, skipClass(s, j, clOther), clNewline)
		}
	}
	// c0 is whitespace: rules 5-7 on the run [i, end).
	end, lastNL, lastW := i, -1, 0
	for end < len(s) {
		_, w, c := runeAt(s, end)
		if c&clSpace == 0 {
			break
		}
		if c&clNewline != 0 {
			lastNL = end + w
		}
		end, lastW = end+w, w
	}
	switch {
	case lastNL >= 0:
		return lastNL
	case end == len(s) || end-lastW == i:
		return end
	}
	return end - lastW
}

// skipClass returns the end of the run of runes of class cl that starts at j.
func skipClass(s string, j int, cl uint8) int {
	for j < len(s) {
		_, w, c := runeAt(s, j)
		if c&cl == 0 {
			break
		}
		j += w
	}
	return j
}

// contraction returns the length of the contraction suffix at the start of s
// ("s", "t", "re", "ve", "m", "ll", "d", any case), or 0. Case-insensitive
// matching folds U+017F (long s) to s, as Unicode case folding does.
func contraction(s string) int {
	r, w := utf8.DecodeRuneInString(s)
	switch unicode.ToLower(r) {
	case 's', 't', 'm', 'd', 'ſ':
		return w
	case 'r', 'v', 'l':
		if len(s) > w {
			r2, w2 := utf8.DecodeRuneInString(s[w:])
			want := 'e'
			if unicode.ToLower(r) == 'l' {
				want = 'l'
			}
			if unicode.ToLower(r2) == want {
				return w + w2
			}
		}
	}
	return 0
}

// regexSplitter splits with an arbitrary pattern (behavior "Isolated": matches
// and the gaps between them are pre-tokens).
type regexSplitter struct {
	re *regexp2.Regexp
}

func (rs *regexSplitter) split(s string, emit func(a, b int)) {
	// regexp2 reports rune offsets; walk them forward to byte offsets.
	pos, rpos := 0, 0 // byte and rune offset of the end of the last piece
	toByte := func(r int) int {
		b := pos
		for n := rpos; n < r; n++ {
			_, w := utf8.DecodeRuneInString(s[b:])
			b += w
		}
		return b
	}
	m, err := rs.re.FindStringMatch(s)
	for err == nil && m != nil {
		if m.Length > 0 {
			a := toByte(m.Index)
			if a > pos {
				emit(pos, a)
			}
			pos, rpos = a, m.Index
			b := toByte(m.Index + m.Length)
			emit(a, b)
			pos, rpos = b, m.Index+m.Length
		}
		m, err = rs.re.FindNextMatch(m)
	}
	if pos < len(s) {
		emit(pos, len(s))
	}
}
