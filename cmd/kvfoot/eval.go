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
	"github.com/kvfoot/kvfoot/eval/slurm"
	"github.com/kvfoot/kvfoot/internal/filehash"
	"github.com/kvfoot/kvfoot/internal/modeldir"
	"github.com/kvfoot/kvfoot/model"
	"github.com/kvfoot/kvfoot/tasks"
	"github.com/kvfoot/kvfoot/tokenizer"
)

func init() {
	register("eval", "score KV cache methods on the long-context tasks", runEval)
}

// evalFlags are kvfoot eval's flags.
type evalFlags struct {
	fs                                          *flag.FlagSet
	set                                         map[string]bool
	dir, tokPath, methods, taskList, lengthList *string
	samples, chunk, threads, probes, bootstrap  *int
	batch, stepRows, workers                    *int
	seed                                        *uint64
	format, out, corpus, helmet, study, grid    *string
	threshold, tol                              *float64
	bos, decodeLast, taskStop, force, retry     *bool
	plan, slurm, dryRun                         *bool
	shard, partition, timeLimit, mem, device    *string
	cpus, gpus, arrayLimit, shards              *int
}

// gpuBatch is --batch's default on a GPU. A forward of one row (a decode step) leaves a
// GPU idle: the built-in model's takes about as long for 16 rows as for one, so 16
// samples decode at once for the cost of one; 16 holds a whole setting of the default
// study (4 tasks × 3 samples), and a bigger model's batch is held to the memory anyway
// (ModelBackend.KVBudget). On the CPU a forward of one sequence keeps the cores busy
// already, and batching gains only the weights' reads of the decode steps.
const gpuBatch = 16

// gpuStepRows is --step-rows' default on a GPU: a batch's pre-fill chunks share forwards
// up to this many rows. One 512-row chunk of the built-in model is a few microseconds of
// arithmetic behind a forward's hundreds of launches; 8192 rows (16 such chunks) fill the
// GEMMs, and a 32K chunk of an 8B model still runs alone.
const gpuStepRows = 8192

// gpuWorkers is --workers' default on a GPU, with --out DIR: a forward of the built-in
// model is bound by the host's kernel launches, and workers on their own streams launch at
// once. On the H100 (16 host cores) 8 workers ran the full study's first stage 2.4x as fast
// as one (docs/PERFORMANCE.md, "The full study on the GPU").
const gpuWorkers = 8

// maxWorkers bounds --workers: past the host's cores more workers only queue.
const maxWorkers = 256

// slurmFlags are the flags of --slurm that its tasks do not take.
var slurmFlags = []string{"slurm", "dry-run", "partition", "time", "cpus-per-task", "gpus-per-task", "mem", "array-limit", "shards"}

