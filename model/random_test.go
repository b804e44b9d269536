package model_test

import (
	"math"
	"testing"

	"github.com/kvfoot/kvfoot/model"
	"github.com/kvfoot/kvfoot/tensor"
)

// NewRandomBF16 makes the preset's geometry with bf16 matrices drawn from N(0, 0.02²), the
// same for the same seed (its pieces are filled in parallel, each from its own generator).
func TestNewRandomBF16(t *testing.T) {
	cfg := model.Presets["smollm2-135m"]
	cfg.Layers = 2
	a, b := model.NewRandomBF16(cfg, 7), model.NewRandomBF16(cfg, 7)
	if a.Config.Params() != cfg.Params() || len(a.Layers) != 2 {
		t.Fatalf("params %d, layers %d; want %d, 2", a.Config.Params(), len(a.Layers), cfg.Params())
	}
	L := &a.Layers[1]
	for name, w := range map[string]*tensor.Mat{"embed": &a.Embed, "q": &L.Q.W, "down": &L.Down.W} {
		if w.Type() != tensor.BF16 || len(w.BF16) != w.Rows*w.Cols {
			t.Fatalf("%s: type %v, %d values for %dx%d", name, w.Type(), len(w.BF16), w.Rows, w.Cols)
		}
	}
	if a.Layers[1].Down.W.Rows != cfg.Hidden || a.Layers[1].Down.W.Cols != cfg.Intermediate {
		t.Errorf("down is %dx%d", a.Layers[1].Down.W.Rows, a.Layers[1].Down.W.Cols)
	}
	var sum, sq float64
	emb := a.Embed.BF16
	for i, v := range emb {
		if v != b.Embed.BF16[i] {
			t.Fatalf("value %d differs between two models of the same seed", i)
		}
		f := float64(tensor.BF16ToFloat(v))
		sum, sq = sum+f, sq+f*f
	}
	n := float64(len(emb))
	mean, sd := sum/n, math.Sqrt(sq/n-(sum/n)*(sum/n))
	// 28M draws: the mean is within 5 standard errors of 0, the deviation within 1% of 0.02
	if math.Abs(mean) > 5*0.02/math.Sqrt(n) || math.Abs(sd-0.02) > 2e-4 {
		t.Errorf("embedding mean %g, sd %g; want 0, 0.02", mean, sd)
	}
	if &a.Head.BF16[0] != &a.Embed.BF16[0] {
		t.Error("a tied preset's head is not the embedding")
	}
}
