package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"strings"
	"time"

	"github.com/kvfoot/kvfoot/model"
	"github.com/kvfoot/kvfoot/tasks"
	"github.com/kvfoot/kvfoot/tensor"
	"github.com/kvfoot/kvfoot/train"
)

func init() {
	register("prulong", "train PruLong's head masks (which KV heads may forget)", runPruLong)
}

// runFlags are the flags kvfoot prulong and kvfoot duo share.
type runFlags struct {
	model, out, data, corpus     *string
	device                       *string
	steps, seqLen, batch, sink   *int
	window, every, docs, threads *int
	seed                         *uint64
	maxMinutes                   *float64
	bench, force                 *bool
	benchThreads                 *string
	benchReps                    *int
}

func addRunFlags(fs *flag.FlagSet, steps, seqLen int) runFlags {
	return runFlags{
		model:        fs.String("model", "", "model folder (default: the built-in model)"),
		device:       fs.String("device", "cpu", "where the masks train: cpu, cuda or cuda:N (the GPU computes in bf16 with f32 sums; weight training, --train-weights, and --bench are CPU-only)"),
		out:          fs.String("out", "", "output folder: checkpoint, log.jsonl, masks (a checkpoint an earlier run of the command left there is resumed)"),
		force:        fs.Bool("force", false, "replace files in --out that an earlier run of this command did not write there"),
		data:         fs.String("data", "", "training documents: a `kvfoot tasks dump` JSONL file (default: generated, training split)"),
		corpus:       fs.String("corpus", "", "with no --data: folder of text files for haystacks and plain text (default: the Go sources of $(go env GOROOT)/src)"),
		docs:         fs.Int("docs", 0, "with no --data: documents per task (0: enough for steps × batch, at most 64)"),
		steps:        fs.Int("steps", steps, "optimizer steps"),
		seqLen:       fs.Int("seq-len", seqLen, "tokens per sequence"),
		batch:        fs.Int("batch", 1, "sequences per step"),
		sink:         fs.Int("sink", 16, "streaming heads' sink tokens"),
		window:       fs.Int("window", 256, "streaming heads' recent window (tokens, the current one included)"),
		seed:         fs.Uint64("seed", 0, "seed of the masks' noise, the data order and the generated data"),
		every:        fs.Int("checkpoint-every", 10, "write the checkpoint every N steps"),
		maxMinutes:   fs.Float64("max-minutes", 0, "stop (with a checkpoint) after this many minutes; run again to resume"),
		threads:      addThreadsFlag(fs),
		bench:        fs.Bool("bench", false, "time training steps instead of training (tokens/s per thread count)"),
		benchThreads: fs.String("bench-threads", "1,2", "with --bench: comma-separated thread counts"),
		benchReps:    fs.Int("bench-reps", 3, "with --bench: timed steps per thread count"),
	}
}

func (f runFlags) config() train.RunConfig {
	return train.RunConfig{Out: *f.out, Force: *f.force, Steps: *f.steps, SeqLen: *f.seqLen, Batch: *f.batch, Seed: *f.seed,
		Sink: *f.sink, Window: *f.window, CheckpointEvery: *f.every,
		MaxDuration: time.Duration(*f.maxMinutes * float64(time.Minute)), Progress: newProgress(os.Stderr)}
}

// trainSetup is what setup made: the model, the network on the chosen device, the
// documents, and what close releases.
type trainSetup struct {
	m       *model.Model
	net     train.Network
	docs    []train.Doc
	closers []func()
}

func (s *trainSetup) close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
}