func parseEvalFlags(args []string) (*evalFlags, error) {
	fs := newFlags("eval")
	o := &evalFlags{fs: fs, set: map[string]bool{}}
	o.dir = fs.String("model", "", "model folder (default: the built-in model, see below)")
	o.tokPath = fs.String("tokenizer", "", "tokenizer.json (default: the model folder's)")
	o.methods = fs.String("methods", "", "methods separated by ';' (or ','): short names ("+shortNames()+") or KV cache policy specs, {s} standing for the sparsity knob a study sweeps, e.g. 'full;snapkv:sparsity={s},chunked=true;streaming:sink=4,window=64' (default: full, or the study's methods)")
	o.taskList = fs.String("tasks", "", "comma-separated tasks (all = every task); see kvfoot tasks list (default: the study's)")
	o.lengthList = fs.String("lengths", "", "comma-separated prompt lengths in tokens (2k = 2048) (default: the study's)")
	o.samples = fs.Int("samples", 10, "samples per task and length (default with --study: the study's)")
	o.seed = fs.Uint64("seed", 0, "seed (evaluation instances never coincide with kvfoot tasks dump documents)")
	o.chunk = fs.Int("chunk", -1, "pre-fill chunk size in tokens (0: the whole prompt at once; default: 1/8 of the model's context in a study, else 0)")
	o.batch = fs.Int("batch", 0, fmt.Sprintf("samples of one setting run together, their forwards batched, as many as fit a third of the GPU's free memory (0: 1 on the CPU, %d on a GPU); the results are the same", gpuBatch))
	o.stepRows = fs.Int("step-rows", 0, fmt.Sprintf("the most pre-fill rows one batched forward takes, several samples' chunks together (0: one chunk on the CPU, %d on a GPU); the results are the same", gpuStepRows))
	o.workers = fs.Int("workers", 0, fmt.Sprintf("with --out DIR: run each stage of the study as N shards at once in this process, each with its own forward (on a GPU its own stream, the weights shared), and its results in shards/ (0: 1 on the CPU, %d on a GPU)", gpuWorkers))
	o.format = fs.String("format", "text", "text (tables) or json (the report as the last line of standard output)")
	o.out = fs.String("out", "", "folder for the results (results.jsonl, one line per sample: an interrupted run resumes from it) and the report (as kvfoot report writes it); a path ending in .jsonl is a results file alone. One command at a time holds a folder; files in it that kvfoot did not write are never replaced without --force")
	o.force = fs.Bool("force", false, "replace files in --out that kvfoot did not write (or that were changed since)")
	o.corpus = fs.String("corpus", "", "folder of text files for haystacks (default: $(go env GOROOT)/src)")
	o.bos = fs.Bool("bos", true, "begin every prompt with the BOS token when the tokenizer's post-processor adds one, as HELMET does (false: plain text)")
	o.threads = fs.Int("threads", 0, "kernel threads (0: all cores)")
	o.device = deviceFlag(fs)
	o.helmet = fs.String("helmet", "", "HELMET recall data instead of generated tasks: comma-separated NAME=FILE.jsonl with NAME json_kv… or ruler_… (e.g. ruler_niah_mk_2=data/ruler/niah_mk_2/validation_131072.jsonl); contexts are cut at their end to fit the model")
	o.study = fs.String("study", "", "a study that finds every method's critical KV footprint: default (what kvfoot eval runs without --tasks, --lengths and --helmet: the recall tasks, about 10 minutes on 2 cores) or full (every task at 2K and 4K, 20 samples, for a bigger machine); the flags above override its parts")
	o.threshold = fs.Float64("threshold", 0.9, "a setting keeps performance with a score ≥ threshold × full attention's")
	o.grid = fs.String("grid", "", "comma-separated knob values every method with {s} runs first (default: the study's)")
	o.tol = fs.Float64("tol", 0, "bisection stops when the footprint at the crossing is known to this (default: the study's)")
	o.probes = fs.Int("probes", -1, "most bisection steps per method, category and length (default: the study's)")
	o.bootstrap = fs.Int("bootstrap", 0, fmt.Sprintf("bootstrap resamples for the intervals, 1 to %d (default: the study's)", eval.MaxBootstrap))
	o.decodeLast = fs.Bool("decode-last", true, "pre-fill all of a prompt but its last token and decode that one first, as the paper's harness does")
	o.taskStop = fs.Bool("task-stop", false, "stop at each task's stop string (a newline for most) and score the text before it; HELMET never does (its configs' stop_new_line is not read)")
	o.retry = fs.Bool("retry-failed", false, "run again the samples the results hold as failed on the device (out of memory, a kernel fault); without it a failed sample counts as done and the report says so per cell (not with --shard or --slurm)")
	o.plan = fs.Bool("plan", false, "list the study's next stage (method, setting, task, length, samples) and what the stages depend on, from the results in --out if any; run nothing")
	o.shard = fs.String("shard", "", "run share i/N (0 ≤ i < N) of the study's current stage in --out into a results file of its own (shards/); the first shard of a new stage plans it")
	o.slurm = fs.Bool("slurm", false, "run the study in --out on Slurm: submit the current stage as a job array (sbatch) and a driver job after it that reruns what did not finish, submits the next stage, and writes the report at the end (docs/CLUSTER.md)")
	o.dryRun = fs.Bool("dry-run", false, "with --slurm: print the job scripts instead of submitting them")
	o.partition = fs.String("partition", "", "with --slurm: the partition (default: the cluster's)")
	o.timeLimit = fs.String("time", "", "with --slurm: each task's time limit, e.g. 4:00:00 (default: the partition's)")
	o.cpus = fs.Int("cpus-per-task", 0, "with --slurm: CPUs per task; also each task's --threads unless given (default: the cluster's)")
	o.gpus = fs.Int("gpus-per-task", 0, "with --slurm: GPUs per task")
	o.mem = fs.String("mem", "", "with --slurm: memory per task, e.g. 32G (default: the cluster's)")
	o.arrayLimit = fs.Int("array-limit", 0, "with --slurm: tasks of a stage running at once (0: no limit)")
	o.shards = fs.Int("shards", 0, fmt.Sprintf("with --slurm: tasks per stage (0: one per sample, at most %d)", slurm.MaxShards))
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: kvfoot eval [--model DIR] [--study default|full] [--tasks T1,T2 --lengths L1,L2] [--samples N] [--methods 'M1;M2'] [--format json] [--out DIR] [--plan | --shard i/N | --slurm ...]")
		fmt.Fprintln(fs.Output(), "\nWithout --tasks, --lengths or --helmet, kvfoot eval runs the default study: full, streaming, duo, prulong,\nsnapkv, snapkv*, pyramidkv*, int4 and prulong+snapkv*+int4 on a task of each category (recall, RAG,\nre-ranking, ICL, variable tracking, records to TSV) at the model's context less 512, and prints every\nmethod's critical KV footprint (the smallest footprint keeping 90% of full attention's score).\nWithout --model, the built-in model is "+modeldir.Builtin+" found via $KVFOOT_MODEL,\nthen under the working directory or its parents, then next to the executable.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	fs.Visit(func(f *flag.Flag) { o.set[f.Name] = true })
	return o, nil
}

// check refuses bad values and combinations before any work.
func (o *evalFlags) check() error {
	stages := 0
	for _, on := range []bool{*o.plan, *o.shard != "", *o.slurm} {
		if on {
			stages++
		}
	}
	for _, name := range slurmFlags[1:] {
		if o.set[name] && !*o.slurm {
			return fmt.Errorf("--%s goes with --slurm", name)
		}
	}
	switch {
	case *o.samples < 1:
		return fmt.Errorf("--samples %d: want at least 1", *o.samples)
	case *o.chunk < -1:
		return fmt.Errorf("--chunk %d: want ≥ 0", *o.chunk)
	case *o.batch < 0:
		return fmt.Errorf("--batch %d: want ≥ 1 (0: the device's default)", *o.batch)
	case *o.stepRows < 0:
		return fmt.Errorf("--step-rows %d: want ≥ 1 (0: the device's default)", *o.stepRows)
	case *o.format != "text" && *o.format != "json":
		return fmt.Errorf("--format %q: want text or json", *o.format)
	case !(*o.threshold > 0 && *o.threshold <= 1):
		return fmt.Errorf("--threshold %v: want a fraction in (0, 1]", *o.threshold)
	case *o.study != "" && *o.helmet != "":
		return fmt.Errorf("--study runs generated tasks: leave out --helmet")
	case o.set["bootstrap"] && (*o.bootstrap < 1 || *o.bootstrap > eval.MaxBootstrap):
		return fmt.Errorf("--bootstrap %d: want 1 to %d resamples (1000 to 2000 give steady intervals)", *o.bootstrap, eval.MaxBootstrap)
	case stages > 1:
		return fmt.Errorf("--plan, --shard and --slurm are one each: give one")
	case *o.retry && (*o.shard != "" || *o.slurm):
		// every stage would plan the failed samples again, and a shard would run them again
		return fmt.Errorf("--retry-failed runs in one process: run kvfoot eval --out DIR --retry-failed without --shard and --slurm, then go on with them")
	case (*o.shard != "" || *o.slurm) && (*o.out == "" || strings.HasSuffix(*o.out, ".jsonl")):
		return fmt.Errorf("--shard and --slurm run a study in a folder: give --out DIR")
	case *o.workers < 0 || *o.workers > maxWorkers:
		return fmt.Errorf("--workers %d: want 0 to %d (each worker holds a forward's buffers and, on a GPU, a stream of its own)", *o.workers, maxWorkers)
	case *o.workers > 1 && (*o.out == "" || strings.HasSuffix(*o.out, ".jsonl")):
		return fmt.Errorf("--workers runs a study's stages in a folder: give --out DIR")
	case *o.workers > 1 && (*o.shard != "" || *o.slurm || *o.retry || *o.plan):
		return fmt.Errorf("--workers runs the whole study in this process: not with --shard, --slurm, --retry-failed or --plan")
	case *o.cpus < 0 || *o.gpus < 0 || *o.arrayLimit < 0 || *o.shards < 0:
		return fmt.Errorf("--cpus-per-task, --gpus-per-task, --array-limit and --shards: want ≥ 0")
	case *o.shards > slurm.MaxShards:
		return fmt.Errorf("--shards %d: want at most %d (Slurm's default MaxArraySize is 1001)", *o.shards, slurm.MaxShards)
	}
	if *o.shard != "" {
		if _, _, err := eval.ParseShard(*o.shard); err != nil {
			return err
		}
	}
	return nil
}

// inputs reads --helmet, or --tasks and --lengths.
func (o *evalFlags) inputs() (names []string, lengths []int, data []eval.Dataset, err error) {
	if *o.helmet == "" {
		if o.set["tasks"] {
			if names, err = parseTaskList("--tasks", *o.taskList, false); err != nil {
				return nil, nil, nil, err
			}
		}
		if o.set["lengths"] {
			if lengths, err = parseLengths("--lengths", *o.lengthList); err != nil {
				return nil, nil, nil, err
			}
		}
		return names, lengths, nil, nil
	}
	if *o.taskList != "" || *o.lengthList != "" {
		return nil, nil, nil, fmt.Errorf("--helmet replaces --tasks and --lengths: give one or the other")
	}
	var dn []string
	for _, pair := range strings.Split(*o.helmet, ",") {
		name, file, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok || name == "" || file == "" {
			return nil, nil, nil, fmt.Errorf("--helmet %q: want NAME=FILE.jsonl", pair)
		}
		ins, err := tasks.LoadHELMETFile(file, name)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("--helmet: %w", err)
		}
		sum, err := filehash.File(file)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("--helmet: %w", err)
		}
		data = append(data, eval.Dataset{Name: name, Instances: ins, SHA256: sum})
		dn = append(dn, name)
	}
	if d, ok := duplicate(dn); ok {
		return nil, nil, nil, fmt.Errorf("--helmet: %s is given twice", d)
	}
	return nil, nil, data, nil
}

