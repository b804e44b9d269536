package train

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/kvfoot/kvfoot/format/safetensors"
	"github.com/kvfoot/kvfoot/model"
)

// RunConfig is what the two mask trainers share: the run's shape, its output folder
// and its stopping points.
type RunConfig struct {
	Out string // folder for checkpoint.safetensors, log.jsonl and the masks
	// Force lets a run replace files in Out that an earlier run of the same method
	// did not write there (see CheckOut).
	Force        bool
	Steps        int    // optimizer steps of the whole run
	SeqLen       int    // tokens per sequence (documents are cut to this length)
	Batch        int    // sequences per step
	Seed         uint64 // masks' noise and the order of the data
	Sink, Window int    // the streaming heads' attention
	// CheckpointEvery writes the checkpoint every so many steps (0: only at the end
	// and when stopping early).
	CheckpointEvery int
	// StopAt (> 0) ends this invocation after that step, MaxDuration after that much
	// time; both write a checkpoint that a later run with the same config resumes.
	StopAt      int
	MaxDuration time.Duration
	// Progress, when not nil, is told about every step.
	Progress func(Status)
}

// Status is a run's state after a step.
type Status struct {
	Step, Steps int
	Loss        float64 // the data term of the objective, mean over the step's batch
	Sparsity    float64 // PruLong: of the sampled masks; DuoAttention: 1 − mean gate
	Target      float64 // PruLong's target sparsity at this step
	Lambda1     float64
	Lambda2     float64
	LR          float64 // the learning-rate factor of the schedule
	Tokens      int64   // tokens trained on so far, over all invocations
	Elapsed     time.Duration
	TokensPerS  float64 // over this invocation
	Resumed     int     // the step this invocation resumed from (0: fresh)
}

// Result says how an invocation ended.
type Result struct {
	Step     int  // steps done
	Finished bool // the run reached Steps and wrote its masks
}

func (c *RunConfig) check(m *model.Config) error {
	switch {
	case c.Steps < 1:
		return fmt.Errorf("steps %d: need at least 1", c.Steps)
	case c.Batch < 1:
		return fmt.Errorf("batch %d: need at least 1", c.Batch)
	case c.SeqLen < 2:
		return fmt.Errorf("seq-len %d: need at least 2 tokens", c.SeqLen)
	case m.MaxPositions > 0 && c.SeqLen > m.MaxPositions:
		return fmt.Errorf("seq-len %d is longer than the model's context (%d tokens)", c.SeqLen, m.MaxPositions)
	case c.Window < 1 || c.Sink < 0:
		return fmt.Errorf("sink %d, window %d: need sink ≥ 0 and window ≥ 1", c.Sink, c.Window)
	case c.Out == "":
		return fmt.Errorf("an output folder is required")
	case m.LocalLayers() == m.Layers:
		return fmt.Errorf("every layer of this %s is local (sliding window %d): no head has a full cache to give up, so there are no masks to learn", m.Arch, m.Window[0])
	}
	return nil // the folder is made when the run starts (claimOut): a refused run leaves none
}

// vec is one named piece of a run's state: float64 (masks, λ, optimizer moments) or
// float32 (weights and their moments).
type vec struct {
	name string
	f64  []float64
	f32  []float32
}

// method is what differs between PruLong and DuoAttention.
type method interface {
	kind() string                               // "prulong" or "duo"
	trainsWeights() bool                        // the weights are outputs too
	hyper() map[string]string                   // settings a resumed run must share
	state() []vec                               // everything the checkpoint holds
	step(step int, batch []Doc) (Status, error) // one optimizer step
	finish(dir string, st Status) error         // the output files
}

func (c *RunConfig) hyper(n Network, m method) map[string]string {
	h := map[string]string{
		"kvfoot": m.kind() + "-1", "model": n.Fingerprint(),
		"steps": strconv.Itoa(c.Steps), "seq_len": strconv.Itoa(c.SeqLen), "batch": strconv.Itoa(c.Batch),
		"seed": strconv.FormatUint(c.Seed, 10), "sink": strconv.Itoa(c.Sink), "window": strconv.Itoa(c.Window),
	}
	for k, v := range m.hyper() {
		h[k] = v
	}
	return h
}

