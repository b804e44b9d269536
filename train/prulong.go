package train

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
)

// PruLongConfig is a PruLong run (docs/METHODS.md §2, §2.8 for what differs):
// hard-concrete masks per (layer, KV head), next-token loss plus the Lagrangian
// λ1(ŝ − t) + λ2(ŝ − t)² with λ by gradient ascent, the target t warmed up linearly
// from 0 over the first SparsityWarmup of the steps.
type PruLongConfig struct {
	RunConfig
	TargetSparsity float64 // t at the end of the warm-up, in [0, 1)
	TrainWeights   bool    // also train the model's weights (PruLong's masks-and-weights recipe)
}

// The paper's constants (PL:prulong/training/lh_trainer.py and the run scripts).
const (
	pruLongInitMean, pruLongInitStd = 4.0, 0.01 // log α after reset_masks()
	pruLongSparsityWarmup           = 0.8       // of the steps
	pruLongLRWarmup                 = 0.1       // cosine schedule's warm-up ratio
	pruLongMinLR                    = 0.01      // min_lr_ratio of the masks-only script
	pruLongMaskLR, pruLongRegLR     = 1.0, 1.0
	pruLongWeightLR                 = 1e-5
	pruLongWeightDecay              = 0.1
	pruLongBeta1, pruLongBeta2      = 0.9, 0.95
	pruLongClip                     = 1.0
)

type pruLong struct {
	cfg      *PruLongConfig
	net      Network
	cpu      *Net      // the Net whose weights are trained (TrainWeights only)
	logAlpha []float64 // [layers·KV heads], layer-major
	lambda   []float64 // λ1, λ2
	// AdamW moments
	mA, vA, mL, vL []float64
	mW, vW         [][]float32 // per weight slice (TrainWeights)
	weights        []vec       // the weights, named
	decay          []bool      // weight decay applies (not norms, not biases)
	// global is, per (layer, KV head), whether its layer is global: a local layer's heads
	// have no full cache to give up, so their gates stay 1 and the sparsity counts the others
	global  []bool
	nGlobal int
	// one step's buffers
	z, dz, gA []float64
	zs        []float32
	targets   []int
}

// PruLong trains PruLong's masks on docs (cut to SeqLen) and writes into c.Out the
// deterministic masks (masks_soft.tsv), the masks rounded at 0.1 … 0.9
// (masks_sp<x>.tsv), log α (log_alpha.tsv) and, with TrainWeights, the weights
// (model.safetensors, float32, Hugging Face names). A checkpoint in c.Out is resumed.
// Weight training needs n to be a *Net (the CPU's) made with WeightGrads.
func PruLong(n Network, c *PruLongConfig, docs []Doc) (Result, error) {
	if !(c.TargetSparsity >= 0 && c.TargetSparsity < 1) {
		return Result{}, fmt.Errorf("target sparsity %v is outside [0, 1)", c.TargetSparsity)
	}
	cpu, _ := n.(*Net)
	if c.TrainWeights && cpu == nil {
		return Result{}, fmt.Errorf("--train-weights: weight training runs on the CPU only (--device cpu); the GPU trains masks only")
	}
	if c.TrainWeights && cpu.Grad == nil {
		return Result{}, fmt.Errorf("--train-weights needs a Net made with WeightGrads")
	}
	cfg := n.ModelConfig()
	if err := c.check(cfg); err != nil {
		return Result{}, err
	}
	seqs, err := sequences(docs, c.SeqLen, c.Seed, false)
	if err != nil {
		return Result{}, err
	}
	N := cfg.Layers * cfg.KVHeads
	p := &pruLong{cfg: c, net: n, logAlpha: make([]float64, N), lambda: make([]float64, 2),
		mA: make([]float64, N), vA: make([]float64, N), mL: make([]float64, 2), vL: make([]float64, 2),
		z: make([]float64, N), dz: make([]float64, N), gA: make([]float64, N), zs: make([]float32, N),
		targets: make([]int, c.SeqLen)}
	p.global = make([]bool, N)
	for i := range p.global {
		p.global[i] = !n.Local(i / cfg.KVHeads)
		if p.global[i] {
			p.nGlobal++
		}
	}
	r := rand.New(rand.NewPCG(c.Seed, 0x6c6f67616c706861))
	for i := range p.logAlpha {
		p.logAlpha[i] = pruLongInitMean + pruLongInitStd*r.NormFloat64()
	}
	if c.TrainWeights {
		p.cpu = cpu
		cpu.Params.Each(func(name string, v []float32) {
			p.weights = append(p.weights, vec{name: name, f32: v})
			p.mW = append(p.mW, make([]float32, len(v)))
			p.vW = append(p.vW, make([]float32, len(v)))
			p.decay = append(p.decay, !strings.Contains(name, "norm") && !strings.HasSuffix(name, ".bias"))
		})
	}
	return run(&c.RunConfig, n, p, seqs)
}

func (p *pruLong) kind() string        { return "prulong" }
func (p *pruLong) trainsWeights() bool { return p.cfg.TrainWeights }

func (p *pruLong) hyper() map[string]string {
	return map[string]string{"target_sparsity": strconv.FormatFloat(p.cfg.TargetSparsity, 'g', -1, 64),
		"train_weights": strconv.FormatBool(p.cfg.TrainWeights)}
}

