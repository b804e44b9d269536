package eval

import (
	"fmt"
	"slices"
	"time"

	"github.com/kvfoot/kvfoot/kv"
	"github.com/kvfoot/kvfoot/model"
)

// Job is one prompt of a batch: what Backend.Run takes.
type Job struct {
	Prompt []int
	MaxNew int
	Stop   func(out []int) bool
}

// BatchBackend is a Backend that runs several prompts of one method together.
type BatchBackend interface {
	Backend
	// BatchSize is the most prompts RunBatch runs at once; 1 runs them one by one.
	BatchSize() int
	// RunBatch runs every job under method and calls done once for each, as it finishes,
	// with what Run would have returned for it; a job starts as soon as one of the
	// running ones finishes. An error of done stops the batch (the running jobs are
	// dropped) and is returned.
	RunBatch(method string, jobs []Job, done func(job int, out Output, err error) error) error
}

// BatchSize is the most samples run together (Batch, at least 1).
func (mb *ModelBackend) BatchSize() int { return max(mb.Batch, 1) }

// batchJob is a job running in a batch: its cache, where it is and what it generated.
type batchJob struct {
	index int
	Job
	sc       *sampleCache
	peak     int64 // the cache's predicted peak bytes
	pre      int   // tokens pre-filled; with DecodeLast the prompt's last one is fed as a decode step
	patch    int
	ids      []int
	start    time.Time
	prefill  time.Duration // to the first token
	firstTok time.Time
}

