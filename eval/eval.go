// Package eval runs methods × tasks × lengths × samples on a model, appends one
// result per sample to a JSONL file (so that an interrupted run resumes where it
// stopped), and aggregates the scores into a report.
package eval

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/kvfoot/kvfoot/tasks"
)

// Backend runs one prompt under one method (a KV cache policy spec) with greedy
// decoding, generating at most maxNew tokens and stopping when stop says so.
type Backend interface {
	// Context is the model's context length in tokens.
	Context() int
	// Check reports whether method can run here (for a model: whether it is a policy
	// spec valid for its shape), so that a bad method fails before the first sample.
	Check(method string) error
	// Settings are what of the backend can change a result (for a model: its weights'
	// hash and the pre-fill chunk size); every results line records them, and a stored
	// result is reused only if they match. Run asks for them only with a results file.
	Settings() (map[string]string, error)
	// Run's error is a *DeviceFault (errors.As) when the device failed on this prompt:
	// the sample is recorded as failed and the run goes on. Any other error stops the run.
	Run(method string, prompt []int, maxNew int, stop func(out []int) bool) (Output, error)
}

// DeviceFault is an error of Backend.Run that fails its sample, not the run: the device ran
// out of memory for the sample's cache, or a kernel or the cache's storage failed on it.
type DeviceFault struct {
	Err error
	// Unusable is set when the device can run nothing after the fault (a sticky CUDA
	// error): the sample is still recorded as failed, but the run stops with it.
	Unusable error
}

func (f *DeviceFault) Error() string { return "the device failed: " + f.Err.Error() }
func (f *DeviceFault) Unwrap() error { return f.Err }

// Output is what one run produced.
type Output struct {
	IDs     []int
	Prefill time.Duration
	Decode  time.Duration
	// The KV footprint the cache's meter measured (docs/METHODS.md §1.1) and its peak, as
	// fractions of full causal attention, and the peak in bytes; zero if not measured.
	Footprint, Peak float64
	PeakBytes       int64
	// Timeline is the KV entries of every forward (over time).
	Timeline []TimelineStep
}

// TimelineStep is one forward as the meter saw it, in entries per stored head (the
// mean over layers and heads).
type TimelineStep struct {
	Pos     int     `json:"pos"` // position of the forward's first token
	N       int     `json:"n"`
	Prefill bool    `json:"prefill"`
	Visible float64 `json:"visible"` // entries seen by the forward's last query
	Held    float64 `json:"held"`    // entries held after it
	Bytes   int64   `json:"bytes"`   // storage held after it (the whole cache)
}

// Config is one evaluation.
type Config struct {
	Model   string // recorded in results and the report
	Methods []string
	Tasks   []string
	Lengths []int
	Samples int
	Seed    uint64
	Gen     tasks.Options // corpus and tokenizer; Queries is ignored
	// Tokenizer identifies Gen.Tokenizer in the results (the SHA-256 of its file).
	Tokenizer string
	// BOS, if ≥ 0, is prepended to every prompt (on top of its Length tokens).
	BOS int
	// TaskStop stops generation at the task's stop string ("\n" for most) and scores
	// the text before it. Off, generation runs to an EOS or the task's budget and the
	// whole answer is scored, as HELMET does (its configs' stop_new_line key is never
	// read).
	TaskStop bool
	// Data, when set, replaces the generated tasks: loaded datasets (HELMET JSONL),
	// whose prompts are cut at the end of their context to fit the model's context
	// minus the generation budget, as HELMET does. Tasks and Lengths are then unused.
	Data []Dataset
	// Results is the JSONL file of per-sample results ("" for none); samples already
	// in it are not run again.
	Results string
	// Also are other results files (the other shards'), read but never written:
	// samples in them are not run again either.
	Also []string
	// RetryFailed runs again the samples that the results files hold as failed on the
	// device (DeviceFault); off, a failed sample counts as done, as a result does.
	RetryFailed bool
	Progress    io.Writer
}

// Dataset is a named list of loaded instances.
type Dataset struct {
	Name      string
	Instances []*tasks.Instance
	SHA256    string // of the file they were loaded from, recorded in the results
}