func (p *pruLong) state() []vec {
	vs := []vec{{name: "log_alpha", f64: p.logAlpha}, {name: "lambda", f64: p.lambda},
		{name: "adam.m.log_alpha", f64: p.mA}, {name: "adam.v.log_alpha", f64: p.vA},
		{name: "adam.m.lambda", f64: p.mL}, {name: "adam.v.lambda", f64: p.vL}}
	for i, w := range p.weights {
		vs = append(vs, w, vec{name: "adam.m." + w.name, f32: p.mW[i]}, vec{name: "adam.v." + w.name, f32: p.vW[i]})
	}
	return vs
}

// targetSparsity is t(step): linear from 0 to the target over the warm-up steps.
func (p *pruLong) targetSparsity(step int) float64 {
	w := int(math.Ceil(pruLongSparsityWarmup * float64(p.cfg.Steps)))
	if step < w {
		return p.cfg.TargetSparsity * float64(step) / float64(w)
	}
	return p.cfg.TargetSparsity
}

func (p *pruLong) step(step int, batch []Doc) (Status, error) {
	n, c := p.net, p.cfg
	N, B := p.nGlobal, float64(len(batch))
	t := p.targetSparsity(step)
	l1, l2 := p.lambda[0], p.lambda[1]
	clear(p.gA)
	var gl1, gl2 float64
	if p.cpu != nil {
		p.cpu.Grad.Zero()
	}
	var st Status
	for b, d := range batch {
		// a fresh mask sample for every sequence, from (seed, step, sequence)
		r := rand.New(rand.NewPCG(c.Seed^0x9e3779b97f4a7c15, uint64(step)<<20|uint64(b)))
		var sum float64
		for i, a := range p.logAlpha {
			p.z[i], p.dz[i] = hardConcrete(a, r.Float64())
			if !p.global[i] {
				p.z[i], p.dz[i] = 1, 0 // fixed (the Net gates no local layer anyway)
			}
			p.zs[i] = float32(p.z[i])
			if p.global[i] {
				sum += p.z[i]
			}
		}
		for i := range p.targets {
			p.targets[i] = -1
			if i+1 < len(d.IDs) {
				p.targets[i] = d.IDs[i+1]
			}
		}
		if err := n.Forward(d.IDs, p.zs); err != nil {
			return st, err
		}
		ce, _, err := n.CrossEntropy(p.targets[:len(d.IDs)], float32(1/B))
		if err != nil {
			return st, err
		}
		gg := n.GateGrads()
		clear(gg)
		if err := n.Backward(); err != nil {
			return st, err
		}
		s := 1 - sum/float64(N)
		diff := s - t
		dReg := (l1 + 2*l2*diff) * (-1 / float64(N)) / B
		for i := range p.gA {
			p.gA[i] += (gg[i] + dReg) * p.dz[i]
		}
		gl1 += diff / B
		gl2 += diff * diff / B
		st.Loss += ce / B
		st.Sparsity += s / B
	}
	// clip the global norm of every trainable gradient
	norm := sumSq(p.gA) + gl1*gl1 + gl2*gl2
	for _, w := range p.weights {
		norm += sumSq32(gradOf(p.cpu, w.name))
	}
	norm = math.Sqrt(norm)
	if coef := pruLongClip / (norm + 1e-6); coef < 1 {
		for i := range p.gA {
			p.gA[i] *= coef
		}
		gl1, gl2 = gl1*coef, gl2*coef
		for _, w := range p.weights {
			g := gradOf(p.cpu, w.name)
			for i := range g {
				g[i] *= float32(coef)
			}
		}
	}
	lrf := cosineLR(step, c.Steps, pruLongLRWarmup, pruLongMinLR)
	k := step + 1
	adamW(p.logAlpha, p.gA, p.mA, p.vA, k, pruLongMaskLR*lrf, pruLongWeightDecay, pruLongBeta1, pruLongBeta2, false)
	adamW(p.lambda, []float64{gl1, gl2}, p.mL, p.vL, k, pruLongRegLR*lrf, pruLongWeightDecay, pruLongBeta1, pruLongBeta2, true)
	for i, w := range p.weights {
		wd := 0.0
		if p.decay[i] {
			wd = pruLongWeightDecay
		}
		adamW(w.f32, gradOf(p.cpu, w.name), p.mW[i], p.vW[i], k, pruLongWeightLR*lrf, wd, pruLongBeta1, pruLongBeta2, false)
	}
	st.Target, st.Lambda1, st.Lambda2, st.LR = t, l1, l2, lrf
	return st, nil
}

// gradOf is the gradient slice of the named weight.
func gradOf(n *Net, name string) []float32 {
	var g []float32
	n.Grad.Each(func(nm string, v []float32) {
		if nm == name {
			g = v
		}
	})
	return g
}

func sumSq(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x * x
	}
	return s
}

func sumSq32(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return s
}

// Masks returns the deterministic masks of log α [layers][KV heads].
func (p *pruLong) masks() [][]float64 {
	c := p.net.ModelConfig()
	la := make([][]float64, c.Layers)
	for l := range la {
		la[l] = p.logAlpha[l*c.KVHeads : (l+1)*c.KVHeads]
	}
	return DeterministicMasks(la)
}

func (p *pruLong) finish(dir string, st Status) error {
	c := p.net.ModelConfig()
	if err := WriteMaskFiles(dir, "masks_soft.tsv", p.masks(), localLayers(c)); err != nil {
		return err
	}
	kv := c.KVHeads
	la := make([][]float64, c.Layers)
	for l := range la {
		la[l] = p.logAlpha[l*kv : (l+1)*kv]
	}
	if err := writeTSV(filepath.Join(dir, "log_alpha.tsv"), la, 6); err != nil {
		return err
	}
	if !p.cfg.TrainWeights {
		return nil
	}
	return p.cpu.Params.Save(filepath.Join(dir, "model.safetensors"))
}