// RunBatch runs the jobs as the server runs requests (continuous batching): up to
// BatchSize at a time (and as many as KVBudget holds), each with its own cache, each
// forward taking one decode step of every job that decodes and the next pre-fill chunks
// of those that pre-fill (as many as fit StepRows), all in one
// model.Runner.ForwardBatch. Every cache sees the
// steps that Run would feed it, in the same order, and every job gets the same output
// when the forward's arithmetic per row is independent of the other rows (it is on the
// CPU with float weights). When a batched forward fails (an error, or a device fault),
// its caches may hold part of the step: each of its jobs runs again from the start,
// alone (Run), so that only the sample at fault fails.
func (mb *ModelBackend) RunBatch(method string, jobs []Job, done func(job int, out Output, err error) error) (err error) {
	var running []*batchJob
	var runner *model.Runner
	defer func() {
		for _, j := range running {
			if j.sc != nil {
				j.sc.close()
			}
		}
		if runner != nil {
			runner.Close()
		}
	}()
	next := 0
	var facts *kv.Facts
	if mb.KVBudget > 0 {
		if facts, err = kv.Describe(kv.Shape(mb.M.Shape()), method, mb.CacheOptions...); err != nil {
			return err
		}
	}
	held := int64(0) // the running jobs' predicted peaks
	finish := func(j *batchJob, out Output, err error) error {
		held -= j.peak
		if j.sc != nil {
			if cerr := j.sc.close(); cerr != nil && err == nil {
				err = mb.guard(func() error { return cerr })
			}
		}
		running = slices.DeleteFunc(running, func(r *batchJob) bool { return r == j })
		return done(j.index, out, err)
	}
	var seqs []model.Seq
	var batch []*batchJob
	for next < len(jobs) || len(running) > 0 {
		for len(running) < mb.BatchSize() && next < len(jobs) {
			j := &batchJob{index: next, Job: jobs[next], start: time.Now()}
			if facts != nil && len(jobs[next].Prompt) > 0 {
				peak, err := facts.PeakBytes(kv.Workload{Prompt: len(j.Prompt), MaxTokens: max(j.MaxNew, 0), Chunk: mb.Chunk})
				if err != nil {
					return err
				}
				if len(running) > 0 && held+peak > mb.KVBudget {
					break // it waits for room
				}
				j.peak = peak
				held += peak
			}
			next++
			running = append(running, j)
			if err := mb.guard(func() (err error) { j.sc, err = mb.startJob(method, j); return err }); err != nil {
				if err := finish(j, Output{}, err); err != nil {
					return err
				}
			}
		}
		if len(running) == 0 {
			break
		}
		seqs, batch = seqs[:0], batch[:0]
		rows, most := 0, max(mb.StepRows, mb.Chunk, 1)
		for _, j := range running {
			s, prefill := mb.stepOf(j)
			if prefill {
				if rows > 0 && rows+s.Step.Rows > most {
					continue
				}
				rows += s.Step.Rows
			}
			seqs, batch = append(seqs, s), append(batch, j)
		}
		if runner == nil {
			runner = model.NewRunner(mb.M, rows+len(batch))
		}
		if err := mb.guard(func() error { return runner.ForwardBatch(seqs) }); err != nil {
			runner.Close() // its buffers may be half grown
			runner = nil
			for _, j := range slices.Clone(batch) {
				j.sc.close()
				j.sc = nil
				out, err := mb.Run(method, j.Prompt, j.MaxNew, j.Stop)
				if err := finish(j, out, err); err != nil {
					return err
				}
			}
			continue
		}
		for i, j := range batch {
			out, end, err := mb.advance(j, &seqs[i])
			if end || err != nil {
				if err := finish(j, out, err); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// startJob checks a job as model.Generate does and builds its cache.
func (mb *ModelBackend) startJob(method string, j *batchJob) (*sampleCache, error) {
	if len(j.Prompt) == 0 {
		return nil, fmt.Errorf("generate: empty prompt")
	}
	if j.MaxNew < 0 {
		return nil, fmt.Errorf("generate: max tokens %d, want ≥ 0", j.MaxNew)
	}
	if ctx := mb.M.Config.MaxPositions; ctx > 0 && len(j.Prompt)+max(j.MaxNew-1, 0) > ctx {
		return nil, fmt.Errorf("generate: a prompt of %d tokens and %d new tokens need %d positions, past the model's context of %d",
			len(j.Prompt), j.MaxNew, len(j.Prompt)+max(j.MaxNew-1, 0), ctx)
	}
	sc, err := mb.newCache(method)
	if err != nil {
		return nil, err
	}
	j.pre = len(j.Prompt)
	if mb.DecodeLast && j.pre > 1 {
		j.pre--
	}
	j.patch = min(sc.cache.PatchLen(), j.pre)
	j.ids = make([]int, 0, min(j.MaxNew, 1<<16)) // as Generate's, so that no budget gives [], not null
	return sc, nil
}

// stepOf is j's next step, as model.Runner.Generate would feed it: the next pre-fill
// chunk (prefill), with the pre-filled part's last tokens appended as the patch when
// the cache asks for one, or a decode step.
func (mb *ModelBackend) stepOf(j *batchJob) (s model.Seq, prefill bool) {
	pos := j.sc.cache.Pos()
	if pos < j.pre {
		end := model.PlanChunks(j.pre, mb.Chunk, j.sc.cache.LocalChunk()).End(pos)
		ids := j.Prompt[pos:end]
		st := model.Step{Pos: pos, Rows: end - pos, Prefill: true, Final: end == j.pre}
		if j.patch > 0 && !st.Final {
			ids = append(ids[:len(ids):len(ids)], j.Prompt[j.pre-j.patch:j.pre]...)
			st.Rows, st.Patch = len(ids), j.patch
		}
		return model.Seq{Cache: j.sc.cache, IDs: ids, Step: st}, true
	}
	id := j.Prompt[len(j.Prompt)-1:] // DecodeLast's last prompt token
	if pos >= len(j.Prompt) {
		id = j.ids[len(j.ids)-1:]
	}
	return model.Seq{Cache: j.sc.cache, IDs: id, Step: model.Step{Pos: pos, Rows: 1}}, false
}

// advance takes the logits of j's step as Generate does: once the prompt is in, a
// greedy token, checked against the stop ids, the stop function and the budget. end
// says that j is done, with out.
func (mb *ModelBackend) advance(j *batchJob, s *model.Seq) (out Output, end bool, err error) {
	c := j.sc.cache
	if c.Pos() < len(j.Prompt) {
		return Output{}, false, nil // pre-fill chunks before the last one
	}
	if len(j.ids) >= j.MaxNew {
		return j.sc.output(j.ids, time.Since(j.start), 0), true, nil // a budget of 0
	}
	if err := model.CheckFinite(s.Logits, c.Pos()-1); err != nil {
		return Output{}, true, mb.guard(func() error { return fmt.Errorf("generate: %w", err) })
	}
	best := 0
	for i, v := range s.Logits {
		if v > s.Logits[best] {
			best = i
		}
	}
	j.ids = append(j.ids, best)
	if len(j.ids) == 1 {
		j.firstTok = time.Now()
		j.prefill = j.firstTok.Sub(j.start)
	}
	if j.Stop(j.ids) || slices.Contains(mb.M.Config.EOS, best) || len(j.ids) >= j.MaxNew {
		return j.sc.output(j.ids, j.prefill, time.Since(j.firstTok)), true, nil
	}
	return Output{}, false, nil
}