const checkpointName = "checkpoint.safetensors"

func saveCheckpoint(path string, meta map[string]string, step int, tokens int64, vs []vec) error {
	md := map[string]string{"step": strconv.Itoa(step), "tokens": strconv.FormatInt(tokens, 10)}
	for k, v := range meta {
		md[k] = v
	}
	var ts []safetensors.Tensor
	for _, v := range vs {
		if v.f64 != nil {
			bits := make([]int64, len(v.f64))
			for i, x := range v.f64 {
				bits[i] = int64(math.Float64bits(x))
			}
			ts = append(ts, safetensors.FromInt64s(v.name, []int{len(bits)}, bits))
		} else {
			ts = append(ts, safetensors.FromFloat32s(v.name, []int{len(v.f32)}, v.f32))
		}
	}
	return writeAtomic(path, func(w *bufio.Writer) error { return safetensors.Write(w, ts, md) })
}

// loadCheckpoint restores vs from path and returns its step and token count; it
// fails if the checkpoint was made by another method, model or configuration.
func loadCheckpoint(path string, meta map[string]string, vs []vec) (int, int64, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return 0, 0, fmt.Errorf("checkpoint: %w", err)
	}
	defer f.Close()
	for k, want := range meta {
		if got := f.Metadata[k]; got != want {
			if k == "model" {
				return 0, 0, fmt.Errorf("checkpoint %s was made for another model (%s), not this one (%s); give a fresh --out", path, got, want)
			}
			return 0, 0, fmt.Errorf("checkpoint %s has %s=%q, this run %q: resume with the same settings or give a fresh --out", path, k, got, want)
		}
	}
	for _, v := range vs {
		t, ok := f.Tensor(v.name)
		if !ok {
			return 0, 0, fmt.Errorf("checkpoint %s: no tensor %q", path, v.name)
		}
		if v.f64 != nil {
			bits, err := t.Int64s()
			if err != nil || len(bits) != len(v.f64) {
				return 0, 0, fmt.Errorf("checkpoint %s: tensor %q: %d values, want %d (%v)", path, v.name, len(bits), len(v.f64), err)
			}
			for i, b := range bits {
				v.f64[i] = math.Float64frombits(uint64(b))
			}
		} else {
			x, err := t.Float32s()
			if err != nil || len(x) != len(v.f32) {
				return 0, 0, fmt.Errorf("checkpoint %s: tensor %q: %d values, want %d (%v)", path, v.name, len(x), len(v.f32), err)
			}
			copy(v.f32, x)
		}
	}
	step, err1 := strconv.Atoi(f.Metadata["step"])
	tokens, err2 := strconv.ParseInt(f.Metadata["tokens"], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	return step, tokens, nil
}

