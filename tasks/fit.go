package tasks

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// How exact lengths are guaranteed.
//
// A layout has fixed parts (instruction, needles or records, questions, answers) and
// one variable part whose size is a token count k: corpus filler (the first k tokens
// of a corpus passage, with the fixed items inserted at line starts at spread depths)
// or, for tasks without corpus filler, a run of whole task units (JSON entries,
// demonstrations) closed by one pad unit that absorbs the remainder. fit starts from
// k = L − (tokens of the fixed parts, each encoded alone), renders the text, encodes
// the WHOLE text and compares with L. Byte-level BPE can merge across the seams, so
// the count may be off by a few tokens; k moves by the difference and the text is
// rendered and counted again. If k would revisit a value (the count oscillates around
// L), the filler switches to another corpus passage (another variant) and the search
// continues. A text is returned only when Encode(text) has exactly L tokens; after 64
// renders without success fit returns an error, which no tokenizer tried so far hits.

// layout is an instance before its variable part is sized.
type layout struct {
	head string // instruction before the context

	haystack bool     // the body is corpus filler with items inserted
	items    []string // inserted in order at line starts; each ends with "\n"
	depths   []float64

	units *units // the body is whole task units (when not haystack)

	queries []query
	stop    string // generation stops at this string; answers are followed by "\n"
}

type query struct {
	question    string // the line after the context
	prefix      string // answer prefix: the end of an evaluation prompt
	answer      string // gold completion (without the terminating "\n")
	golds       []string
	scorePrefix string // prepended to a model's output before scoring
	maxNew      int
}

// units is a body made of whole units and a final pad unit.
type units struct {
	open, close string
	unit        func(i int) string               // i-th filler unit, deterministic
	special     []string                         // units the questions are about, inserted at depths
	depths      []float64                        // depth of each special unit, ascending
	pad         func(tokens, variant int) string // a last unit of about tokens tokens
	minPad      int
	counts      []int // token counts of unit(i), cached
}

// spread returns n depths in [0, 1), uniformly spread: depth i is drawn uniformly in
// the i-th of n equal strata, so that targets cover the whole context.
func (g *gen) spread(n int) []float64 {
	d := make([]float64, n)
	for i := range d {
		d[i] = (float64(i) + g.rng.Float64()) / float64(n)
	}
	return d
}

func (g *gen) count(s string) int {
	if s == "" {
		return 0
	}
	return len(g.opts.Tokenizer.Encode(s))
}

// tail renders the questions (and, for training, the answers) after the context and
// returns the byte ranges of the answers, relative to the tail's start.
func (lay *layout) tail(q int, train bool) (string, [][2]int) {
	var b strings.Builder
	var ranges [][2]int
	for i := 0; i < q; i++ {
		qu := lay.queries[i]
		b.WriteString("\n")
		b.WriteString(qu.question)
		b.WriteString("\n")
		b.WriteString(qu.prefix)
		if !train {
			break
		}
		start := b.Len()
		b.WriteString(qu.answer)
		b.WriteString("\n")
		ranges = append(ranges, [2]int{start, b.Len()})
	}
	return b.String(), ranges
}

// render builds the text for a body of size k.
func (g *gen) render(lay *layout, k, variant int, tail string) (string, error) {
	var b strings.Builder
	b.WriteString(lay.head)
	if lay.haystack {
		f, err := g.filler(k, variant)
		if err != nil {
			return "", err
		}
		at := 0
		for i, item := range lay.items {
			cut := at + lineStart(f[at:], int(lay.depths[i]*float64(len(f)))-at)
			b.WriteString(f[at:cut])
			if cut > 0 && f[cut-1] != '\n' {
				b.WriteString("\n")
			}
			b.WriteString(item)
			at = cut
		}
		b.WriteString(f[at:])
	} else {
		b.WriteString(g.unitBody(lay.units, k, variant))
	}
	b.WriteString(tail)
	return b.String(), nil
}

// lineStart returns the first offset ≥ want in s that starts a line (or len(s)).
func lineStart(s string, want int) int {
	want = max(0, min(want, len(s)))
	if want == 0 || s[want-1] == '\n' {
		return want
	}
	if j := strings.IndexByte(s[want:], '\n'); j >= 0 {
		return want + j + 1
	}
	return len(s)
}

