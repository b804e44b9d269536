package eval

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvfoot/kvfoot/format/safetensors"
	"github.com/kvfoot/kvfoot/model"
	"github.com/kvfoot/kvfoot/tasks"
)

func TestLogSoftmaxAt(t *testing.T) {
	// log softmax([0, ln 3])[1] = ln(3/4)
	if got, want := logSoftmaxAt([]float32{0, float32(math.Log(3))}, 1), math.Log(0.75); math.Abs(got-want) > 1e-7 {
		t.Errorf("got %v, want %v", got, want)
	}
	// shift invariance with large logits
	if got, want := logSoftmaxAt([]float32{1000, 1000}, 0), math.Log(0.5); math.Abs(got-want) > 1e-9 {
		t.Errorf("got %v, want %v", got, want)
	}
}

// TestPerplexityMatchesReference computes the mean next-token loss of a checkpoint's
// reference ids from transformers' logits and expects Perplexity to agree.
func TestPerplexityMatchesReference(t *testing.T) {
	dir := filepath.Join("..", "testdata", "models", "llama-gqa")
	f, err := safetensors.Open(filepath.Join(dir, "reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	it, _ := f.Tensor("input_ids")
	lt, _ := f.Tensor("logits")
	ids64, err := it.Int64s()
	if err != nil {
		t.Fatal(err)
	}
	logits, err := lt.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]int, len(ids64))
	for i, v := range ids64 {
		ids[i] = int(v)
	}
	V := len(logits) / len(ids)
	var want float64
	for i := 0; i+1 < len(ids); i++ {
		want -= logSoftmaxAt(logits[i*V:(i+1)*V], ids[i+1])
	}
	want /= float64(len(ids) - 1)

	m, err := model.Load(dir, model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	half := len(ids) / 2
	for _, chunk := range []int{0, 37} {
		rep, err := Perplexity(m, [][]int{ids[:half], ids[half:]}, chunk, nil)
		if err != nil {
			t.Fatal(err)
		}
		// the second window starts afresh, so only the first matches the reference
		one, err := Perplexity(m, [][]int{ids}, chunk, nil)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(one.NLL-want) > 1e-4*math.Max(1, want) {
			t.Errorf("chunk %d: NLL %v, reference %v", chunk, one.NLL, want)
		}
		if one.Tokens != len(ids)-1 || rep.Tokens != len(ids)-2 || rep.Windows != 2 {
			t.Errorf("chunk %d: counted %d and %d tokens, %d windows", chunk, one.Tokens, rep.Tokens, rep.Windows)
		}
		if math.Abs(one.Perplexity-math.Exp(one.NLL)) > 1e-9*one.Perplexity {
			t.Errorf("perplexity %v is not exp(NLL %v)", one.Perplexity, one.NLL)
		}
	}
}

// A window count whose token total overflows an int reads the whole corpus and
// returns every window it holds.
func TestWindowsHugeCount(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte(strings.Repeat("abcd", 10)), 0o644) // 40 bytes + "\n"
	c, err := tasks.LoadCorpus(dir)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := Windows(c, byteTok{}, 8, math.MaxInt)
	if err != nil || len(ws) != 5 {
		t.Errorf("%d windows (%v), want 5 of 8 tokens from 41", len(ws), err)
	}
}
