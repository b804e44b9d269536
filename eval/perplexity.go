package eval

import (
	"fmt"
	"math"

	"github.com/kvfoot/kvfoot/kv"
	"github.com/kvfoot/kvfoot/model"
	"github.com/kvfoot/kvfoot/tasks"
)

// PerplexityReport is a model's language-modelling loss on windows of text.
type PerplexityReport struct {
	Windows    int     `json:"windows"`
	Length     int     `json:"length"`
	Tokens     int     `json:"tokens"` // predicted tokens: Length−1 per window
	NLL        float64 `json:"nll"`    // mean negative log-likelihood, nats per token
	Perplexity float64 `json:"perplexity"`
}

// Windows tokenizes the corpus files in order, joined by newlines, and cuts the token
// stream into up to n consecutive windows of length tokens.
func Windows(c *tasks.Corpus, tok tasks.Tokenizer, length, n int) ([][]int, error) {
	if length < 2 || n < 1 {
		return nil, fmt.Errorf("perplexity: want length ≥ 2 and at least one window, got length %d, %d windows", length, n)
	}
	need := math.MaxInt // tokens to read; a huge n reads the whole corpus
	if n <= math.MaxInt/length {
		need = length * n
	}
	var stream []int
	for i := 0; i < c.Files() && len(stream) < need; i++ {
		b, err := c.File(i)
		if err != nil {
			return nil, err
		}
		stream = append(stream, tok.Encode(string(b)+"\n")...)
	}
	var ws [][]int
	for lo := 0; lo+length <= len(stream) && len(ws) < n; lo += length {
		ws = append(ws, stream[lo:lo+length])
	}
	if len(ws) == 0 {
		return nil, fmt.Errorf("perplexity: corpus %s has %d tokens, fewer than one window of %d", c.Root, len(stream), length)
	}
	return ws, nil
}

// Perplexity feeds every window from its first token (a fresh full cache each, pre-fill
// in chunks of chunk tokens, 0 = whole window) and scores each next token.
func Perplexity(m *model.Model, windows [][]int, chunk int, progress func(done int)) (PerplexityReport, error) {
	var nll float64
	tokens := 0
	for w, ids := range windows {
		c := chunk
		if c <= 0 || c > len(ids) {
			c = len(ids)
		}
		cache, err := kv.New(kv.Shape(m.Shape()), "full")
		if err != nil {
			return PerplexityReport{}, err
		}
		r := model.NewRunner(m, c)
		V := m.Config.Vocab
		_, err = r.Prefill(cache, ids, model.PrefillOptions{Chunk: c, All: true, OnChunk: func(lo int, logits []float32) error {
			for i := lo; i < lo+len(logits)/V && i+1 < len(ids); i++ {
				nll -= logSoftmaxAt(logits[(i-lo)*V:(i-lo+1)*V], ids[i+1])
				tokens++
			}
			return nil
		}})
		if err != nil {
			return PerplexityReport{}, fmt.Errorf("window %d: %w", w, err)
		}
		if progress != nil {
			progress(w + 1)
		}
	}
	mean := nll / float64(tokens)
	return PerplexityReport{Windows: len(windows), Length: len(windows[0]), Tokens: tokens, NLL: mean, Perplexity: math.Exp(mean)}, nil
}

// logSoftmaxAt returns log softmax(logits)[target], computed stably in float64.
func logSoftmaxAt(logits []float32, target int) float64 {
	mx := math.Inf(-1)
	for _, v := range logits {
		mx = math.Max(mx, float64(v))
	}
	var sum float64
	for _, v := range logits {
		sum += math.Exp(float64(v) - mx)
	}
	return float64(logits[target]) - mx - math.Log(sum)
}