func (g *gen) unitBody(u *units, k, variant int) string {
	used := 0
	for _, s := range u.special {
		used += g.count(s)
	}
	var fill []string
	for i := 0; ; i++ {
		if i == len(u.counts) {
			u.counts = append(u.counts, g.count(u.unit(i)))
		}
		if used+u.counts[i]+u.minPad > k {
			break
		}
		used += u.counts[i]
		fill = append(fill, u.unit(i))
	}
	var b strings.Builder
	b.WriteString(u.open)
	s := 0
	for i, f := range fill {
		for s < len(u.special) && int(u.depths[s]*float64(len(fill))) <= i {
			b.WriteString(u.special[s])
			s++
		}
		b.WriteString(f)
	}
	for ; s < len(u.special); s++ {
		b.WriteString(u.special[s])
	}
	b.WriteString(u.pad(k-used, variant))
	b.WriteString(u.close)
	return b.String()
}

// fit renders the layout with q questions to exactly g.length tokens and returns the
// text and the byte ranges of the answers (training only).
func (g *gen) fit(lay *layout, q int, train bool) (string, [][2]int, error) {
	L := g.length
	tail, ranges := lay.tail(q, train)
	fixed := g.count(lay.head) + g.count(tail)
	minBody := 0
	if lay.haystack {
		for _, it := range lay.items {
			fixed += g.count(it)
		}
		if len(lay.items) > 0 || len(lay.queries) > 0 {
			minBody = 16 // some haystack around the needles
		} else {
			minBody = 1
		}
	} else {
		fixed += g.count(lay.units.open) + g.count(lay.units.close)
		for _, s := range lay.units.special {
			minBody += g.count(s)
		}
		minBody += lay.units.minPad
	}
	if fixed+minBody > L {
		return "", nil, fmt.Errorf("length %d is too short: with %d question(s) the fixed parts take %d tokens and the body at least %d", L, max(q, 1), fixed, minBody)
	}
	k, variant := L-fixed, 0
	seen := map[int]bool{}
	for attempt := 0; attempt < 64; attempt++ {
		text, err := g.render(lay, k, variant, tail)
		if err != nil {
			return "", nil, err
		}
		c := len(g.opts.Tokenizer.Encode(text))
		if c == L {
			off := len(text) - len(tail)
			abs := make([][2]int, len(ranges))
			for i, r := range ranges {
				abs[i] = [2]int{r[0] + off, r[1] + off}
			}
			return text, abs, nil
		}
		seen[k] = true
		next := k + L - c
		if seen[next] || next < minBody {
			variant++
			seen = map[int]bool{}
			continue
		}
		k = next
	}
	return "", nil, fmt.Errorf("%w: %d tokens in 64 attempts", errNoExactFit, L)
}

// errNoExactFit reports a layout that no filler size renders to exactly the length;
// the instance is then drawn again with a derived seed.
var errNoExactFit = errors.New("could not render exactly (the tokenizer merges too much across seams)")

// answerSpans maps byte ranges of text to [start, end) ranges of the token ids that
// overlap them.
func answerSpans(tok Tokenizer, text string, ids []int, ranges [][2]int) ([][2]int, error) {
	if len(ranges) == 0 {
		return nil, nil
	}
	ends, ok := tokenEnds(tok, text, ids)
	if !ok {
		// Decoding alone does not give the text's bytes (a SentencePiece decoder strips
		// a leading space, for one); measure every prefix instead.
		for i := range ids {
			ends[i] = len(tok.Decode(ids[:i+1]))
		}
		if ends[len(ends)-1] != len(text) {
			return nil, fmt.Errorf("tokenizer does not round-trip: %d tokens decode to %d bytes, text has %d", len(ids), ends[len(ends)-1], len(text))
		}
	}
	spans := make([][2]int, 0, len(ranges))
	for _, r := range ranges {
		s := firstEndAfter(ends, r[0])
		e := firstEndAfter(ends, r[1]-1) + 1
		spans = append(spans, [2]int{s, e})
	}
	return spans, nil
}

// tokenEnds returns the byte offset where each token ends, from the tokens decoded
// one by one. A token holding part of a multi-byte character does not decode alone;
// it is decoded together with the following tokens until the group is valid text,
// and every token of the group is given the group's end.
func tokenEnds(tok Tokenizer, text string, ids []int) ([]int, bool) {
	ends := make([]int, len(ids))
	off := 0
	for i := 0; i < len(ids); {
		j := i + 1
		for ; j <= min(len(ids), i+8); j++ {
			p := tok.Decode(ids[i:j])
			if utf8.ValidString(p) && strings.HasPrefix(text[off:], p) {
				off += len(p)
				break
			}
		}
		if j > min(len(ids), i+8) {
			return ends, false
		}
		for ; i < j; i++ {
			ends[i] = off
		}
	}
	return ends, off == len(text)
}

// firstEndAfter returns the index of the token containing byte b.
func firstEndAfter(ends []int, b int) int {
	lo, hi := 0, len(ends)-1
	for lo < hi {
		m := (lo + hi) / 2
		if ends[m] > b {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return lo
}