// openOut opens --out: a folder, locked (the shards of a stage share it), or a
// results file alone. --plan reads the folder and holds nothing.
func (o *evalFlags) openOut() (out *eval.Folder, results string, err error) {
	switch {
	case *o.out == "":
		return nil, "", nil
	case strings.HasSuffix(*o.out, ".jsonl"):
		if err := eval.CheckResults(*o.out); err != nil {
			return nil, "", fmt.Errorf("--out: %w", err)
		}
		return nil, *o.out, nil
	case *o.plan:
		if fi, err := os.Stat(*o.out); err == nil && fi.IsDir() {
			return &eval.Folder{Dir: *o.out}, "", nil
		}
		return nil, "", nil
	}
	mode := eval.Exclusive
	if *o.shard != "" {
		mode = eval.Shared
	}
	if out, err = eval.OpenFolder(*o.out, mode, *o.force); err != nil {
		return nil, "", err
	}
	// the report is written at the end, by this run or the last driver step: a file in
	// its way is refused now, not after the study
	if *o.shard == "" {
		if err := out.CheckWritable(); err != nil {
			out.Close(true)
			return nil, "", err
		}
	}
	if *o.shard == "" && !*o.slurm {
		results = eval.ResultsPath(*o.out)
		if err := eval.CheckResults(results); err != nil {
			out.Close(true)
			return nil, "", fmt.Errorf("--out: %w", err)
		}
	}
	return out, results, nil
}