// Sample is one line of the results file: which sample of which method it is, what it
// was made with, and what came out. A stored result is reused only when everything
// that can change it matches: the settings (the backend's, the tokenizer, the corpus
// or data file, BOS, the run's seed), the instance's seed, the generation budget and
// the prompt's token ids (by hash). Model is the folder as given, for the reader; the
// weights' hash among the settings is what is compared.
type Sample struct {
	Format    int               `json:"kvfoot_results"` // the results format version: marks a kvfoot results line
	Model     string            `json:"model"`
	Method    string            `json:"method"`
	Task      string            `json:"task"`
	Category  string            `json:"category"`
	Length    int               `json:"length"`
	Index     int               `json:"index"`
	Seed      uint64            `json:"seed"`    // the instance's seed
	MaxNew    int               `json:"max_new"` // the generation budget in tokens
	Prompt    string            `json:"prompt_sha256"`
	Settings  map[string]string `json:"settings"`
	Metric    string            `json:"metric"`
	Score     float64           `json:"score"` // 0–100
	InputLen  int               `json:"input_len"`
	OutputLen int               `json:"output_len"`
	Output    string            `json:"output"`
	Answers   []string          `json:"answers"`
	Prefill   float64           `json:"prefill_seconds"`
	Decode    float64           `json:"decode_seconds"`
	Footprint float64           `json:"kv_footprint,omitempty"`
	Peak      float64           `json:"kv_peak,omitempty"`
	PeakBytes int64             `json:"peak_bytes,omitempty"`
	// Failed is why the sample failed on the device (a DeviceFault); it has no output,
	// score or footprint then, and is left out of every mean.
	Failed string `json:"failed,omitempty"`
	// The study's fields: the method's name, its spec with the knob as {s}, the knob.
	Name     string  `json:"name,omitempty"`
	Template string  `json:"template,omitempty"`
	Knob     float64 `json:"knob,omitempty"`
	// Timeline is the first sample's KV entries after every forward.
	Timeline []TimelineStep `json:"timeline,omitempty"`
}

// Report is the aggregate: per method, the mean score of every task and length.
type Report struct {
	Model   string         `json:"model"`
	Methods []MethodReport `json:"methods"`
}

// MethodReport holds one method's results.
type MethodReport struct {
	Name    string   `json:"name"`
	Results []Result `json:"results"`
}

// Result is the mean over samples for one task and length. The footprint and peak are
// means of the per-sample ratios, as the paper aggregates them (docs/METHODS.md §1.7), over
// the samples that carry one. Samples that failed on the device are counted in Failed and
// left out of the means.
type Result struct {
	Task      string  `json:"task"`
	Category  string  `json:"category"`
	Length    int     `json:"length"`
	Score     float64 `json:"score"`   // 0–100
	Samples   int     `json:"samples"` // that ran
	Failed    int     `json:"failed,omitempty"`
	Footprint float64 `json:"kv_footprint,omitempty"`
	Peak      float64 `json:"kv_peak,omitempty"`
}

// Check validates a configuration against the backend before anything runs: every
// method, task and length, and that each prompt with its generation budget fits the
// model's context.
func Check(cfg *Config, b Backend) error {
	if len(cfg.Methods) == 0 || cfg.Samples < 1 {
		return fmt.Errorf("eval needs at least one method and sample")
	}
	if len(cfg.Data) == 0 && (len(cfg.Tasks) == 0 || len(cfg.Lengths) == 0) {
		return fmt.Errorf("eval needs at least one task and length, or loaded data")
	}
	for _, m := range cfg.Methods {
		if err := b.Check(m); err != nil {
			return fmt.Errorf("method %q: %w", m, err)
		}
	}
	ctx, bos := b.Context(), 0
	if cfg.BOS >= 0 {
		bos = 1
	}
	for _, ds := range cfg.Data {
		if len(ds.Instances) == 0 {
			return fmt.Errorf("dataset %s has no instances", ds.Name)
		}
		for i, in := range ds.Instances {
			// the context is cut to fit; the question and the budget must fit without it
			if ctx > 0 && in.MaxNew+bos >= ctx {
				return fmt.Errorf("%s, sample %d: the generation budget of %d tokens (plus %d BOS) leaves no room for a prompt in the model's context of %d tokens",
					ds.Name, i, in.MaxNew, bos, ctx)
			}
		}
	}
	if len(cfg.Data) > 0 {
		return nil
	}
	for _, t := range cfg.Tasks {
		if err := tasks.Check(t, false); err != nil {
			return err
		}
	}
	for _, l := range cfg.Lengths {
		if ctx > 0 && l > ctx {
			return fmt.Errorf("length %d is beyond the model's context of %d tokens", l, ctx)
		}
	}
	// A length too short for a task, or one that leaves no room to answer, fails now
	// rather than hours into a run.
	for _, t := range cfg.Tasks {
		for _, l := range cfg.Lengths {
			in, err := tasks.Generate(t, l, 0, cfg.Seed, cfg.Gen)
			if err != nil {
				return err
			}
			if ctx > 0 && l+bos+in.MaxNew > ctx {
				return fmt.Errorf("%s at length %d: the prompt of %d tokens (BOS included) and its generation budget of %d tokens pass the model's context of %d tokens",
					t, l, l+bos, in.MaxNew, ctx)
			}
		}
	}
	return nil
}

