package eval

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kvfoot/kvfoot/compute"
	"github.com/kvfoot/kvfoot/kv"
	"github.com/kvfoot/kvfoot/model"
	"github.com/kvfoot/kvfoot/tasks"
	"github.com/kvfoot/kvfoot/tokenizer"
)

const builtinDir = "../models/kvfoot-small"

// builtinStudy is a small study on the built-in model: full attention, DuoAttention's
// head masks, SnapKV* (eviction after every chunk, with the patch), Locret (a local
// final chunk) and the composition of PruLong, SnapKV* and 4-bit storage, at one
// sparsity, on two tasks of three samples each.
func builtinStudy(t *testing.T, m *model.Model, results string, batch int) (Study, *ModelBackend) {
	t.Helper()
	tok, err := tokenizer.Load(builtinDir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tasks.DefaultCorpus()
	if err != nil {
		t.Fatal(err)
	}
	var ms []Method
	for _, meth := range BuiltinMethods(builtinDir) {
		if slices.Contains([]string{"full", "duo", "snapkv*", "locret", "prulong+snapkv*+int4"}, meth.Name) {
			if meth.Missing != "" {
				t.Fatalf("%s: %s", meth.Name, meth.Missing)
			}
			ms = append(ms, meth)
		}
	}
	st := Study{
		Config: Config{Model: "kvfoot-small", Tasks: []string{"ruler_mk_needle", "json_kv"}, Lengths: []int{320}, Samples: 3, Seed: 5,
			BOS: m.Config.BOS, Gen: tasks.Options{Corpus: c, Tokenizer: tok}, Results: results},
		Methods:   ms,
		Threshold: 0.9, Grid: []float64{0.5}, Tol: 0.05, Step: 1.0 / 64, Bootstrap: 50,
	}
	return st, &ModelBackend{M: m, Chunk: 128, DecodeLast: true, Batch: batch}
}

func loadBuiltin(t *testing.T) *model.Model {
	t.Helper()
	m, err := model.Load(builtinDir, model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// readResults reads a results file as sample key → the line without its timings, and
// fails on a sample given twice.
func readResults(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var s Sample
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Fatal(err)
		}
		s.Prefill, s.Decode = 0, 0 // wall times
		k := fmt.Sprintf("%s %s %d #%d", s.Method, s.Task, s.Length, s.Index)
		if _, dup := out[k]; dup {
			t.Errorf("%s: %s recorded twice", path, k)
		}
		js, _ := json.Marshal(s)
		out[k] = string(js)
	}
	return out
}

// sameResults compares two results files sample by sample.
func sameResults(t *testing.T, what, want, got string) {
	t.Helper()
	w, g := readResults(t, want), readResults(t, got)
	if len(w) != len(g) {
		t.Errorf("%s: %d samples, want %d", what, len(g), len(w))
	}
	for k, line := range w {
		if g[k] != line {
			t.Errorf("%s: %s differs from the unbatched run:\n got %s\nwant %s", what, k, g[k], line)
		}
	}
}

// sameReports compares two study reports.
func sameReports(t *testing.T, what string, want, got *StudyReport) {
	t.Helper()
	w, _ := json.Marshal(want)
	g, _ := json.Marshal(got)
	if string(w) != string(g) {
		t.Errorf("%s: the report differs from the unbatched one:\n got %s\nwant %s", what, g, w)
	}
}

// A study with its samples batched gives the same results, line for line but the
// timings, and the same report as one sample at a time: on the CPU the batched forward's
// arithmetic per row is that of the forward of one sequence, and each cache is fed the
// same steps in the same order.
func TestStudyBatchedSameAsUnbatched(t *testing.T) {
	m := loadBuiltin(t)
	dir := t.TempDir()
	one, b1 := builtinStudy(t, m, filepath.Join(dir, "one.jsonl"), 1)
	want, err := RunStudy(one, b1, nil)
	if err != nil {
		t.Fatal(err)
	}
	scored := false
	for _, line := range readResults(t, one.Results) {
		scored = scored || strings.Contains(line, `"score":100`)
	}
	if !scored {
		t.Fatal("no sample scored: the comparison would hold for a model that answers nothing")
	}
	for _, batch := range []int{4, 16} {
		st, b := builtinStudy(t, m, filepath.Join(dir, fmt.Sprintf("batch%d.jsonl", batch)), batch)
		var live, most int
		b.Storage = func(s kv.Shape, rep int, p kv.Precision) (kv.Storage, error) {
			st, err := kv.HostStorage(s, rep, p)
			live++
			most = max(most, live)
			return &closing{st, func() { live-- }}, err
		}
		got, err := RunStudy(st, b, nil)
		if err != nil {
			t.Fatal(err)
		}
		what := fmt.Sprintf("--batch %d", batch)
		// every setting has 6 samples, all started at once up to the batch's size
		if want := min(batch, 6); most != want || live != 0 {
			t.Errorf("%s: %d caches at most at once, %d left open; want %d, 0", what, most, live, want)
		}
		sameResults(t, what, one.Results, st.Results)
		sameReports(t, what, want, got)
	}
}

// closing is host storage that says when it is closed.
type closing struct {
	kv.Storage
	closed func()
}

func (c *closing) Close() error { c.closed(); return nil }

// poisonedStorage is host storage that panics with a deviceFault in the Append of its
// forward faultAt when its first forward's keys (a fingerprint of the prompt) are the
// poisoned sample's: the same sample fails wherever it runs, alone or in a batch.
type poisonedStorage struct {
	kv.Storage
	forwards, faultAt int
	poison            *float32
	first             float32
}

func (p *poisonedStorage) Append(layer int, k, v compute.Buf, n int) {
	if layer == 0 {
		p.forwards++
		if p.forwards == 1 {
			for _, x := range k.H[:k.N] {
				p.first += x
			}
			if math.IsNaN(float64(*p.poison)) {
				*p.poison = p.first // the first sample of the study
			}
		}
		if p.forwards == p.faultAt && p.first == *p.poison {
			panic(deviceFault{errors.New("cuLaunchKernel: CUDA_ERROR_LAUNCH_FAILED")})
		}
	}
	p.Storage.Append(layer, k, v, n)
}

func poisoned(b *ModelBackend) {
	poison := float32(math.NaN())
	b.Storage = func(s kv.Shape, rep int, p kv.Precision) (kv.Storage, error) {
		st, err := kv.HostStorage(s, rep, p)
		// the fourth forward is the prompt's last token (DecodeLast), batched with the
		// next sample's first chunk
		return &poisonedStorage{Storage: st, faultAt: 4, poison: &poison}, err
	}
	b.Fault = func(v any) bool {
		e, ok := v.(error)
		var f deviceFault
		return ok && errors.As(e, &f)
	}
}

// A sample failing on the device inside a batch is recorded failed, the samples batched
// with it finish (they run again alone) with the results they have unbatched, and the
// study goes on; it gives the unbatched study's results and report.
func TestStudyBatchedDeviceFault(t *testing.T) {
	m := loadBuiltin(t)
	dir := t.TempDir()
	one, b1 := builtinStudy(t, m, filepath.Join(dir, "one.jsonl"), 1)
	one.Methods = one.Methods[:2]
	poisoned(b1)
	want, err := RunStudy(one, b1, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, b := builtinStudy(t, m, filepath.Join(dir, "batch.jsonl"), 4)
	st.Methods = st.Methods[:2]
	poisoned(b)
	got, err := RunStudy(st, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	res := readResults(t, st.Results)
	failed := 0
	for k, line := range res {
		if strings.Contains(line, `"failed":"the device failed: cuLaunchKernel: CUDA_ERROR_LAUNCH_FAILED"`) {
			failed++
			if !strings.HasSuffix(k, "ruler_mk_needle 320 #0") {
				t.Errorf("%s failed; want only sample 0 of the first task", k)
			}
		}
	}
	if perSample := 1 + 1; failed != perSample {
		t.Errorf("%d samples recorded failed, want the poisoned one under each of the 2 settings", failed)
	}
	if len(res) != 2*6 {
		t.Errorf("%d samples recorded, want 12", len(res))
	}
	sameResults(t, "a fault in a batch", one.Results, st.Results)
	sameReports(t, "a fault in a batch", want, got)
}

// cancelling ends a batched study's context after its n-th finished sample.
type cancelling struct {
	*ModelBackend
	n      int
	cancel func()
}

func (c *cancelling) RunBatch(method string, jobs []Job, done func(int, Output, error) error) error {
	return c.ModelBackend.RunBatch(method, jobs, func(i int, out Output, err error) error {
		if c.n--; c.n == 0 {
			c.cancel()
		}
		return done(i, out, err)
	})
}

// A batched study interrupted between two samples of a batch stops there with what has
// finished recorded, and resumes from it to the unbatched study's results.
func TestStudyBatchedResume(t *testing.T) {
	m := loadBuiltin(t)
	dir := t.TempDir()
	one, b1 := builtinStudy(t, m, filepath.Join(dir, "one.jsonl"), 1)
	one.Methods = one.Methods[:2]
	want, err := RunStudy(one, b1, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, b := builtinStudy(t, m, filepath.Join(dir, "batch.jsonl"), 4)
	st.Methods = st.Methods[:2]
	ctx, cancel := context.WithCancel(context.Background())
	st.Ctx = ctx
	if _, err := RunStudy(st, &cancelling{b, 8, cancel}, nil); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("interrupted study: %v, want ErrInterrupted", err)
	}
	if n := len(readResults(t, st.Results)); n != 8 {
		t.Errorf("interrupted after 8 samples: %d recorded", n)
	}
	st.Ctx = nil
	got, err := RunStudy(st, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	sameResults(t, "resumed", one.Results, st.Results)
	sameReports(t, "resumed", want, got)
}

// RunBatch gives every job what Run gives it, whatever its budget (none, one token,
// more), its stop function and the pre-fill's chunking (with and without DecodeLast, a
// prompt shorter than a chunk, of one token), and refuses a job that Run refuses without
// failing the others.
func TestRunBatchSameAsRun(t *testing.T) {
	m, err := model.Load("../testdata/models/llama-gqa", model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	prompt := func(n, seed int) []int {
		p := make([]int, n)
		for i := range p {
			p[i] = (i*37 + seed*101 + 11) % 500
		}
		return p
	}
	never := func([]int) bool { return false }
	jobs := []Job{
		{Prompt: prompt(70, 1), MaxNew: 6, Stop: never},
		{Prompt: prompt(40, 2), MaxNew: 0, Stop: never},
		{Prompt: prompt(1, 3), MaxNew: 3, Stop: never},
		{Prompt: prompt(33, 4), MaxNew: 1, Stop: never},
		{Prompt: prompt(50, 5), MaxNew: 9, Stop: func(out []int) bool { return len(out) == 4 }},
		{Prompt: prompt(10, 6), MaxNew: 2000, Stop: never}, // past the context
		{Prompt: prompt(17, 7), MaxNew: 5, Stop: never},
	}
	for _, c := range []struct {
		decodeLast bool
		stepRows   int // 48: three jobs' chunks in one forward
	}{{false, 0}, {true, 0}, {false, 48}, {true, 48}} {
		decodeLast := c.decodeLast
		for _, method := range []string{"full", "snapkv:sparsity=0.5,window=8,chunked=true,patch=8"} {
			one := &ModelBackend{M: m, Chunk: 16, DecodeLast: decodeLast}
			batched := &ModelBackend{M: m, Chunk: 16, DecodeLast: decodeLast, Batch: 3, StepRows: c.stepRows}
			got := make([]*Output, len(jobs))
			errs := make([]error, len(jobs))
			err := batched.RunBatch(method, jobs, func(i int, out Output, err error) error {
				if got[i] != nil || errs[i] != nil {
					t.Errorf("job %d done twice", i)
				}
				got[i], errs[i] = &out, err
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			for i, j := range jobs {
				what := fmt.Sprintf("%s, decode_last %v, step rows %d, job %d", method, decodeLast, c.stepRows, i)
				want, werr := one.Run(method, j.Prompt, j.MaxNew, j.Stop)
				if (werr == nil) != (errs[i] == nil) || werr != nil && werr.Error() != errs[i].Error() {
					t.Errorf("%s: error %v, want Run's %v", what, errs[i], werr)
					continue
				}
				if got[i] == nil {
					t.Errorf("%s: never done", what)
					continue
				}
				g := *got[i]
				g.Prefill, g.Decode, want.Prefill, want.Decode = 0, 0, 0, 0
				gj, _ := json.Marshal(g)
				wj, _ := json.Marshal(want)
				if string(gj) != string(wj) {
					t.Errorf("%s:\n got %s\nwant %s", what, gj, wj)
				}
			}
			if errs[5] == nil {
				t.Errorf("a job past the model's context was not refused")
			}
		}
	}
}

// With a KV budget, a batch admits a sample only when its cache's predicted peak fits
// beside the running ones', and one sample whatever its peak.
func TestRunBatchKVBudget(t *testing.T) {
	m, err := model.Load("../testdata/models/llama-gqa", model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	const method, n, maxNew = "full", 60, 4
	jobs := make([]Job, 6)
	for i := range jobs {
		p := make([]int, n)
		for k := range p {
			p[k] = (k*31 + i*7 + 3) % 500
		}
		jobs[i] = Job{Prompt: p, MaxNew: maxNew, Stop: func([]int) bool { return false }}
	}
	// full attention in float32: every position up to the last fed of every layer and
	// KV head, keys and values
	c := m.Config
	peak := int64(n+maxNew-1) * int64(c.Layers*c.KVHeads*c.HeadDim) * 2 * 4
	for _, tc := range []struct {
		budget int64
		want   int
	}{{2*peak + peak/2, 2}, {3 * peak, 3}, {peak / 2, 1}, {0, 5}} {
		var live, most int
		b := &ModelBackend{M: m, Chunk: 16, Batch: 5, KVBudget: tc.budget,
			Storage: func(s kv.Shape, rep int, p kv.Precision) (kv.Storage, error) {
				st, err := kv.HostStorage(s, rep, p)
				live++
				most = max(most, live)
				return &closing{st, func() { live-- }}, err
			}}
		var got []Output
		err := b.RunBatch(method, jobs, func(i int, out Output, err error) error {
			if err != nil {
				return err
			}
			if out.PeakBytes != peak {
				t.Errorf("job %d: peak %d bytes measured, want %d", i, out.PeakBytes, peak)
			}
			got = append(got, out)
			return nil
		})
		if err != nil || len(got) != len(jobs) {
			t.Fatalf("budget %d: %v, %d jobs done", tc.budget, err, len(got))
		}
		if most != tc.want {
			t.Errorf("budget %d (peak %d a job): %d caches at once, want %d", tc.budget, peak, most, tc.want)
		}
	}
}