// evalRun is a study set up to run: its settings, the model and the backend.
type evalRun struct {
	st       eval.Study
	backend  *eval.ModelBackend
	workers  []eval.Backend // the stage workers (--workers): backend and its copies
	settings map[string]string
	preset   string
	close    func() error
}

// setup builds the study from the flags, loads the tokenizer, corpus and model.
func (o *evalFlags) setup(names []string, lengths []int, data []eval.Dataset, results string) (*evalRun, error) {
	modelDir, err := modeldir.Locate(*o.dir)
	if err != nil {
		return nil, err
	}
	mcfg, err := model.OpenConfig(modelDir)
	if err != nil {
		return nil, err
	}
	// A study: asked for, the default run, or methods with a knob to sweep.
	preset := *o.study
	if preset == "" && *o.helmet == "" && !o.set["tasks"] && !o.set["lengths"] {
		preset = "default"
	}
	builtin := eval.BuiltinMethods(modelDir)
	ms := []eval.Method{{Name: "full", Spec: "full"}}
	switch {
	case o.set["methods"]:
		if ms, err = eval.ParseMethods(*o.methods, builtin); err != nil {
			return nil, fmt.Errorf("--methods: %w", err)
		}
		var mn []string
		for _, m := range ms {
			mn = append(mn, m.Name)
		}
		if d, ok := duplicate(mn); ok {
			return nil, fmt.Errorf("--methods: %s is given twice", d)
		}
	case preset != "":
		ms = eval.DefaultMethods(modelDir)
	}
	st, err := eval.Preset(cmp.Or(preset, "default"), mcfg.MaxPositions)
	if err != nil {
		return nil, fmt.Errorf("--study: %w", err)
	}
	if preset == "" {
		// an evaluation: the given tasks and lengths, every method at its settings
		st.Tasks, st.Lengths, st.Samples = names, lengths, *o.samples
		if len(data) == 0 && (len(names) == 0 || len(lengths) == 0) {
			return nil, fmt.Errorf("--tasks and --lengths go together (or leave both out for the default study)")
		}
	}
	if err := o.override(&st, names, lengths); err != nil {
		return nil, err
	}
	st.Methods, st.Threshold = ms, *o.threshold
	if *o.chunk == -1 {
		*o.chunk = 0
		if preset != "" {
			*o.chunk = mcfg.MaxPositions / 8
		}
	}
	tok, tokHash, err := o.tokenizer(modelDir)
	if err != nil {
		return nil, err
	}
	var c *tasks.Corpus
	if *o.corpus != "" {
		c, err = tasks.LoadCorpus(*o.corpus)
	} else {
		c, err = tasks.DefaultCorpus()
	}
	if err != nil {
		return nil, fmt.Errorf("--corpus: %w", err)
	}
	st.Config = eval.Config{
		Model: modelDir, Tasks: st.Tasks, Lengths: st.Lengths, Data: data, Samples: st.Samples, Seed: *o.seed,
		Gen: tasks.Options{Corpus: c, Tokenizer: tok}, Tokenizer: tokHash, BOS: -1, TaskStop: *o.taskStop,
		Results: results, Progress: os.Stderr, RetryFailed: *o.retry,
	}
	if *o.out != "" && results != "" && !strings.HasSuffix(*o.out, ".jsonl") {
		st.Also = eval.ResultsFiles(*o.out) // a folder's shards count as run
	}
	if *o.bos {
		// the BOS that the tokenizer's post-processor puts first, if any (HELMET tokenizes so)
		if ids := tok.EncodeWithSpecial("x"); len(ids) > 0 && ids[0] == tok.BOS() && tok.BOS() >= 0 {
			st.BOS = tok.BOS()
		}
	}
	m, err := loadModel(modelDir)
	if err != nil {
		return nil, err
	}
	if tok.VocabSize() > m.Config.Vocab {
		m.Close()
		return nil, fmt.Errorf("--tokenizer %s has %d tokens, more than the model's vocabulary of %d", *o.tokPath, tok.VocabSize(), m.Config.Vocab)
	}
	dev, err := openDevice(*o.device)
	if err != nil {
		m.Close()
		return nil, err
	}
	cacheOpts, err := dev.load(m)
	if err != nil {
		dev.close()
		m.Close()
		return nil, err
	}
	settings := map[string]string{"chunk": fmt.Sprint(*o.chunk), "decode_last": fmt.Sprint(*o.decodeLast),
		"bos": fmt.Sprint(st.BOS), "task_stop": fmt.Sprint(*o.taskStop), "seed": fmt.Sprint(*o.seed)}
	if dev.onGPU() { // bf16 on a GPU is another result than float32 on the CPU
		settings["device"] = "cuda"
	}
	backend := &eval.ModelBackend{M: m, Chunk: *o.chunk, DecodeLast: *o.decodeLast, Dir: modelDir, CacheOptions: cacheOpts, Batch: *o.batch, StepRows: *o.stepRows}
	dev.failSamples(backend)
	if backend.Batch == 0 {
		backend.Batch = 1
		if dev.onGPU() {
			backend.Batch = gpuBatch
		}
	}
	if backend.StepRows == 0 && dev.onGPU() {
		backend.StepRows = gpuStepRows
	}
	if backend.KVBudget, err = dev.kvBudget(); err != nil {
		dev.close()
		m.Close()
		return nil, err
	}
	workers, closeWorkers, err := dev.workers(backend, o.workerCount(dev.onGPU()))
	if err != nil {
		dev.close()
		m.Close()
		return nil, err
	}
	return &evalRun{st: st, preset: preset, close: func() error { closeWorkers(); dev.close(); return m.Close() },
		backend: backend, workers: workers, settings: settings}, nil
}

