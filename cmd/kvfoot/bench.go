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
	"runtime/pprof"
	"slices"
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
	Threads int       `json:"threads"`
	Test    string    `json:"test"` // ppN: pre-fill of N tokens; tgG@dN: decode of G tokens after N of context
	Context int       `json:"context"`
	Tokens  int       `json:"tokens"`
	Mean    float64   `json:"tokens_per_second"`
	SD      float64   `json:"sd"`
	Reps    int       `json:"reps"`
	Samples []float64 `json:"samples"` // tokens/s of each repetition
	// Speedup is Mean over the one-thread row's of the same test (0: no such row).
	Speedup float64 `json:"speedup,omitempty"`
	// Decode rows: bytes a step reads (the weight matrices, and the KV cache averaged
	// over the steps) and what that is per second at Mean tokens/s.
	WeightBytes int64   `json:"weight_bytes,omitempty"`
	KVBytes     int64   `json:"kv_bytes,omitempty"`
	ReadGBps    float64 `json:"read_gb_per_s,omitempty"`
}

type benchOutput struct {
	Model  string `json:"model"`
	Params int64  `json:"params"`
	Dtype  string `json:"dtype"`
	KV     string `json:"kv"`
	CPU    string `json:"cpu"`
	Device string `json:"device"`
	Go     string `json:"go"`
	Chunk  int    `json:"chunk"`
	// ReadBW is the memory read bandwidth measured at each thread count (--bandwidth),
	// GB/s, keyed by the thread count.
	ReadBW map[string]float64 `json:"read_bw_gb_per_s,omitempty"`
	Rows   []benchRow         `json:"rows"`
}

