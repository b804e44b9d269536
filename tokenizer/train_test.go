package tokenizer

import (
	"slices"
	"strings"
	"testing"
)

// TestTrainHandWorked checks the merges on a corpus small enough to work out by
// hand: "low" ×5, " lower" ×2, " newest" ×6, " widest" ×3 after splitting.
func TestTrainHandWorked(t *testing.T) {
	tr := NewTrainer()
	tr.Add(strings.Repeat("low ", 5) + strings.Repeat("lower ", 2) + strings.Repeat("newest ", 6) + strings.Repeat("widest ", 3))
	js, _, err := tr.Train(256+1+4, []string{"<s>"})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := Parse(js, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Pre-tokens: "low" 1, " low" 4, " lower" 2, " newest" 6, " widest" 3 and
	// a final " " 1. Pair counts: Ġl 6, lo 7, ow 7, we 8, er 2, Ġn 6, ne 6,
	// ew 6, es 9, st 9, Ġw 3, wi 3, id 3, de 3.
	// 1. "e s" 9 (ties "s t" 9; the smaller pair wins).
	// 2. "es t" 9.
	// 3. "we" is now 2 (the e of newest went into est): "l o" 7 ties "o w" 7
	//    and is smaller.
	// 4. "lo w" 7.
	want := []string{"e s", "es t", "l o", "lo w"}
	if got := mergeList(tok); !slices.Equal(got, want) {
		t.Fatalf("merges %q, want %q", got, want)
	}
	if id, _ := tok.TokenID("<s>"); id != 260 || tok.BOS() != 260 {
		t.Fatalf("<s> id %d, BOS %d, want 260", id, tok.BOS())
	}
}

// mergeList lists a tokenizer's merges in rank order as "a b".
func mergeList(t *Tokenizer) []string {
	out := make([]string, len(t.merges))
	for k, m := range t.merges {
		out[m.rank] = t.tokens[int32(k>>32)] + " " + t.tokens[int32(uint32(k))]
	}
	return out
}

// TestTrainRoundTrip trains on varied text and checks that the file loads, that
// encoding then decoding returns the text, and that the vocabulary is full.
func TestTrainRoundTrip(t *testing.T) {
	text := "func main() {\n\tfmt.Println(\"héllo, wörld 123456\")\n}\n\nThe quick brown fox jumps over the lazy dog. 日本語のテキスト 🎉\n"
	tr := NewTrainer()
	tr.AddParallel([]byte(strings.Repeat(text, 50)))
	js, cfg, err := tr.Train(400, DefaultSpecialTokens)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := Parse(js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Merging stops early once every distinct pre-token is one token.
	if n := tok.VocabSize(); n > 400 || n <= 256+len(DefaultSpecialTokens) {
		t.Fatalf("vocab %d, want (264, 400]", n)
	}
	for _, s := range []string{text, "unseen ünïcödé 𝄞 text", "<|begin_of_text|>hi<|eot_id|>"} {
		ids := tok.Encode(s)
		if got := tok.Decode(ids); got != s {
			t.Fatalf("Decode(Encode(%q)) = %q", s, got)
		}
	}
	if ids := tok.EncodeWithSpecial("x"); ids[0] != tok.BOS() {
		t.Fatalf("EncodeWithSpecial starts with %d, want BOS %d", ids[0], tok.BOS())
	}
	if tok.VocabSize() < 400 {
		if got, want := len(tok.Encode(text)), len(regexPieces(t, llama3Pattern, text)); got != want {
			t.Fatalf("%d tokens for %d pre-tokens: training stopped before words were whole", got, want)
		}
	}
	out, err := tok.ApplyChatTemplate([]Message{{"user", "hi"}}, true)
	if err != nil || !strings.HasPrefix(out, "<|begin_of_text|><|start_header_id|>user") {
		t.Fatalf("chat template: %q, %v", out, err)
	}
}

func TestTrainErrors(t *testing.T) {
	tr := NewTrainer()
	tr.Add("abc")
	if _, _, err := tr.Train(100, DefaultSpecialTokens); err == nil {
		t.Fatal("vocab size below 256 + specials accepted")
	}
	if _, _, err := tr.Train(300, nil); err == nil {
		t.Fatal("no special tokens accepted")
	}
}