// workerCount is --workers, or its default: gpuWorkers for a study on a GPU run whole in
// this process into a folder, else 1.
func (o *evalFlags) workerCount(onGPU bool) int {
	switch {
	case *o.workers > 0:
		return *o.workers
	case onGPU && *o.out != "" && !strings.HasSuffix(*o.out, ".jsonl") && *o.shard == "" && !*o.slurm && !*o.plan && !*o.retry:
		return gpuWorkers
	}
	return 1
}

// override applies the flags that change a preset study's parts.
func (o *evalFlags) override(st *eval.Study, names []string, lengths []int) error {
	var err error
	if names != nil {
		st.Tasks = names
	}
	if lengths != nil {
		st.Lengths = lengths
	}
	if o.set["samples"] {
		st.Samples = *o.samples
	}
	if *o.grid != "" {
		if st.Grid, err = parseFloats("--grid", *o.grid); err != nil {
			return err
		}
	}
	if o.set["tol"] {
		st.Tol = *o.tol
	}
	if o.set["probes"] {
		st.Probes = *o.probes
	}
	if o.set["bootstrap"] {
		st.Bootstrap = *o.bootstrap
	}
	return nil
}

// tokenizer loads --tokenizer (default: the model folder's) and hashes its file.
func (o *evalFlags) tokenizer(modelDir string) (*tokenizer.Tokenizer, string, error) {
	if *o.tokPath == "" {
		*o.tokPath = modelDir // a folder's tokenizer.json, or a GGUF file's metadata
		if st, err := os.Stat(modelDir); err == nil && st.IsDir() {
			*o.tokPath = filepath.Join(modelDir, "tokenizer.json")
		}
	}
	tok, err := tokenizer.Open(*o.tokPath)
	if err != nil {
		return nil, "", err
	}
	if st, err := os.Stat(*o.tokPath); err == nil && st.IsDir() {
		*o.tokPath = filepath.Join(*o.tokPath, "tokenizer.json")
	}
	sum, err := filehash.File(*o.tokPath)
	if err != nil {
		return nil, "", fmt.Errorf("--tokenizer: %w", err)
	}
	return tok, sum, nil
}