func runBench(args []string) (err error) {
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
	spec := fs.String("kv", "full", "KV cache spec (full+bf16, full+quant:bits=8, …)")
	scaling := fs.Bool("scaling", false, "also print each test's speed-up over one thread (one thread is added to --threads)")
	bandwidth := fs.Bool("bandwidth", false, "measure the memory read bandwidth at each thread count and set decode rows against it")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the measurements to this file")
	device := deviceFlag(fs)
	force := fs.Bool("force", false, "replace --cpuprofile if it exists")
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
	threads, err := parseThreadList("--threads", *threadsFlag)
	if err != nil {
		return err
	}
	if *scaling && !slices.Contains(threads, 1) {
		threads = append([]int{1}, threads...)
	}
	if *reps < 1 || *decode < 0 || *chunk < 0 {
		return errors.New("--reps must be ≥ 1, --decode and --chunk ≥ 0")
	}
	if *cpuprofile != "" {
		if err := checkOutput("--cpuprofile", *cpuprofile, *force); err != nil {
			return err
		}
	} else if *force {
		return errors.New("--force applies to --cpuprofile")
	}
	dev, err := openDevice(*device)
	if err != nil {
		return err
	}
	defer dev.close()
	if dev.onGPU() && !flagGiven(fs, "threads") {
		threads = []int{runtime.NumCPU()} // the host's part of a GPU forward: all cores
	}
	var m *model.Model
	out := benchOutput{CPU: cpuName(), Go: runtime.Version(), Chunk: *chunk, KV: *spec, Device: dev.name()}
	switch {
	case (*dir == "") == (*random == ""):
		return errors.New("give exactly one of --model DIR and --random PRESET")
	case *random != "":
		cfg, ok := model.Presets[*random]
		if !ok {
			return fmt.Errorf("--random %q: unknown preset (known: %s)", *random, strings.Join(presetNames(), ", "))
		}
		// Random weights have no trained context: let the longest test fit.
		cfg.MaxPositions = max(cfg.MaxPositions, slices.Max(ctxs)+*decode)
		out.Model, out.Dtype = *random+" (random weights)", "F32"
		switch {
		case *bf16 && cfg.Params() > 2e9:
			// float32 weights first would take minutes and 32 GB for the 8B shape
			m, out.Dtype = model.NewRandomBF16(cfg, 1), "BF16"
		case *bf16:
			// the weights' memory lands where earlier figures had it: NewRandomBF16's
			// placement decodes the SmolLM2 shape 6-8% slower at one thread on the
			// development machine, with the same values and the same kernels
			m, out.Dtype = model.NewRandom(cfg, 1), "BF16"
			m.ToBF16()
		default:
			m = model.NewRandom(cfg, 1)
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
	if _, err := kv.New(kv.Shape(m.Shape()), *spec); err != nil {
		return fmt.Errorf("--kv: %w", err)
	}
	out.Params = m.Config.Params()
	wbytes := weightBytes(m)
	cacheOpts, err := dev.load(m)
	if err != nil {
		return err
	}
	if dev.onGPU() {
		out.Dtype = "BF16 (on the device)"
		wbytes = 2 * weightElements(m)
	}
	defer recoverFault(&err)
	if *cpuprofile != "" {
		f, err := createOutput("--cpuprofile", *cpuprofile, *force)
		if err != nil {
			return err
		}
		defer f.Abort() // a no-op once committed
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
		// the profile is put in place only when the measurements are done
		defer func() {
			if err == nil {
				pprof.StopCPUProfile()
				err = f.Commit()
			}
		}()
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, t := range threads {
		tensor.SetThreads(t)
		for _, n := range ctxs {
			var pre, dec []float64
			var kvBytes int64
			for range *reps {
				p, d, kb, err := benchOnce(m, *spec, cacheOpts, r, n, *decode, *chunk)
				if err != nil {
					return err
				}
				pre, dec, kvBytes = append(pre, p), append(dec, d), kb
			}
			rows := []benchRow{stats(t, fmt.Sprintf("pp%d", n), n, n, pre)}
			if *decode > 0 {
				row := stats(t, fmt.Sprintf("tg%d@d%d", *decode, n), n, *decode, dec)
				row.WeightBytes, row.KVBytes = wbytes, kvBytes
				row.ReadGBps = float64(wbytes+kvBytes) * row.Mean / 1e9
				rows = append(rows, row)
			}
			// progress on stderr, so that a long run that is stopped still leaves its figures
			for _, row := range rows {
				fmt.Fprintf(os.Stderr, "threads %d  %-12s %8.1f ± %.1f tokens/s\n", row.Threads, row.Test, row.Mean, row.SD)
			}
			out.Rows = append(out.Rows, rows...)
		}
	}
	// After the timings: the gigabyte it reads, once garbage, slowed the pre-fills and
	// decodes that followed it by up to 30% on a 2-core VM.
	if *bandwidth {
		out.ReadBW = map[string]float64{}
		for _, t := range threads {
			tensor.SetThreads(t)
			bw, err := readBandwidth()
			if err != nil {
				return err
			}
			out.ReadBW[strconv.Itoa(t)] = bw
		}
	}
	one := map[string]float64{}
	for _, row := range out.Rows {
		if row.Threads == 1 {
			one[row.Test] = row.Mean
		}
	}
	for i := range out.Rows {
		if base := one[out.Rows[i].Test]; base > 0 {
			out.Rows[i].Speedup = out.Rows[i].Mean / base
		}
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	if *format == "json" {
		return json.NewEncoder(w).Encode(out)
	}
	fmt.Fprintf(w, "model: %s, %.1fM params, %s, KV %s; cpu: %s; device: %s; pre-fill chunk %d\n\n", out.Model, float64(out.Params)/1e6, out.Dtype, out.KV, out.CPU, out.Device, out.Chunk)
	fmt.Fprintln(w, "| threads | test | tokens/s | ± sd | reps | speed-up | decode GB/s | read BW GB/s |")
	fmt.Fprintln(w, "|--:|:--|--:|--:|--:|--:|--:|--:|")
	for _, row := range out.Rows {
		fmt.Fprintf(w, "| %d | %s | %.1f | %.1f | %d | %s | %s | %s |\n", row.Threads, row.Test, row.Mean, row.SD, row.Reps,
			orDash(row.Speedup, "%.2fx"), orDash(row.ReadGBps, "%.1f"), orDash(out.ReadBW[strconv.Itoa(row.Threads)], "%.1f"))
	}
	if *scaling {
		printScaling(w, out.Rows, threads)
	}
	return nil
}

func orDash(v float64, format string) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf(format, v)
}

// printScaling prints one row per test, one column per thread count: tokens/s and
// the speed-up over one thread.
func printScaling(w *bufio.Writer, rows []benchRow, threads []int) {
	var tests []string
	cell := map[string]benchRow{}
	for _, r := range rows {
		if !slices.Contains(tests, r.Test) {
			tests = append(tests, r.Test)
		}
		cell[fmt.Sprint(r.Test, "/", r.Threads)] = r
	}
	fmt.Fprint(w, "\n| test |")
	for _, t := range threads {
		fmt.Fprintf(w, " %d threads |", t)
	}
	fmt.Fprint(w, "\n|:--|")
	for range threads {
		fmt.Fprint(w, "--:|")
	}
	fmt.Fprintln(w)
	for _, test := range tests {
		fmt.Fprintf(w, "| %s |", test)
		for _, t := range threads {
			r := cell[fmt.Sprint(test, "/", t)]
			fmt.Fprintf(w, " %.1f (%.2fx) |", r.Mean, r.Speedup)
		}
		fmt.Fprintln(w)
	}
}

// weightBytes is the bytes of weight matrices a decode step reads: every layer's and
// the LM head (the embedding row and the norms are negligible).
func weightBytes(m *model.Model) int64 { return sumMats(m, (*tensor.Mat).Bytes) }

// weightElements is the values of the same matrices (a GPU holds each in bf16).
func weightElements(m *model.Model) int64 {
	return sumMats(m, func(w *tensor.Mat) int64 { return int64(w.Rows) * int64(w.Cols) })
}

func sumMats(m *model.Model, size func(*tensor.Mat) int64) int64 {
	n := size(&m.Head)
	for i := range m.Layers {
		L := &m.Layers[i]
		for _, l := range []*model.Linear{&L.Q, &L.K, &L.V, &L.O, &L.Gate, &L.Up, &L.Down} {
			n += size(&l.W)
		}
	}
	return n
}

// readBandwidth measures the memory read bandwidth of the current thread count: the
// best of five sums of 1 GiB of ones with tensor.Sum (exact in float32: its blocks'
// sums are multiples of a power of two), in GB/s.
func readBandwidth() (float64, error) {
	buf := make([]float32, 1<<28)
	for i := range buf {
		buf[i] = 1
	}
	best := 0.0
	for range 5 {
		start := time.Now()
		if s := tensor.Sum(buf); s != float32(len(buf)) {
			return 0, fmt.Errorf("bandwidth: the sum of %d ones is %v", len(buf), s)
		}
		best = max(best, 4*float64(len(buf))/time.Since(start).Seconds()/1e9)
	}
	return best, nil
}

// benchOnce pre-fills n random tokens into a fresh cache and then decodes decode more,
// returning tokens/s of each phase and the cache's bytes averaged over the decode.
func benchOnce(m *model.Model, spec string, opts []kv.Option, r *rand.Rand, n, decode, chunk int) (prefill, dec float64, kvBytes int64, err error) {
	cache, err := kv.New(kv.Shape(m.Shape()), spec, opts...)
	if err != nil {
		return 0, 0, 0, err
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
		return 0, 0, 0, err
	}
	prefill = float64(n) / time.Since(start).Seconds()
	before := cache.Bytes()
	start = time.Now()
	for i := n; i < n+decode; i++ {
		if _, err := run.Decode(cache, ids[i]); err != nil {
			return 0, 0, 0, err
		}
	}
	if decode > 0 {
		dec = float64(decode) / time.Since(start).Seconds()
	}
	return prefill, dec, (before + cache.Bytes()) / 2, nil
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
	return benchRow{Threads: threads, Test: test, Context: ctx, Tokens: tokens, Mean: mean, SD: sd, Reps: len(v), Samples: v}
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
