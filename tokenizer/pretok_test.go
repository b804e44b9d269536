package tokenizer

import (
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dlclark/regexp2"
)

// regexPieces splits s with regexp2, an independent backtracking engine with
// lookahead, as the reference for the hand-written scanner.
func regexPieces(tb testing.TB, pattern, s string) []string {
	tb.Helper()
	rs := &regexSplitter{re: regexp2.MustCompile(pattern, regexp2.Unicode)}
	var out []string
	rs.split(s, func(a, b int) { out = append(out, s[a:b]) })
	return out
}

func scannerPieces(sc scanner, s string) []string {
	var out []string
	sc.split(s, func(a, b int) { out = append(out, s[a:b]) })
	return out
}

// randomText draws runes from classes that exercise every alternative of the
// split pattern: letters of several scripts, digits (ASCII and not), spaces of
// several kinds, newlines, punctuation, apostrophes for contractions, marks.
func randomText(r *rand.Rand, n int) string {
	alphabet := []string{
		"a", "b", "Z", "s", "S", "t", "T", "r", "e", "v", "l", "L", "m", "d", "D",
		"'", "'", "’", " ", " ", " ", "  ", "\t", "\n", "\r", "\r\n", "\u00a0", "\u3000", "\u2028", "\v", "\f", "\u0085",
		"0", "1", "9", "٣", "²", "Ⅻ", "½", ".", ",", "!", "?", "(", "<", "|", "-", "_", "$", "€", "🎉", "👍🏽", "\u200d",
		"é", "e\u0301", "ß", "日", "本", "語", "한", "ü", "Ω", "ж", "\u0301", "\ufffd", "\x00", "\x1f",
	}
	var b strings.Builder
	for range n {
		b.WriteString(alphabet[r.IntN(len(alphabet))])
	}
	return b.String()
}

func TestScannerMatchesRegexp2(t *testing.T) {
	cases := []struct {
		name    string
		pattern string
		sc      scanner
	}{
		{"llama3", llama3Pattern, scanner{maxDigits: 3}},
		{"qwen2", qwen2Pattern, scanner{maxDigits: 1}},
	}
	var texts []string
	for _, fam := range families {
		for _, r := range readReferences(t, filepath.Join(testdataT, fam, "encodings.jsonl")) {
			texts = append(texts, r.Text)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 3000 {
		texts = append(texts, randomText(rng, 1+rng.IntN(40)))
	}
	texts = append(texts, "don't I'LL we've they'Re", "x   \n\n  y", "a \t\nb", "  ", " \n", "123456789")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, s := range texts {
				want := regexPieces(t, c.pattern, s)
				if got := scannerPieces(c.sc, s); !slices.Equal(got, want) {
					t.Fatalf("split(%q)\n got %q\nwant %q", s, got, want)
				}
			}
		})
	}
}

// TestContractionCaseFold: the reference (Oniguruma) matches (?i:'s) with full
// Unicode simple case folding, under which U+017F LATIN SMALL LETTER LONG S folds
// to "s" (CaseFolding.txt: 017F; C; 0073). regexp2 does not fold it, so this case
// is checked here rather than against regexp2.
func TestContractionCaseFold(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"it'ſ", []string{"it", "'ſ"}},
		{"it'Sa", []string{"it", "'S", "a"}},
		{"we'LL", []string{"we", "'LL"}},
		{"x'Re", []string{"x", "'Re"}},
		{"x'rx", []string{"x", "'rx"}},
	} {
		if got := scannerPieces(scanner{maxDigits: 3}, c.in); !slices.Equal(got, c.want) {
			t.Errorf("split(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func FuzzScanner(f *testing.F) {
	f.Add("Hello, world! It's 2024.\n\n  foo\tbar")
	f.Add("日本語 🎉\r\n 12345")
	re3 := regexp2.MustCompile(llama3Pattern, regexp2.Unicode)
	f.Fuzz(func(t *testing.T, s string) {
		s = strings.ReplaceAll(validUTF8(s), "ſ", "s") // see TestContractionCaseFold
		var want []string
		(&regexSplitter{re: re3}).split(s, func(a, b int) { want = append(want, s[a:b]) })
		if got := scannerPieces(scanner{maxDigits: 3}, s); !slices.Equal(got, want) {
			t.Fatalf("split(%q)\n got %q\nwant %q", s, got, want)
		}
	})
}

// TestMergeScanEqualsHeap checks the short-word merge loop against the
// priority-queue one that long words use, on random words.
func TestMergeScanEqualsHeap(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, fam := range families {
		tok := family(t, fam)
		for range 2000 {
			w := strings.Map(func(r rune) rune {
				if r == ' ' && !tok.byteLevel {
					return '▁'
				}
				return r
			}, randomText(rng, 1+rng.IntN(30)))
			a := tok.mergeScan(tok.initialSymbols(nil, w))
			b := tok.mergeHeap(tok.initialSymbols(nil, w))
			var ga, gb []int32
			for _, s := range a {
				ga = append(ga, s.id)
			}
			for _, s := range b {
				if s.size > 0 {
					gb = append(gb, s.id)
				}
			}
			if !slices.Equal(ga, gb) {
				t.Fatalf("%s %q: scan %v heap %v", fam, w, ga, gb)
			}
		}
	}
}