func runEval(args []string) (err error) {
	defer recoverFault(&err)
	o, err := parseEvalFlags(args)
	if err != nil {
		return err
	}
	if err := o.check(); err != nil {
		return err
	}
	if err := setThreads(*o.threads); err != nil {
		return err
	}
	names, lengths, data, err := o.inputs()
	if err != nil {
		return err
	}
	out, results, err := o.openOut()
	if err != nil {
		return err
	}
	if out != nil && !*o.plan {
		// a failed run leaves no empty folder it made; a dry run leaves nothing
		defer func() { out.Close(err != nil || *o.dryRun) }()
	}
	run, err := o.setup(names, lengths, data, results)
	if err != nil {
		return err
	}
	defer run.close()
	switch {
	case *o.plan:
		return run.printPlan(out)
	case *o.shard != "":
		return run.runShard(out, *o.shard)
	case *o.slurm:
		return run.driveSlurm(out, o)
	}
	if len(run.workers) > 1 {
		if err := run.runStages(out); err != nil {
			return err
		}
		run.st.Also = eval.ResultsFiles(out.Dir) // the shard files the stages wrote
	}
	return run.runOne(out, results, *o.format)
}

// runStages runs the study stage by stage on the workers, each stage's samples shared
// between them (eval.RunStage), until no stage is left; runOne then finds every sample
// in the folder and reports.
func (r *evalRun) runStages(out *eval.Folder) error {
	for {
		stage, err := eval.CurrentStage(out, r.st, r.backend, r.st.File(r.settings), true)
		if err != nil || stage == nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "stage %d: %d samples on %d workers\n", stage.Number, stage.Samples(), len(r.workers))
		if err := eval.RunStage(r.st, out.Dir, stage, r.workers); err != nil {
			return err
		}
	}
}

