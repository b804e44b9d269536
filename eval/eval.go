// Package eval runs methods × tasks × lengths × samples on a model, appends one
// result per sample to a JSONL file (so that an interrupted run resumes where it
// stopped), and aggregates the scores into a report.
package eval

import (
	"fmt"
	"io"
	"time"

	"github.com/kvfoot/kvfoot/tasks"
)

// Backend runs one prompt under one method (a KV cache policy spec) with greedy
// decoding, generating at most maxNew tokens and stopping when stop says so.
type Backend interface {
	// Context is the model's context length in tokens.
	Context() int
	Run(method string, prompt []int, maxNew int, stop func(out []int) bool) (Output, error)
}

// Output is what one run produced.
type Output struct {
	IDs     []int
	Prefill time.Duration
	Decode  time.Duration
	// The KV footprint the cache's meter measured (method-spec 1.1) and its peak, as
	// fractions of full causal attention, and the peak in bytes; zero if not measured.
	Footprint, Peak float64
	PeakBytes       int64
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
	// BOS, if ≥ 0, is prepended to every prompt (on top of its Length tokens).
	BOS int
	// Data, when set, replaces the generated tasks: loaded datasets (HELMET JSONL),
	// whose prompts are cut at the end of their context to fit the model's context
	// minus the generation budget, as HELMET does. Tasks and Lengths are then unused.
	Data []Dataset
	// Results is the JSONL file of per-sample results ("" for none); samples already
	// in it are not run again.
	Results  string
	Progress io.Writer
}

// Dataset is a named list of loaded instances.
type Dataset struct {
	Name      string
	Instances []*tasks.Instance
}

// Sample is one line of the results file. Later issues add fields (footprint, peak)
// with omitempty, so that old files stay readable.
type Sample struct {
	Model     string   `json:"model"`
	Method    string   `json:"method"`
	Task      string   `json:"task"`
	Category  string   `json:"category"`
	Length    int      `json:"length"`
	Index     int      `json:"index"`
	Seed      uint64   `json:"seed"`
	Metric    string   `json:"metric"`
	Score     float64  `json:"score"` // 0–100
	InputLen  int      `json:"input_len"`
	OutputLen int      `json:"output_len"`
	Output    string   `json:"output"`
	Answers   []string `json:"answers"`
	Prefill   float64  `json:"prefill_seconds"`
	Decode    float64  `json:"decode_seconds"`
	Footprint float64  `json:"kv_footprint,omitempty"`
	Peak      float64  `json:"kv_peak,omitempty"`
	PeakBytes int64    `json:"peak_bytes,omitempty"`
}

