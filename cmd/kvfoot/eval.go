package main

import (
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/kvfoot/kvfoot/eval"
	"github.com/kvfoot/kvfoot/internal/filehash"
	"github.com/kvfoot/kvfoot/internal/modeldir"
	"github.com/kvfoot/kvfoot/model"
	"github.com/kvfoot/kvfoot/tasks"
	"github.com/kvfoot/kvfoot/tokenizer"
)

func init() {
	register("eval", "score KV cache methods on the long-context tasks", runEval)
}

func runEval(args []string) error {
	fs := newFlags("eval")
	dir := fs.String("model", "", "model folder (default: the built-in model, see below)")
	tokPath := fs.String("tokenizer", "", "tokenizer.json (default: the model folder's)")
	methods := fs.String("methods", "", "methods separated by ';' (or ','): short names ("+shortNames()+") or KV cache policy specs, {s} standing for the sparsity knob a study sweeps, e.g. 'full;snapkv:sparsity={s},chunked=true;streaming:sink=4,window=64' (default: full, or the study's methods)")
	taskList := fs.String("tasks", "", "comma-separated tasks (all = every task); see kvfoot tasks list (default: the study's)")
	lengthList := fs.String("lengths", "", "comma-separated prompt lengths in tokens (2k = 2048) (default: the study's)")
	samples := fs.Int("samples", 10, "samples per task and length (default with --study: the study's)")
	seed := fs.Uint64("seed", 0, "seed (evaluation instances never coincide with kvfoot tasks dump documents)")
	chunk := fs.Int("chunk", -1, "pre-fill chunk size in tokens (0: the whole prompt at once; default: 1/8 of the model's context in a study, else 0)")
	format := fs.String("format", "text", "text (tables) or json (the report as the last line of standard output)")
	out := fs.String("out", "", "folder for the results (results.jsonl, one line per sample: an interrupted run resumes from it) and the report (as kvfoot report writes it); a path ending in .jsonl is a results file alone")
	corpus := fs.String("corpus", "", "folder of text files for haystacks (default: $(go env GOROOT)/src)")
	bos := fs.Bool("bos", true, "begin every prompt with the BOS token when the tokenizer's post-processor adds one, as HELMET does (false: plain text)")
	threads := fs.Int("threads", 0, "kernel threads (0: all cores)")
	helmet := fs.String("helmet", "", "HELMET recall data instead of generated tasks: comma-separated NAME=FILE.jsonl with NAME json_kv… or ruler_… (e.g. ruler_niah_mk_2=data/ruler/niah_mk_2/validation_131072.jsonl); contexts are cut at their end to fit the model")
	study := fs.String("study", "", "a study that finds every method's critical KV footprint: default (what kvfoot eval runs without --tasks, --lengths and --helmet: the recall tasks, about 10 minutes on 2 cores) or full (every task at 2K and 4K, 20 samples, for a bigger machine); the flags above override its parts")
	threshold := fs.Float64("threshold", 0.9, "a setting keeps performance with a score ≥ threshold × full attention's")
	grid := fs.String("grid", "", "comma-separated knob values every method with {s} runs first (default: the study's)")
	tol := fs.Float64("tol", 0, "bisection stops when the footprint at the crossing is known to this (default: the study's)")
	probes := fs.Int("probes", -1, "most bisection steps per method, category and length (default: the study's)")
	bootstrap := fs.Int("bootstrap", 0, "bootstrap resamples for the intervals (default: the study's)")
	decodeLast := fs.Bool("decode-last", true, "pre-fill all of a prompt but its last token and decode that one first, as the paper's harness does")
	taskStop := fs.Bool("task-stop", false, "stop at each task's stop string (a newline for most) and score the text before it; HELMET never does (its configs' stop_new_line is not read)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: kvfoot eval [--model DIR] [--study default|full] [--tasks T1,T2 --lengths L1,L2] [--samples N] [--methods 'M1;M2'] [--format json] [--out DIR]")
		fmt.Fprintln(fs.Output(), "\nWithout --tasks, --lengths or --helmet, kvfoot eval runs the default study: full, streaming, duo, prulong,\nsnapkv, snapkv*, pyramidkv*, int4 and prulong+snapkv*+int4 on the recall tasks, and prints every\nmethod's critical KV footprint (the smallest footprint keeping 90% of full attention's score).\nWithout --model, the built-in model is "+modeldir.Builtin+" found via $KVFOOT_MODEL,\nthen under the working directory or its parents, then next to the executable.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := setThreads(*threads); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var names []string
	var lengths []int
	var data []eval.Dataset
	if *helmet != "" {
		if *taskList != "" || *lengthList != "" {
			return fmt.Errorf("--helmet replaces --tasks and --lengths: give one or the other")
		}
		for _, pair := range strings.Split(*helmet, ",") {
			name, file, ok := strings.Cut(strings.TrimSpace(pair), "=")
			if !ok || name == "" || file == "" {
				return fmt.Errorf("--helmet %q: want NAME=FILE.jsonl", pair)
			}
			ins, err := tasks.LoadHELMETFile(file, name)
			if err != nil {
				return fmt.Errorf("--helmet: %w", err)
			}
			sum, err := filehash.File(file)
			if err != nil {
				return fmt.Errorf("--helmet: %w", err)
			}
			data = append(data, eval.Dataset{Name: name, Instances: ins, SHA256: sum})
		}
		var dn []string
		for _, d := range data {
			dn = append(dn, d.Name)
		}
		if d, ok := duplicate(dn); ok {
			return fmt.Errorf("--helmet: %s is given twice", d)
		}
	} else {
		var err error
		if set["tasks"] {
			if names, err = parseTaskList("--tasks", *taskList, false); err != nil {
				return err
			}
		}
		if set["lengths"] {
			if lengths, err = parseLengths("--lengths", *lengthList); err != nil {
				return err
			}
		}
	}
	switch {
	case *samples < 1:
		return fmt.Errorf("--samples %d: want at least 1", *samples)
	case *chunk < -1:
		return fmt.Errorf("--chunk %d: want ≥ 0", *chunk)
	case *format != "text" && *format != "json":
		return fmt.Errorf("--format %q: want text or json", *format)
	case !(*threshold > 0 && *threshold <= 1):
		return fmt.Errorf("--threshold %v: want a fraction in (0, 1]", *threshold)
	case *study != "" && *helmet != "":
		return fmt.Errorf("--study runs generated tasks: leave out --helmet")
	}
	results, reportDir := *out, ""
	if *out != "" && !strings.HasSuffix(*out, ".jsonl") {
		if fi, err := os.Stat(*out); err == nil && !fi.IsDir() {
			return fmt.Errorf("--out %s is a file: give a folder (or a results file ending in .jsonl)", *out)
		}
		if err := os.MkdirAll(*out, 0o755); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		results, reportDir = eval.ResultsPath(*out), *out
	}
	if results != "" {
		if err := eval.CheckResults(results); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
	}
	modelDir, err := modeldir.Find(*dir)
	if err != nil {
		return err
	}
	mcfg, err := model.LoadConfig(modelDir)
	if err != nil {
		return err
	}
	// A study: asked for, the default run, or methods with a knob to sweep.
	preset := *study
	if preset == "" && *helmet == "" && !set["tasks"] && !set["lengths"] {
		preset = "default"
	}
	builtin := eval.BuiltinMethods(modelDir)
	ms := []eval.Method{{Name: "full", Spec: "full"}}
	switch {
	case set["methods"]:
		if ms, err = eval.ParseMethods(*methods, builtin); err != nil {
			return fmt.Errorf("--methods: %w", err)
		}
		var mn []string
		for _, m := range ms {
			mn = append(mn, m.Name)
		}
		if d, ok := duplicate(mn); ok {
			return fmt.Errorf("--methods: %s is given twice", d)
		}
	case preset != "":
		ms = eval.DefaultMethods(modelDir)
	}
	st, err := eval.Preset(cmp.Or(preset, "default"), mcfg.MaxPositions)
	if err != nil {
		return fmt.Errorf("--study: %w", err)
	}
	if preset == "" {
		// an evaluation: the given tasks and lengths, every method at its settings
		st.Tasks, st.Lengths, st.Samples = names, lengths, *samples
		if len(data) == 0 && (len(names) == 0 || len(lengths) == 0) {
			return fmt.Errorf("--tasks and --lengths go together (or leave both out for the default study)")
		}
	}
	if names != nil {
		st.Tasks = names
	}
	if lengths != nil {
		st.Lengths = lengths
	}
	if set["samples"] {
		st.Samples = *samples
	}
	if *grid != "" {
		if st.Grid, err = parseFloats("--grid", *grid); err != nil {
			return err
		}
	}
	if set["tol"] {
		st.Tol = *tol
	}
	if set["probes"] {
		st.Probes = *probes
	}
	if set["bootstrap"] {
		st.Bootstrap = *bootstrap
	}
	st.Methods, st.Threshold = ms, *threshold
	if *chunk == -1 {
		*chunk = 0
		if preset != "" {
			*chunk = mcfg.MaxPositions / 8
		}
	}
	if *tokPath == "" {
		*tokPath = filepath.Join(modelDir, "tokenizer.json")
	}
	tok, err := tokenizer.Load(*tokPath)
	if err != nil {
		return err
	}
	if st, err := os.Stat(*tokPath); err == nil && st.IsDir() {
		*tokPath = filepath.Join(*tokPath, "tokenizer.json")
	}
	tokHash, err := filehash.File(*tokPath)
	if err != nil {
		return fmt.Errorf("--tokenizer: %w", err)
	}
	var c *tasks.Corpus
	if *corpus != "" {
		c, err = tasks.LoadCorpus(*corpus)
	} else {
		c, err = tasks.DefaultCorpus()
	}
	if err != nil {
		return fmt.Errorf("--corpus: %w", err)
	}
	st.Config = eval.Config{
		Model: modelDir, Tasks: st.Tasks, Lengths: st.Lengths, Data: data, Samples: st.Samples, Seed: *seed,
		Gen: tasks.Options{Corpus: c, Tokenizer: tok}, Tokenizer: tokHash, BOS: -1, TaskStop: *taskStop,
		Results: results, Progress: os.Stderr,
	}
	if *bos {
		// the BOS that the tokenizer's post-processor puts first, if any (HELMET tokenizes so)
		if ids := tok.EncodeWithSpecial("x"); len(ids) > 0 && ids[0] == tok.BOS() && tok.BOS() >= 0 {
			st.BOS = tok.BOS()
		}
	}
	m, err := loadModel(modelDir)
	if err != nil {
		return err
	}
	defer m.Close()
	if tok.VocabSize() > m.Config.Vocab {
		return fmt.Errorf("--tokenizer %s has %d tokens, more than the model's vocabulary of %d", *tokPath, tok.VocabSize(), m.Config.Vocab)
	}
	if results != "" {
		fmt.Fprintf(os.Stderr, "results: %s (every finished sample is kept; an interrupted run resumes from it)\n", results)
	}
	backend := &eval.ModelBackend{M: m, Chunk: *chunk, DecodeLast: *decodeLast, Dir: modelDir}
	settings := map[string]string{"chunk": fmt.Sprint(*chunk), "decode_last": fmt.Sprint(*decodeLast),
		"bos": fmt.Sprint(st.BOS), "task_stop": fmt.Sprint(*taskStop), "seed": fmt.Sprint(*seed)}
	rep, runErr := eval.RunStudy(st, backend, settings)
	if rep == nil {
		return runErr
	}
	if reportDir != "" {
		if err := eval.WriteStudy(reportDir, st.File(settings), rep); err != nil {
			return err
		}
	}
	if runErr != nil {
		return runErr
	}
	if *format == "json" {
		b, err := json.Marshal(rep)
		if err != nil {
			return err
		}
		fmt.Println(string(b))
		return nil
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "method\tsparsity\ttask\tlength\tscore\tKV footprint\tKV peak\tsamples\n")
	for _, mr := range rep.Methods {
		for _, r := range mr.Results {
			fmt.Fprintf(tw, "%s\t%.3g\t%s\t%d\t%.1f\t%.3f\t%.3f\t%d\n", mr.Name, r.Sparsity, r.Task, r.Length, r.Score, r.Footprint, r.Peak, r.Samples)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Printf("\nCritical KV footprint at %d tokens (smallest footprint with a score ≥ %.0f%% of full attention's; 5–95%% bootstrap interval):\n\n%s",
		slices.Max(rep.Lengths), 100*rep.Threshold, rep.Table())
	if reportDir != "" {
		fmt.Printf("\nReport: %s\n", filepath.Join(reportDir, "report.md"))
	}
	return nil
}

// shortNames lists the study's short method names.
func shortNames() string {
	var n []string
	for _, m := range eval.BuiltinMethods("") {
		n = append(n, m.Name)
	}
	return strings.Join(n, ", ")
}

// parseFloats reads comma-separated numbers in [0, 1].
func parseFloats(flagName, s string) ([]float64, error) {
	var out []float64
	for _, p := range strings.Split(s, ",") {
		x, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || !(x >= 0 && x <= 1) {
			return nil, fmt.Errorf("%s: %q is not a sparsity in [0, 1]", flagName, p)
		}
		out = append(out, x)
	}
	return out, nil
}