// runOne runs the whole study in this process and prints its report.
func (r *evalRun) runOne(out *eval.Folder, results, format string) error {
	if results != "" {
		fmt.Fprintf(os.Stderr, "results: %s (every finished sample is kept; an interrupted run resumes from it)\n", results)
	}
	rep, runErr := eval.RunStudy(r.st, r.backend, r.settings)
	if rep == nil {
		return runErr
	}
	if out != nil {
		if err := eval.WriteStudy(out, r.st.File(r.settings), rep); err != nil {
			return err
		}
	}
	if runErr != nil {
		return runErr
	}
	return printReport(rep, out, format)
}

// printReport prints the study's report: as JSON, or every setting and the critical
// footprint table.
func printReport(rep *eval.StudyReport, out *eval.Folder, format string) error {
	if format == "json" {
		b, err := json.Marshal(rep)
		if err != nil {
			return err
		}
		fmt.Println(string(b))
		return nil
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "method\tsparsity\ttask\tlength\tscore\tKV footprint\tKV peak\tsamples\tfailed\n")
	for _, mr := range rep.Methods {
		for _, r := range mr.Results {
			failed := ""
			if r.Failed > 0 {
				failed = fmt.Sprintf("%d: %s", r.Failed, strings.Join(r.Failures, "; "))
				if r.LeftOut {
					failed += " (left out)"
				}
			}
			fmt.Fprintf(tw, "%s\t%.3g\t%s\t%d\t%.1f\t%.3f\t%.3f\t%d\t%s\n", mr.Name, r.Sparsity, r.Task, r.Length, r.Score, r.Footprint, r.Peak, r.Samples, failed)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Printf("\nCritical KV footprint at %d tokens (smallest footprint with a score ≥ %.0f%% of full attention's; 5–95%% bootstrap interval):\n\n%s",
		slices.Max(rep.Lengths), 100*rep.Threshold, rep.Table())
	if out != nil {
		fmt.Printf("\nReport: %s\n", out.Path("report.md"))
	}
	return nil
}

// printPlan lists the stages so far and the study's next (or unfinished) stage: its
// cells and what it depends on.
func (r *evalRun) printPlan(out *eval.Folder) error {
	var stage *eval.Stage
	var done []*eval.Stage
	var err error
	if out != nil {
		if done, err = eval.ReadStages(out.Dir); err != nil {
			return err
		}
		r.st.Also = eval.ResultsFiles(out.Dir)
	}
	if len(done) > 0 {
		stage, err = eval.CurrentStage(out, r.st, r.backend, r.st.File(r.settings), false)
	} else {
		// no stage yet: the first, after what a single process may have run
		var cells []eval.Cell
		cells, err = eval.PlanNext(r.st, r.backend)
		if len(cells) > 0 {
			stage = &eval.Stage{Number: 1, Cells: cells}
		}
	}
	if err != nil {
		return err
	}
	for _, d := range done {
		if stage == nil || d.Number < stage.Number {
			fmt.Printf("stage %d: done, %d samples in %d cells\n", d.Number, d.Samples(), len(d.Cells))
		}
	}
	if stage == nil {
		fmt.Println("the study is complete: every sample it needs is in; kvfoot report DIR writes its report")
		return nil
	}
	deps := "nothing: it can run at once"
	if stage.Number > 1 {
		deps = fmt.Sprintf("the results of stages 1–%d", stage.Number-1)
	}
	fmt.Printf("stage %d (next to run): %d samples in %d cells; it depends on %s\n\n", stage.Number, stage.Samples(), len(stage.Cells), deps)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "method\tsetting\ttask\tlength\tsamples\tstep\n")
	for _, c := range stage.Cells {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d–%d\t%s\n", c.Name, c.Setting, c.Task, c.Length, c.First, c.Last, c.Step)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	grid := "the grid of every method runs at once (stage 1 with full attention)"
	if r.st.StopAtFail {
		grid = "the grid runs one setting a stage per method while a setting passes some target (it stops at the first that fails them all)"
	}
	fmt.Printf("\nThen: %s; then each method with a knob takes up to %d bisection steps per target and length, each a stage that depends on the results before it.\n", grid, r.st.Probes)
	return nil
}

// runShard runs share i/N of the folder's current stage (planning it if this shard
// comes first) into the shard's own results file.
func (r *evalRun) runShard(out *eval.Folder, spec string) error {
	i, n, _ := eval.ParseShard(spec)
	stage, err := eval.CurrentStage(out, r.st, r.backend, r.st.File(r.settings), true)
	if err != nil {
		return err
	}
	if stage == nil {
		fmt.Fprintln(os.Stderr, "the study is complete: nothing to run")
		return nil
	}
	unlock, err := eval.LockShard(out.Dir, stage.Number, i, n)
	if err != nil {
		return err
	}
	defer unlock()
	sh := r.st
	sh.Results, sh.Also = eval.ShardPath(out.Dir, stage.Number, i, n), eval.ResultsFiles(out.Dir)
	units := stage.Share(i, n)
	fmt.Fprintf(os.Stderr, "stage %d, shard %d/%d: %d samples into %s\n", stage.Number, i, n, len(units), sh.Results)
	return eval.RunUnits(sh, r.backend, units)
}

// driveSlurm submits the folder's current stage to Slurm with the driver step after
// it, or, the study being complete, writes the report.
func (r *evalRun) driveSlurm(out *eval.Folder, o *evalFlags) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	driver, shard := []string{exe, "eval"}, []string{exe, "eval"}
	o.fs.Visit(func(f *flag.Flag) {
		arg := "--" + f.Name + "=" + f.Value.String()
		if f.Name != "dry-run" {
			driver = append(driver, arg)
		}
		if !slices.Contains(slurmFlags, f.Name) && f.Name != "force" {
			shard = append(shard, arg)
		}
	})
	if !o.set["threads"] && *o.cpus > 0 {
		shard = append(shard, fmt.Sprintf("--threads=%d", *o.cpus)) // not the node's every core
	}
	if !*o.dryRun && !slurm.Available() {
		return fmt.Errorf("--slurm: sbatch is not on PATH (run on a Slurm login node, or give --dry-run to see the scripts)")
	}
	study := &slurm.Study{Dir: out.Dir, WorkDir: wd, Shard: shard, Driver: driver, Out: os.Stdout,
		Options: slurm.Options{Partition: *o.partition, Time: *o.timeLimit, CPUs: *o.cpus, GPUs: *o.gpus, Mem: *o.mem,
			ArrayLimit: *o.arrayLimit, Shards: *o.shards},
		Plan: func(write bool) (*eval.Stage, error) {
			return eval.CurrentStage(out, r.st, r.backend, r.st.File(r.settings), write)
		}}
	done, err := study.Step(*o.dryRun)
	if err != nil || !done {
		return err
	}
	if *o.dryRun {
		fmt.Println("the study is complete: nothing to submit")
		return nil
	}
	return writeReport(out, *o.format)
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