func (s *Sample) key() string {
	return fmt.Sprintf("%s\x00%s\x00%s\x00%d\x00%d", s.Model, s.Method, s.Task, s.Length, s.Seed)
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
// means of the per-sample ratios, as the paper aggregates them (method-spec 1.7), over
// the samples that carry one.
type Result struct {
	Task      string  `json:"task"`
	Category  string  `json:"category"`
	Length    int     `json:"length"`
	Score     float64 `json:"score"` // 0–100
	Samples   int     `json:"samples"`
	Footprint float64 `json:"kv_footprint,omitempty"`
	Peak      float64 `json:"kv_peak,omitempty"`
}

// Check validates a configuration against the model before anything runs.
func Check(cfg *Config, contextLen int) error {
	if len(cfg.Data) > 0 {
		if len(cfg.Methods) == 0 || cfg.Samples < 1 {
			return fmt.Errorf("eval needs at least one method and sample")
		}
		return nil
	}
	if len(cfg.Methods) == 0 || len(cfg.Tasks) == 0 || len(cfg.Lengths) == 0 || cfg.Samples < 1 {
		return fmt.Errorf("eval needs at least one method, task, length and sample")
	}
	for _, t := range cfg.Tasks {
		if err := tasks.Check(t, false); err != nil {
			return err
		}
	}
	for _, l := range cfg.Lengths {
		if contextLen > 0 && l > contextLen {
			return fmt.Errorf("length %d is beyond the model's context of %d tokens", l, contextLen)
		}
	}
	// A length too short for a task fails now rather than hours into a run.
	for _, t := range cfg.Tasks {
		for _, l := range cfg.Lengths {
			if _, err := tasks.Generate(t, l, 0, cfg.Seed, cfg.Gen); err != nil {
				return err
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
	truncate       bool // loaded data: cut the context to fit
}

func (cfg *Config) cells(context int) []cell {
	var cs []cell
	for _, ds := range cfg.Data {
		ins := ds.Instances
		cs = append(cs, cell{task: ds.Name, category: ins[0].Category, length: context,
			samples: min(cfg.Samples, len(ins)), truncate: true,
			instance: func(i int) (*tasks.Instance, error) { return ins[i], nil }})
	}
	if len(cfg.Data) > 0 {
		return cs
	}
	for _, task := range cfg.Tasks {
		for _, length := range cfg.Lengths {
			cs = append(cs, cell{task: task, category: tasks.Category(task), length: length, samples: cfg.Samples,
				instance: func(i int) (*tasks.Instance, error) { return tasks.Generate(task, length, i, cfg.Seed, cfg.Gen) }})
		}
	}
	return cs
}

// Run evaluates every (method, task, length, sample), or every method on the loaded
// datasets, skipping samples already in the results file, and returns the report over
// all of them.
func Run(cfg Config, b Backend) (*Report, error) {
	if err := Check(&cfg, b.Context()); err != nil {
		return nil, err
	}
	store, err := openStore(cfg.Results)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	tok := cfg.Gen.Tokenizer
	cells := cfg.cells(b.Context())
	total := 0
	for _, c := range cells {
		total += len(cfg.Methods) * c.samples
	}
	done := 0
	rep := &Report{Model: cfg.Model}
	for _, method := range cfg.Methods {
		mr := MethodReport{Name: method, Results: []Result{}}
		for _, c := range cells {
			res := Result{Task: c.task, Category: c.category, Length: c.length}
			sum := 0.0
			var fp, peak meanOf
			for i := range c.samples {
				done++
				in, err := c.instance(i)
				if err != nil {
					return nil, err
				}
				s := &Sample{Model: cfg.Model, Method: method, Task: c.task, Category: in.Category,
					Length: c.length, Index: i, Seed: in.Seed, Metric: in.Metric}
				if old, ok := store.done[s.key()]; ok {
					sum += old.Score
					res.Samples++
					fp.add(old.Footprint)
					peak.add(old.Peak)
					continue
				}
				var prompt []int
				if c.truncate {
					max := c.length - in.MaxNew
					if cfg.BOS >= 0 {
						max--
					}
					if prompt, err = in.Truncate(tok, max); err != nil {
						return nil, fmt.Errorf("%s, sample %d: %w", c.task, i, err)
					}
				} else {
					prompt = tok.Encode(in.Prompt)
				}
				if cfg.BOS >= 0 {
					prompt = append([]int{cfg.BOS}, prompt...)
				}
				stop := func(out []int) bool { return containsStop(tok.Decode(out), in.Stop) }
				out, err := b.Run(method, prompt, in.MaxNew, stop)
				if err != nil {
					return nil, fmt.Errorf("%s, %s, length %d, sample %d: %w", method, c.task, c.length, i, err)
				}
				text := cutStop(tok.Decode(out.IDs), in.Stop)
				s.Score = 100 * in.Score(text)
				s.InputLen, s.OutputLen, s.Output, s.Answers = len(prompt), len(out.IDs), text, in.Answers
				s.Prefill, s.Decode = out.Prefill.Seconds(), out.Decode.Seconds()
				s.Footprint, s.Peak, s.PeakBytes = out.Footprint, out.Peak, out.PeakBytes
				if err := store.add(s); err != nil {
					return nil, err
				}
				sum += s.Score
				res.Samples++
				fp.add(s.Footprint)
				peak.add(s.Peak)
				if cfg.Progress != nil {
					fmt.Fprintf(cfg.Progress, "eval %d/%d: %s %s %d #%d: score %.0f, %d+%d tokens, KV footprint %.3f, prefill %.1fs, decode %.1fs\n",
						done, total, method, c.task, c.length, i, s.Score, s.InputLen, s.OutputLen, s.Footprint, s.Prefill, s.Decode)
				}
			}
			res.Score = sum / float64(res.Samples)
			res.Footprint, res.Peak = fp.mean(), peak.mean()
			mr.Results = append(mr.Results, res)
		}
		rep.Methods = append(rep.Methods, mr)
	}
	return rep, nil
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
