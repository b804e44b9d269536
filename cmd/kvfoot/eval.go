package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/kvfoot/kvfoot/eval"
	"github.com/kvfoot/kvfoot/internal/filehash"
	"github.com/kvfoot/kvfoot/internal/modeldir"
	"github.com/kvfoot/kvfoot/kv"
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
	methods := fs.String("methods", "full", "comma-separated KV cache policy specs (a spec's own key=value options may follow their own commas: full,streaming:sink=4,window=64)")
	taskList := fs.String("tasks", "", "comma-separated tasks (all = every task); see kvfoot tasks list")
	lengthList := fs.String("lengths", "", "comma-separated prompt lengths in tokens (2k = 2048)")
	samples := fs.Int("samples", 10, "samples per task and length")
	seed := fs.Uint64("seed", 0, "seed (evaluation instances never coincide with kvfoot tasks dump documents)")
	chunk := fs.Int("chunk", 0, "pre-fill chunk size in tokens (0: the whole prompt at once)")
	format := fs.String("format", "text", "text (a table) or json (the report as the last line of standard output)")
	out := fs.String("out", "", "results JSONL, one line per sample; an interrupted run resumes from it")
	corpus := fs.String("corpus", "", "folder of text files for haystacks (default: $(go env GOROOT)/src)")
	bos := fs.Bool("bos", false, "prepend the tokenizer's BOS token to every prompt (real models trained with one)")
	threads := fs.Int("threads", 0, "kernel threads (0: all cores)")
	helmet := fs.String("helmet", "", "HELMET recall data instead of generated tasks: comma-separated NAME=FILE.jsonl with NAME json_kv… or ruler_… (e.g. ruler_niah_mk_2=data/ruler/niah_mk_2/validation_131072.jsonl); contexts are cut at their end to fit the model")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: kvfoot eval [--model DIR] --tasks T1,T2 --lengths L1,L2 [--samples N] [--seed S] [--methods full] [--format json] [--out results.jsonl]")
		fmt.Fprintln(fs.Output(), "\nWithout --model, the built-in model is "+modeldir.Builtin+" found via $KVFOOT_MODEL,\nthen under the working directory or its parents, then next to the executable.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := setThreads(*threads); err != nil {
		return err
	}
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
		if names, err = parseTaskList("--tasks", *taskList, false); err != nil {
			return err
		}
		if lengths, err = parseLengths("--lengths", *lengthList); err != nil {
			return err
		}
	}
	switch {
	case *samples < 1:
		return fmt.Errorf("--samples %d: want at least 1", *samples)
	case *chunk < 0:
		return fmt.Errorf("--chunk %d: want ≥ 0", *chunk)
	case *format != "text" && *format != "json":
		return fmt.Errorf("--format %q: want text or json", *format)
	}
	ms := kv.SplitSpecs(*methods)
	if len(ms) == 0 {
		return fmt.Errorf("--methods is empty")
	}
	if d, ok := duplicate(ms); ok {
		return fmt.Errorf("--methods: %s is given twice", d)
	}
	if *out != "" {
		if err := eval.CheckResults(*out); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
	}
	modelDir, err := modeldir.Find(*dir)
	if err != nil {
		return err
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
	cfg := eval.Config{
		Model: modelDir, Methods: ms, Tasks: names, Lengths: lengths, Data: data, Samples: *samples, Seed: *seed,
		Gen: tasks.Options{Corpus: c, Tokenizer: tok}, Tokenizer: tokHash, BOS: -1, Results: *out, Progress: os.Stderr,
	}
	if *bos {
		if cfg.BOS = tok.BOS(); cfg.BOS < 0 {
			return fmt.Errorf("--bos: tokenizer %s has no BOS token", *tokPath)
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
	rep, err := eval.Run(cfg, &eval.ModelBackend{M: m, Chunk: *chunk, Dir: modelDir})
	if err != nil {
		return err
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
	fmt.Fprintf(tw, "method\ttask\tcategory\tlength\tscore\tKV footprint\tKV peak\tsamples\n")
	for _, mr := range rep.Methods {
		for _, r := range mr.Results {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%.1f\t%.3f\t%.3f\t%d\n", mr.Name, r.Task, r.Category, r.Length, r.Score, r.Footprint, r.Peak, r.Samples)
		}
	}
	return tw.Flush()
}
