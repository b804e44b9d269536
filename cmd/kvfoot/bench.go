package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kvfoot/kvfoot/kv"
	"github.com/kvfoot/kvfoot/model"
	"github.com/kvfoot/kvfoot/tensor"
)

func init() {
	register("bench", "measure pre-fill and decode tokens/s at several context lengths and thread counts", runBench)
}

// benchRow is one measured configuration: mean and standard deviation of tokens/s
// over the repetitions.
type benchRow struct {
	Threads int     `json:"threads"`
	Test    string  `json:"test"` // ppN: pre-fill of N tokens; tgG@dN: decode of G tokens after N of context
	Context int     `json:"context"`
	Tokens  int     `json:"tokens"`
	Mean    float64 `json:"tokens_per_second"`
	SD      float64 `json:"sd"`
	Reps    int     `json:"reps"`
}

type benchOutput struct {
	Model  string     `json:"model"`
	Params int64      `json:"params"`
	Dtype  string     `json:"dtype"`
	CPU    string     `json:"cpu"`
	Chunk  int        `json:"chunk"`
	Rows   []benchRow `json:"rows"`
}

func runBench(args []string) error {
	fs := newFlags("bench")
	dir := fs.String("model", "", "model folder to benchmark")
	random := fs.String("random", "", "benchmark a random-weight model of a preset shape instead: "+strings.Join(presetNames(), ", "))
	ctxFlag := fs.String("ctx", "512,4096,16384", "comma-separated context lengths")
	threadsFlag := fs.String("threads", "1,2", "comma-separated thread counts")
	reps := fs.Int("reps", 3, "repetitions per configuration")
	decode := fs.Int("decode", 16, "decode tokens timed after each pre-fill (0: pre-fill only)")
	chunk := fs.Int("chunk", 512, "pre-fill chunk size in tokens (0: the whole context at once)")
	bf16 := fs.Bool("bf16", false, "with --random: hold the weight matrices in bf16, as a bf16 checkpoint is held")
	format := fs.String("format", "table", "output: table (markdown) or json")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *format != "table" && *format != "json" {
		return fmt.Errorf("--format %q: want table or json", *format)
	}
	ctxs, err := parseCounts("--ctx", *ctxFlag)
	if err != nil {
		return err
	}
	threads, err := parseCounts("--threads", *threadsFlag)
	if err != nil {
		return err
	}
	for _, t := range threads {
		if t > maxThreads {
			return fmt.Errorf("--threads %d: want at most %d", t, maxThreads)
		}
	}
	if *reps < 1 || *decode < 0 || *chunk < 0 {
		return errors.New("--reps must be ≥ 1, --decode and --chunk ≥ 0")
	}
	var m *model.Model
	out := benchOutput{CPU: cpuName(), Chunk: *chunk}
	switch {
	case (*dir == "") == (*random == ""):
		return errors.New("give exactly one of --model DIR and --random PRESET")
	case *random != "":
		cfg, ok := model.Presets[*random]
		if !ok {
			return fmt.Errorf("--random %q: unknown preset (known: %s)", *random, strings.Join(presetNames(), ", "))
		}
		m = model.NewRandom(cfg, 1)
		out.Model, out.Dtype = *random+" (random weights)", "F32"
		if *bf16 {
			m.ToBF16()
			out.Dtype = "BF16"
		}
	default:
		if m, err = loadModel(*dir); err != nil {
			return err
		}
		defer m.Close()
		out.Model, out.Dtype = *dir, m.Config.WeightsDtypeHint
	}
	for _, n := range ctxs {
		if n+*decode > m.Config.MaxPositions {
			return fmt.Errorf("--ctx %d + --decode %d tokens pass the model's context of %d tokens", n, *decode, m.Config.MaxPositions)
		}
	}
	out.Params = m.Config.Params()
	r := rand.New(rand.NewPCG(1, 2))
	for _, t := range threads {
		tensor.SetThreads(t)
		for _, n := range ctxs {
			var pre, dec []float64
			for range *reps {
				p, d, err := benchOnce(m, r, n, *decode, *chunk)
				if err != nil {
					return err
				}
				pre, dec = append(pre, p), append(dec, d)
			}
			rows := []benchRow{stats(t, fmt.Sprintf("pp%d", n), n, n, pre)}
			if *decode > 0 {
				rows = append(rows, stats(t, fmt.Sprintf("tg%d@d%d", *decode, n), n, *decode, dec))
			}
			// progress on stderr, so that a long run that is stopped still leaves its figures
			for _, row := range rows {
				fmt.Fprintf(os.Stderr, "threads %d  %-12s %8.1f ± %.1f tokens/s\n", row.Threads, row.Test, row.Mean, row.SD)
			}
			out.Rows = append(out.Rows, rows...)
		}
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	if *format == "json" {
		return json.NewEncoder(w).Encode(out)
	}
	fmt.Fprintf(w, "model: %s, %.1fM params, %s; cpu: %s; pre-fill chunk %d\n\n", out.Model, float64(out.Params)/1e6, out.Dtype, out.CPU, out.Chunk)
	fmt.Fprintln(w, "| threads | test | tokens/s | ± sd | reps |")
	fmt.Fprintln(w, "|--:|:--|--:|--:|--:|")
	for _, row := range out.Rows {
		fmt.Fprintf(w, "| %d | %s | %.1f | %.1f | %d |\n", row.Threads, row.Test, row.Mean, row.SD, row.Reps)
	}
	return nil
}

// benchOnce pre-fills n random tokens into a fresh full cache and then decodes
// decode more, returning tokens/s of each phase.
func benchOnce(m *model.Model, r *rand.Rand, n, decode, chunk int) (prefill, dec float64, err error) {
	cache, err := kv.New(kv.Shape(m.Shape()), "full")
	if err != nil {
		return 0, 0, err
	}
	ids := make([]int, n+decode)
	for i := range ids {
		ids[i] = r.IntN(m.Config.Vocab)
	}
	if chunk == 0 || chunk > n {
		chunk = n
	}
	run := model.NewRunner(m, chunk)
	start := time.Now()
	if _, err := run.Prefill(cache, ids[:n], model.PrefillOptions{Chunk: chunk}); err != nil {
		return 0, 0, err
	}
	prefill = float64(n) / time.Since(start).Seconds()
	start = time.Now()
	for i := n; i < n+decode; i++ {
		if _, err := run.Decode(cache, ids[i]); err != nil {
			return 0, 0, err
		}
	}
	if decode > 0 {
		dec = float64(decode) / time.Since(start).Seconds()
	}
	return prefill, dec, nil
}

func stats(threads int, test string, ctx, tokens int, v []float64) benchRow {
	var mean, ss float64
	for _, x := range v {
		mean += x
	}
	mean /= float64(len(v))
	for _, x := range v {
		ss += (x - mean) * (x - mean)
	}
	sd := 0.0
	if len(v) > 1 {
		sd = math.Sqrt(ss / float64(len(v)-1))
	}
	return benchRow{Threads: threads, Test: test, Context: ctx, Tokens: tokens, Mean: mean, SD: sd, Reps: len(v)}
}

func parseCounts(flag, s string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || v < 1 {
			return nil, fmt.Errorf("%s: %q is not a positive integer", flag, p)
		}
		out = append(out, v)
	}
	return out, nil
}

func presetNames() []string {
	var names []string
	for n := range model.Presets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// cpuName is the processor model from /proc/cpuinfo, or GOARCH elsewhere.
func cpuName() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				return fmt.Sprintf("%s, %d cores", strings.TrimSpace(v), runtime.NumCPU())
			}
		}
	}
	return fmt.Sprintf("%s, %d cores", runtime.GOARCH, runtime.NumCPU())
}
