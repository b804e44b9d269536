package tokenizer

import (
	"testing"

	"github.com/kvfoot/kvfoot/internal/benchtext"
)

// Token counts of benchtext.Mixed() measured with the tokenizers library
// (tokenizers 0.23.2, tools/oracle/tokenizer_bench.py).
var benchTokens = map[string]int{"llama3_1": 296881, "qwen3": 304289, "llama2": 380410}

func TestBenchTextCounts(t *testing.T) {
	if testing.Short() {
		t.Skip("encodes 1 MiB three times")
	}
	text, err := benchtext.Mixed()
	if err != nil {
		t.Skip(err)
	}
	for _, fam := range families {
		if got := len(family(t, fam).Encode(string(text))); got != benchTokens[fam] {
			t.Errorf("%s: %d tokens, tokenizers library made %d", fam, got, benchTokens[fam])
		}
	}
}

func BenchmarkEncode(b *testing.B) { benchEncode(b, false) }

// BenchmarkEncodeCold clears the word cache before every encode, so each run
// pays the BPE of every distinct word once, as a first encode does.
func BenchmarkEncodeCold(b *testing.B) { benchEncode(b, true) }

func benchEncode(b *testing.B, cold bool) {
	text, err := benchtext.Mixed()
	if err != nil {
		b.Skip(err)
	}
	s := string(text)
	for _, fam := range families {
		b.Run(fam, func(b *testing.B) {
			tok := family(b, fam)
			var ids []int
			b.SetBytes(int64(len(s)))
			for b.Loop() {
				if cold {
					tok.cache.mu.Lock()
					clear(tok.cache.m)
					tok.cache.mu.Unlock()
				}
				ids = tok.AppendEncode(ids[:0], s, false)
			}
			b.ReportMetric(float64(len(ids)), "tokens")
		})
	}
}