// setup checks the flags, opens the device, loads the model and the documents and makes
// the network; on an error it has released what it made.
func (f runFlags) setup(method string, tasksMix []string, weightGrads bool) (_ *trainSetup, err error) {
	if err := setThreads(*f.threads); err != nil {
		return nil, err
	}
	if *f.device != "cpu" {
		if weightGrads {
			return nil, fmt.Errorf("--train-weights: weight training runs on the CPU only; leave out --device %s (the GPU trains masks only)", *f.device)
		}
		if *f.bench {
			return nil, fmt.Errorf("--bench times the CPU trainer over thread counts; leave out --device %s (on the GPU a run's progress lines report tokens/s)", *f.device)
		}
	}
	if *f.bench {
		if _, err := parseThreadList("--bench-threads", *f.benchThreads); err != nil {
			return nil, err
		}
		if *f.benchReps < 1 {
			return nil, fmt.Errorf("--bench-reps %d: want at least 1", *f.benchReps)
		}
	} else {
		if *f.out == "" {
			return nil, fmt.Errorf("--out is required")
		}
		// Refuse a folder of someone else's files before the model and data load.
		if st, err := os.Stat(*f.out); err == nil && !st.IsDir() {
			return nil, fmt.Errorf("--out %s is a file; want a folder", *f.out)
		} else if err == nil {
			if _, err := train.CheckOut(*f.out, method, weightGrads, *f.force); err != nil {
				return nil, fmt.Errorf("--out: %w", err)
			}
		}
	}
	for _, c := range []struct {
		flag   string
		v, min int
	}{{"--steps", *f.steps, 1}, {"--batch", *f.batch, 1}, {"--seq-len", *f.seqLen, 2}, {"--sink", *f.sink, 0},
		{"--window", *f.window, 1}, {"--checkpoint-every", *f.every, 0}, {"--docs", *f.docs, 0}} {
		if c.v < c.min {
			return nil, fmt.Errorf("%s %d: want at least %d", c.flag, c.v, c.min)
		}
	}
	// generated documents take seeds 1000 + --seed: past this they would wrap around
	// onto other seeds
	if *f.data == "" && *f.seed > math.MaxUint64-1000 {
		return nil, fmt.Errorf("--seed %d: want at most %d with generated documents (they use seeds 1000 + --seed)", *f.seed, uint64(math.MaxUint64-1000))
	}
	// time.Duration holds about 153 million minutes; NaN would mean no limit at all
	if !(*f.maxMinutes >= 0 && *f.maxMinutes <= 1e8) {
		return nil, fmt.Errorf("--max-minutes %v: want 0 (no limit) to 1e8", *f.maxMinutes)
	}
	s := &trainSetup{}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	dev, err := openDevice(*f.device)
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, dev.close)
	m, _, dir, err := loadModelWith(*f.model, false)
	if err != nil {
		return nil, err
	}
	s.m = m
	s.closers = append(s.closers, func() { m.Close() })
	if *f.seqLen > m.Config.MaxPositions && m.Config.MaxPositions > 0 {
		return nil, fmt.Errorf("--seq-len %d is longer than the model's context (%d tokens)", *f.seqLen, m.Config.MaxPositions)
	}
	net, closeNet, err := dev.trainNet(m, train.Options{MaxLen: *f.seqLen, Sink: *f.sink, Window: *f.window, WeightGrads: weightGrads})
	if err != nil {
		return nil, err
	}
	s.net = net
	s.closers = append(s.closers, closeNet)
	if *f.bench {
		return s, nil
	}
	if *f.data != "" {
		s.docs, err = train.LoadDocs(*f.data)
	} else {
		s.docs, err = f.generate(dir, tasksMix)
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

// generate makes training documents of --seq-len tokens, as `kvfoot tasks dump`
// would, from seeds 1000 + --seed of the training split (the built-in model was
// pre-trained on seed 1; evaluation uses another split).
func (f runFlags) generate(modelDir string, names []string) ([]train.Doc, error) {
	tok, err := loadTokenizer("", modelDir)
	if err != nil {
		return nil, err
	}
	var c *tasks.Corpus
	if *f.corpus != "" {
		c, err = tasks.LoadCorpus(*f.corpus)
	} else {
		c, err = tasks.DefaultCorpus()
	}
	if err != nil {
		return nil, fmt.Errorf("--corpus: %w", err)
	}
	count := *f.docs
	if count <= 0 {
		count = min(64, max(1, (*f.steps**f.batch+len(names)-1)/len(names)))
	}
	fmt.Fprintf(os.Stderr, "generating %d documents of %d tokens (%s)\n", count*len(names), *f.seqLen, strings.Join(names, ", "))
	return train.MakeDocs(names, *f.seqLen, count, 1000+*f.seed, tasks.Options{Corpus: c, Tokenizer: tok})
}

// runBench times training steps for every --bench-threads count.
func (f runFlags) runBench(m *model.Model, gated bool) error {
	threads, err := parseThreadList("--bench-threads", *f.benchThreads)
	if err != nil {
		return err
	}
	ids := make([]int, *f.seqLen)
	for i := range ids {
		ids[i] = (i*7919 + 13) % m.Config.Vocab
	}
	fmt.Printf("| threads | seq len | tokens/s | ± sd | matmul | attention | rest |\n| --: | --: | --: | --: | --: | --: | --: |\n")
	for _, t := range threads {
		tensor.SetThreads(t)
		n, err := train.New(m, train.Options{MaxLen: *f.seqLen, Sink: *f.sink, Window: *f.window, Workers: t})
		if err != nil {
			return err
		}
		r, err := train.Bench(n, ids, *f.benchReps, gated)
		if err != nil {
			return err
		}
		mean, sd := meanSD(r.TokensPerS)
		fmt.Printf("| %d | %d | %.0f | %.0f | %.0f%% | %.0f%% | %.0f%% |\n", t, r.SeqLen, mean, sd, 100*r.Matmul, 100*r.Attn, 100*r.Rest)
	}
	return nil
}

func meanSD(v []float64) (float64, float64) {
	var s, ss float64
	for _, x := range v {
		s += x
	}
	mean := s / float64(len(v))
	for _, x := range v {
		ss += (x - mean) * (x - mean)
	}
	if len(v) < 2 {
		return mean, 0
	}
	return mean, math.Sqrt(ss / float64(len(v)-1))
}

func runPruLong(args []string) error {
	fs := newFlags("prulong")
	rf := addRunFlags(fs, 200, 4096)
	target := fs.Float64("target-sparsity", 0.7, "head sparsity to reach (fraction of streaming KV heads), in [0, 1)")
	weights := fs.Bool("train-weights", false, "also train the weights (lr 1e-5; written as OUT/model.safetensors; CPU only)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if !(*target >= 0 && *target < 1) {
		return fmt.Errorf("--target-sparsity %v is outside [0, 1)", *target)
	}
	s, err := rf.setup("prulong", train.MixTasks, *weights)
	if err != nil {
		return err
	}
	defer s.close()
	if *rf.bench {
		return rf.runBench(s.m, true)
	}
	res, err := train.PruLong(s.net, &train.PruLongConfig{RunConfig: rf.config(), TargetSparsity: *target, TrainWeights: *weights}, s.docs)
	return report(res, err, *rf.out, "masks_soft.tsv")
}

// report ends a training command.
func report(res train.Result, err error, out, soft string) error {
	if err != nil {
		return err
	}
	if !res.Finished {
		fmt.Fprintf(os.Stderr, "stopped at step %d with a checkpoint in %s; run the same command again to resume\n", res.Step, out)
		return nil
	}
	fmt.Fprintf(os.Stderr, "done: %d steps; masks in %s (%s, masks_sp0.1.tsv … masks_sp0.9.tsv)\n", res.Step, out, soft)
	return nil
}

// newProgress reports training steps: a progress bar with ETA on a terminal, a log
// line every 10 steps (and the last) otherwise.
func newProgress(w *os.File) func(train.Status) {
	fi, err := w.Stat()
	tty := err == nil && fi.Mode()&os.ModeCharDevice != 0
	return func(s train.Status) {
		done := s.Step - s.Resumed
		eta := time.Duration(0)
		if done > 0 {
			eta = time.Duration(float64(s.Elapsed) / float64(done) * float64(s.Steps-s.Step))
		}
		stats := fmt.Sprintf("loss %.4f  sparsity %.3f", s.Loss, s.Sparsity)
		if s.Target > 0 || s.Lambda1 != 0 || s.Lambda2 != 0 {
			stats += fmt.Sprintf(" (target %.3f)  λ1 %.3g  λ2 %.3g", s.Target, s.Lambda1, s.Lambda2)
		}
		if tty {
			const width = 24
			fill := width * s.Step / s.Steps
			fmt.Fprintf(w, "\r[%s%s] %d/%d  %s  %.0f tok/s  ETA %s ", strings.Repeat("=", fill), strings.Repeat(" ", width-fill),
				s.Step, s.Steps, stats, s.TokensPerS, eta.Round(time.Second))
			if s.Step == s.Steps {
				fmt.Fprintln(w)
			}
			return
		}
		if s.Step%10 == 0 || s.Step == s.Steps || done == 1 {
			fmt.Fprintf(w, "step %d/%d  %s  lr×%.3f  %d tokens  %.0f tok/s  elapsed %s  ETA %s\n", s.Step, s.Steps, stats, s.LR,
				s.Tokens, s.TokensPerS, s.Elapsed.Round(time.Second), eta.Round(time.Second))
		}
	}
}
