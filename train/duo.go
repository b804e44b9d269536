package train

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"strconv"
)

// DuoConfig is a DuoAttention run (docs/METHODS.md §3.4, §2.8 for what differs): a gate
// α ∈ [0, 1] per (layer, KV head), initialised to 1 and clamped before every step;
// the loss is the squared distance between the last hidden states with full
// attention and with gated attention on the rows that predict answer tokens, averaged
// over the hidden dimension and over those rows, plus Reg · mean |α|.
type DuoConfig struct {
	RunConfig
	LR  float64 // AdamW learning rate (DuoAttention's 0.02)
	Reg float64 // the L1 weight (DuoAttention's 0.05)
}

// DuoAttention's optimiser: AdamW without weight decay, torch's default betas.
const duoBeta1, duoBeta2 = 0.9, 0.999

type duo struct {
	cfg     *DuoConfig
	net     Network
	alpha   []float64
	m, v, g []float64
	as      []float32
	teacher []float32
	rows    []int
}

// Duo trains DuoAttention's gates on docs (cut to SeqLen; only documents with
// answer tokens inside are used) and writes into c.Out DuoAttention's own
// full_attention_heads.tsv and config.json, and the masks rounded at 0.1 … 0.9
// (masks_sp<x>.tsv). A checkpoint in c.Out is resumed.
func Duo(n Network, c *DuoConfig, docs []Doc) (Result, error) {
	if !(c.LR > 0) || !(c.Reg >= 0) {
		return Result{}, fmt.Errorf("learning rate %v and L1 weight %v: need lr > 0, reg ≥ 0", c.LR, c.Reg)
	}
	cfg := n.ModelConfig()
	if err := c.check(cfg); err != nil {
		return Result{}, err
	}
	seqs, err := sequences(docs, c.SeqLen, c.Seed, true)
	if err != nil {
		return Result{}, err
	}
	N := cfg.Layers * cfg.KVHeads
	d := &duo{cfg: c, net: n, alpha: make([]float64, N), m: make([]float64, N), v: make([]float64, N),
		g: make([]float64, N), as: make([]float32, N), teacher: make([]float32, c.SeqLen*cfg.Hidden)}
	for i := range d.alpha {
		d.alpha[i] = 1
	}
	return run(&c.RunConfig, n, d, seqs)
}

func (d *duo) kind() string        { return "duo" }
func (d *duo) trainsWeights() bool { return false }

func (d *duo) hyper() map[string]string {
	return map[string]string{"lr": strconv.FormatFloat(d.cfg.LR, 'g', -1, 64), "reg": strconv.FormatFloat(d.cfg.Reg, 'g', -1, 64)}
}

func (d *duo) state() []vec {
	return []vec{{name: "alpha", f64: d.alpha}, {name: "adam.m.alpha", f64: d.m}, {name: "adam.v.alpha", f64: d.v}}
}

// duoLR is DuoAttention's schedule: linear warm-up over the first fifth of the steps,
// linear decay over the last fifth, never below 0.1.
func duoLR(step, steps int) float64 {
	f := float64(steps) / 5
	return min(1, max(float64(step+1)/f, 0.1), max(float64(steps-step)/f, 0.1))
}

func (d *duo) step(step int, batch []Doc) (Status, error) {
	n, B := d.net, float64(len(batch))
	for i, a := range d.alpha {
		d.alpha[i] = min(max(a, 0), 1)
		d.as[i] = float32(d.alpha[i])
	}
	clear(d.g)
	var st Status
	cfg := n.ModelConfig()
	H := cfg.Hidden
	for _, doc := range batch {
		// the rows whose hidden states predict the answer tokens
		d.rows = d.rows[:0]
		for _, s := range doc.Spans {
			for i := max(s[0]-1, 0); i < s[1]-1; i++ {
				d.rows = append(d.rows, i)
			}
		}
		if err := n.Forward(doc.IDs, nil); err != nil {
			return st, err
		}
		copy(d.teacher, n.Hidden())
		if err := n.Forward(doc.IDs, d.as); err != nil {
			return st, err
		}
		mse, err := n.HiddenMSE(d.teacher[:len(doc.IDs)*H], d.rows, float32(1/B))
		if err != nil {
			return st, err
		}
		gg := n.GateGrads()
		clear(gg)
		if err := n.Backward(); err != nil {
			return st, err
		}
		for i := range d.g {
			d.g[i] += gg[i]
		}
		st.Loss += mse / B
	}
	// the L1 term and the sparsity count the global layers' heads: a local layer's have
	// no full cache to give up, and their gates (which the Net ignores) stay 1
	var mean float64
	global := 0
	for i := range d.alpha {
		if !n.Local(i / cfg.KVHeads) {
			global++
		}
	}
	for i, a := range d.alpha {
		if n.Local(i / cfg.KVHeads) {
			d.g[i], d.alpha[i] = 0, 1
			continue
		}
		mean += a / float64(global)
		if a > 0 { // d|α|/dα; torch's sign(0) = 0
			d.g[i] += d.cfg.Reg / float64(global)
		}
	}
	lrf := duoLR(step, d.cfg.Steps)
	adamW(d.alpha, d.g, d.m, d.v, step+1, d.cfg.LR*lrf, 0, duoBeta1, duoBeta2, false)
	st.Sparsity, st.LR = 1-mean, lrf
	if math.IsNaN(mean) {
		st.Loss = math.NaN()
	}
	return st, nil
}

func (d *duo) finish(dir string, st Status) error {
	c := d.net.ModelConfig()
	kv := c.KVHeads
	vals := make([][]float64, c.Layers)
	for l := range vals {
		vals[l] = make([]float64, kv)
		for g := range vals[l] {
			vals[l][g] = min(max(d.alpha[l*kv+g], 0), 1)
		}
	}
	if err := WriteMaskFiles(dir, "full_attention_heads.tsv", vals, localLayers(c)); err != nil {
		return err
	}
	cfg, _ := json.MarshalIndent(map[string]int{"sink_size": d.cfg.Sink, "recent_size": d.cfg.Window}, "", "  ")
	return writeAtomic(filepath.Join(dir, "config.json"), func(w *bufio.Writer) error {
		_, err := w.Write(append(cfg, '\n'))
		return err
	})
}