// cell is one (task, length) of the report, or one loaded dataset.
type cell struct {
	task, category string
	length         int
	samples        int
	instance       func(i int) (*tasks.Instance, error)
	truncate       bool              // loaded data: cut the context to fit
	settings       map[string]string // what besides the sample can change its result
}

// cells lists the report's cells, each with its settings when results are stored.
func (cfg *Config) cells(b Backend) ([]cell, error) {
	common := map[string]string{"bos": strconv.Itoa(cfg.BOS), "generation": "helmet"}
	if cfg.TaskStop {
		common["generation"] = "task_stop"
	}
	if cfg.Tokenizer != "" {
		common["tokenizer_sha256"] = cfg.Tokenizer
	}
	if cfg.Results != "" {
		bs, err := b.Settings()
		if err != nil {
			return nil, err
		}
		for k, v := range bs {
			common[k] = v
		}
	}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range common {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	var cs []cell
	for _, ds := range cfg.Data {
		ins := ds.Instances
		cs = append(cs, cell{task: ds.Name, category: ins[0].Category, length: b.Context(),
			samples: min(cfg.Samples, len(ins)), truncate: true,
			instance: func(i int) (*tasks.Instance, error) { return ins[i], nil },
			settings: with(map[string]string{"data_sha256": ds.SHA256})})
	}
	if len(cfg.Data) > 0 {
		return cs, nil
	}
	gen := map[string]string{"seed": strconv.FormatUint(cfg.Seed, 10)}
	if cfg.Gen.Corpus != nil {
		gen["corpus"] = cfg.Gen.Corpus.Fingerprint()
	}
	for _, task := range cfg.Tasks {
		for _, length := range cfg.Lengths {
			cs = append(cs, cell{task: task, category: tasks.Category(task), length: length, samples: cfg.Samples,
				instance: func(i int) (*tasks.Instance, error) { return tasks.Generate(task, length, i, cfg.Seed, cfg.Gen) },
				settings: with(gen)})
		}
	}
	return cs, nil
}

// Run evaluates every (method, task, length, sample), or every method on the loaded
// datasets, skipping samples already in the results file, and returns the report over
// all of them.
func Run(cfg Config, b Backend) (*Report, error) {
	if err := Check(&cfg, b); err != nil {
		return nil, err
	}
	r, err := newRunner(&cfg, b)
	if err != nil {
		return nil, err
	}
	defer r.close()
	total := 0
	for _, c := range r.cells {
		total += len(cfg.Methods) * c.samples
		// results of this run's samples made with other settings fail the run now
		for _, method := range cfg.Methods {
			for i := range c.samples {
				if err := r.store.check(sampleID{method, c.task, c.length, i}, c.settings); err != nil {
					return nil, err
				}
			}
		}
	}
	done := 0
	rep := &Report{Model: cfg.Model}
	for _, method := range cfg.Methods {
		mr := MethodReport{Name: method, Results: []Result{}}
		for _, c := range r.cells {
			res := Result{Task: c.task, Category: c.category, Length: c.length}
			sum := 0.0
			var fp, peak meanOf
			reqs := make([]sampleReq, c.samples)
			for i := range reqs {
				reqs[i] = sampleReq{c: c, i: i}
			}
			got := make([]*Sample, c.samples)
			err := r.samplesOf(method, reqs, nil, func(q sampleReq, s *Sample, ran bool) error {
				done++
				got[q.i] = s
				switch {
				case !ran || cfg.Progress == nil:
				case s.Failed != "":
					fmt.Fprintf(cfg.Progress, "eval %d/%d: %s %s %d #%d: failed: %s\n", done, total, method, c.task, c.length, q.i, s.Failed)
				default:
					fmt.Fprintf(cfg.Progress, "eval %d/%d: %s %s %d #%d: score %.0f, %d+%d tokens, KV footprint %.3f, prefill %.1fs, decode %.1fs\n",
						done, total, method, c.task, c.length, q.i, s.Score, s.InputLen, s.OutputLen, s.Footprint, s.Prefill, s.Decode)
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
			for _, s := range got {
				if s.Failed != "" {
					res.Failed++
					continue
				}
				sum += s.Score
				res.Samples++
				fp.add(s.Footprint)
				peak.add(s.Peak)
			}
			if res.Samples > 0 {
				res.Score = sum / float64(res.Samples)
			}
			res.Footprint, res.Peak = fp.mean(), peak.mean()
			mr.Results = append(mr.Results, res)
		}
		rep.Methods = append(rep.Methods, mr)
	}
	return rep, nil
}

// runner runs samples for Run and RunStudy: it prepares every instance's prompt once,
// reuses the results file's samples and appends the new ones.
type runner struct {
	cfg      *Config
	b        Backend
	store    *store
	cells    []*cell
	prepared map[prepKey]*prepared
	decode   func([]int) string
}

type prepKey struct {
	task          string
	length, index int
}

// prepared is an instance with its prompt's token ids.
type prepared struct {
	in     *tasks.Instance
	prompt []int
	hash   string
}

func newRunner(cfg *Config, b Backend) (*runner, error) {
	st, err := openStore(cfg.Results, cfg.Progress)
	if err != nil {
		return nil, err
	}
	st.retryFailed = cfg.RetryFailed
	for _, path := range cfg.Also {
		if path == cfg.Results {
			continue
		}
		if err := st.readOther(path); err != nil {
			st.Close()
			return nil, err
		}
	}
	cs, err := cfg.cells(b)
	if err != nil {
		st.Close()
		return nil, err
	}
	r := &runner{cfg: cfg, b: b, store: st, prepared: map[prepKey]*prepared{}, decode: cfg.Gen.Tokenizer.Decode}
	for i := range cs {
		r.cells = append(r.cells, &cs[i])
	}
	// HELMET scores the answer decoded without special tokens (EOS, say).
	if d, ok := cfg.Gen.Tokenizer.(interface{ DecodeSkipSpecial([]int) string }); ok {
		r.decode = d.DecodeSkipSpecial
	}
	return r, nil
}

func (r *runner) close() error { return r.store.Close() }

// cell returns the cell of task at length (nil if the run has none).
func (r *runner) cell(task string, length int) *cell {
	for _, c := range r.cells {
		if c.task == task && c.length == length {
			return c
		}
	}
	return nil
}

// prepare returns sample i of c with its prompt: generated (or loaded and cut to fit),
// encoded, BOS prepended.
func (r *runner) prepare(c *cell, i int) (*prepared, error) {
	k := prepKey{c.task, c.length, i}
	if p, ok := r.prepared[k]; ok {
		return p, nil
	}
	in, err := c.instance(i)
	if err != nil {
		return nil, err
	}
	tok := r.cfg.Gen.Tokenizer
	var prompt []int
	if c.truncate {
		max := c.length - in.MaxNew
		if r.cfg.BOS >= 0 {
			max--
		}
		if prompt, err = in.Truncate(tok, max); err != nil {
			return nil, fmt.Errorf("%s, sample %d: %w", c.task, i, err)
		}
	} else {
		prompt = tok.Encode(in.Prompt)
	}
	if r.cfg.BOS >= 0 {
		prompt = append([]int{r.cfg.BOS}, prompt...)
	}
	p := &prepared{in: in, prompt: prompt, hash: promptHash(prompt)}
	r.prepared[k] = p
	return p, nil
}

// sample returns the result of method on sample i of c: the stored one, or a new run
// (ran) appended to the results file. tag, when set, adds the study's fields to a new
// result before it is stored. A sample the device failed on is stored as failed (its
// Failed says why) and returned without an error, unless the device is unusable after it.
func (r *runner) sample(method string, c *cell, i int, tag func(*Sample)) (s *Sample, ran bool, err error) {
	t, err := r.begin(method, sampleReq{c, i, tag})
	if err != nil {
		return nil, false, err
	}
	if t.old != nil {
		return t.old, false, nil
	}
	out, err := r.b.Run(method, t.p.prompt, t.p.in.MaxNew, t.stop)
	s, err = r.finish(t, out, err)
	return s, err == nil || s != nil, err
}

// sampleReq asks for sample i of c, with the study's fields (tag).
type sampleReq struct {
	c   *cell
	i   int
	tag func(*Sample)
}

// pendingSample is a sample to run, or the stored result (old) that stands for it.
type pendingSample struct {
	sampleReq
	p    *prepared
	s    *Sample // the result to fill in
	old  *Sample
	stop func([]int) bool
}

// begin prepares a sample and looks it up in the results.
func (r *runner) begin(method string, q sampleReq) (*pendingSample, error) {
	p, err := r.prepare(q.c, q.i)
	if err != nil {
		return nil, err
	}
	in := p.in
	s := &Sample{Model: r.cfg.Model, Method: method, Task: q.c.task, Category: in.Category,
		Length: q.c.length, Index: q.i, Seed: in.Seed, MaxNew: in.MaxNew, Prompt: p.hash,
		Settings: q.c.settings, Metric: in.Metric}
	old, err := r.store.lookup(s)
	if err != nil {
		return nil, err
	}
	t := &pendingSample{sampleReq: q, p: p, s: s, old: old, stop: func([]int) bool { return false }}
	if r.cfg.TaskStop {
		t.stop = func(out []int) bool { return containsStop(r.decode(out), in.Stop) }
	}
	return t, nil
}

// finish scores what the backend returned for t and stores it. A sample the device
// failed on is stored as failed; it is returned with an error when the device is
// unusable after it.
func (r *runner) finish(t *pendingSample, out Output, err error) (*Sample, error) {
	s, in, c, i := t.s, t.p.in, t.c, t.i
	method := s.Method
	var fault *DeviceFault
	if errors.As(err, &fault) {
		s.Failed, s.InputLen, s.Answers = fault.Error(), len(t.p.prompt), in.Answers
		if t.tag != nil {
			t.tag(s)
		}
		if err := r.store.add(s); err != nil {
			return nil, err
		}
		if fault.Unusable != nil {
			return s, fmt.Errorf("%s, %s, length %d, sample %d: %v; the device is unusable after it (%v): the sample is recorded as failed, and the run stops here; run the same command again once the device is back to go on (--retry-failed runs the failed samples again)",
				method, c.task, c.length, i, fault, fault.Unusable)
		}
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s, %s, length %d, sample %d: %w", method, c.task, c.length, i, err)
	}
	text := r.decode(out.IDs)
	if r.cfg.TaskStop {
		text = cutStop(text, in.Stop)
	}
	s.Score = 100 * in.Score(text)
	s.InputLen, s.OutputLen, s.Output, s.Answers = len(t.p.prompt), len(out.IDs), text, in.Answers
	s.Prefill, s.Decode = out.Prefill.Seconds(), out.Decode.Seconds()
	s.Footprint, s.Peak, s.PeakBytes = out.Footprint, out.Peak, out.PeakBytes
	if i == 0 {
		s.Timeline = out.Timeline
	}
	if t.tag != nil {
		t.tag(s)
	}
	if err := r.store.add(s); err != nil {
		return nil, err
	}
	return s, nil
}

// samplesOf returns the results of method on every sample of reqs, calling each with
// every one as it comes: the stored ones first, then those run now (ran), together
// when the backend batches (a BatchBackend with a BatchSize above 1), in the order
// they finish. stop, when set, is asked after each sample; its error ends the run.
func (r *runner) samplesOf(method string, reqs []sampleReq, stop func() error, each func(q sampleReq, s *Sample, ran bool) error) error {
	bb, ok := r.b.(BatchBackend)
	if !ok || bb.BatchSize() <= 1 {
		for _, q := range reqs {
			if stop != nil {
				if err := stop(); err != nil {
					return err
				}
			}
			s, ran, err := r.sample(method, q.c, q.i, q.tag)
			if err != nil {
				return err
			}
			if err := each(q, s, ran); err != nil {
				return err
			}
		}
		return nil
	}
	var todo []*pendingSample
	var jobs []Job
	for _, q := range reqs {
		t, err := r.begin(method, q)
		if err != nil {
			return err
		}
		if t.old != nil {
			if err := each(q, t.old, false); err != nil {
				return err
			}
			continue
		}
		todo = append(todo, t)
		jobs = append(jobs, Job{Prompt: t.p.prompt, MaxNew: t.p.in.MaxNew, Stop: t.stop})
	}
	if len(jobs) == 0 {
		return nil
	}
	if stop != nil {
		if err := stop(); err != nil {
			return err
		}
	}
	return bb.RunBatch(method, jobs, func(k int, out Output, err error) error {
		t := todo[k]
		s, err := r.finish(t, out, err)
		if s != nil {
			if eerr := each(t.sampleReq, s, true); eerr != nil && err == nil {
				err = eerr
			}
		}
		if err == nil && stop != nil {
			err = stop()
		}
		return err
	})
}

// meanOf averages the positive values it is given (zero marks "not measured").
type meanOf struct {
	sum float64
	n   int
}

func (m *meanOf) add(v float64) {
	if v > 0 {
		m.sum += v
		m.n++
	}
}

func (m *meanOf) mean() float64 {
	if m.n == 0 {
		return 0
	}
	return m.sum / float64(m.n)
}