// run drives a method: it resumes from the checkpoint in c.Out when there is one,
// steps until c.Steps (or a stopping point), and writes the checkpoint and the
// outputs (which so always show the newest checkpoint) every CheckpointEvery steps,
// at the end and when stopping.
func run(c *RunConfig, n Network, m method, seqs []Doc) (Result, error) {
	meta := c.hyper(n, m)
	own, err := claimOut(c, m)
	if err != nil {
		return Result{}, err
	}
	ckpt := filepath.Join(c.Out, checkpointName)
	start, tokens := 0, int64(0)
	if own[checkpointName] { // a checkpoint that is not the method's own is replaced
		if start, tokens, err = loadCheckpoint(ckpt, meta, m.state()); err != nil {
			return Result{}, err
		}
	}
	logPath := filepath.Join(c.Out, "log.jsonl")
	logMode := os.O_TRUNC // a fresh run starts a fresh log
	if start > 0 {
		if err := trimLog(logPath, start); err != nil {
			return Result{}, err
		}
		logMode = os.O_APPEND
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|logMode, 0o644)
	if err != nil {
		return Result{}, fmt.Errorf("log: %w", err)
	}
	defer logf.Close()
	save := func(step int) error { return saveCheckpoint(ckpt, meta, step, tokens, m.state()) }
	t0 := time.Now()
	var st Status
	batch := make([]Doc, c.Batch)
	step := start
	for step < c.Steps {
		for b := range batch {
			batch[b] = seqs[(step*c.Batch+b)%len(seqs)]
		}
		st, err = m.step(step, batch)
		if err != nil {
			return Result{Step: step}, err
		}
		if math.IsNaN(st.Loss) || math.IsInf(st.Loss, 0) {
			return Result{Step: step}, fmt.Errorf("step %d: the loss is %v; stopped, the last good checkpoint (step %d) is kept in %s", step+1, st.Loss, lastSaved(c, start, step), ckpt)
		}
		step++
		tokens += int64(c.Batch * c.SeqLen)
		st.Step, st.Steps, st.Tokens, st.Resumed = step, c.Steps, tokens, start
		st.Elapsed = time.Since(t0)
		st.TokensPerS = float64(int64(step-start)*int64(c.Batch*c.SeqLen)) / st.Elapsed.Seconds()
		line, _ := json.Marshal(map[string]any{"step": step, "loss": st.Loss, "sparsity": st.Sparsity, "target": st.Target,
			"lambda1": st.Lambda1, "lambda2": st.Lambda2, "lr": st.LR, "tokens": tokens, "tokens_per_s": st.TokensPerS})
		if _, err := logf.Write(append(line, '\n')); err != nil {
			return Result{Step: step}, fmt.Errorf("log: %w", err)
		}
		if c.Progress != nil {
			c.Progress(st)
		}
		stop := (c.StopAt > 0 && step >= c.StopAt) || (c.MaxDuration > 0 && time.Since(t0) >= c.MaxDuration)
		if step == c.Steps || stop || (c.CheckpointEvery > 0 && step%c.CheckpointEvery == 0) {
			if err := save(step); err != nil {
				return Result{Step: step}, err
			}
			// the outputs always show the newest checkpoint
			if err := m.finish(c.Out, st); err != nil {
				return Result{Step: step}, err
			}
		}
		if stop && step < c.Steps {
			return Result{Step: step}, nil
		}
	}
	if start == c.Steps {
		if err := m.finish(c.Out, st); err != nil {
			return Result{Step: step}, err
		}
	}
	return Result{Step: step, Finished: true}, nil
}

// lastSaved is the step of the newest checkpoint before step.
func lastSaved(c *RunConfig, start, step int) int {
	last := start
	if c.CheckpointEvery > 0 {
		last = max(last, step/c.CheckpointEvery*c.CheckpointEvery)
	}
	return last
}

// adamW is one AdamW update of p with gradient g and moments m, v at step t (1-based),
// as torch.optim.AdamW computes it: decoupled weight decay p ← p·(1 − lr·wd), then
// p ← p − lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + eps). maximize ascends (torch's flag).
func adamW[F float32 | float64](p, g, m, v []F, t int, lr, wd, b1, b2 float64, maximize bool) {
	const eps = 1e-8
	bc1, bc2 := 1-math.Pow(b1, float64(t)), 1-math.Pow(b2, float64(t))
	for i := range p {
		gi := float64(g[i])
		if maximize {
			gi = -gi
		}
		x := float64(p[i]) * (1 - lr*wd)
		mi := b1*float64(m[i]) + (1-b1)*gi
		vi := b2*float64(v[i]) + (1-b2)*gi*gi
		m[i], v[i] = F(mi), F(vi)
		p[i] = F(x - lr/bc1*mi/(math.Sqrt(vi)/math.Sqrt(bc2)+eps))
	}
}

// cosineLR is Hugging Face's cosine schedule with warm-up, floored at minRatio:
// step/w during the w = ceil(warm·steps) warm-up steps, then
// minRatio + (1 − minRatio)·½(1 + cos(π·progress)).
func cosineLR(step, steps int, warm, minRatio float64) float64 {
	w := int(math.Ceil(warm * float64(steps)))
	if step < w {
		return float64(step) / float64(max(1, w))
	}
	p := float64(step-w) / float64(max(1, steps-w))
	return minRatio + (1-minRatio)*0.5*(1+math.Cos(math.Pi*p))
}
