package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/kvfoot/kvfoot/tasks"
	"github.com/kvfoot/kvfoot/tokenizer"
)

func init() {
	register("tasks", "list, show and dump the long-context tasks (training documents)", runTasks)
}

const tasksUsage = `usage: kvfoot tasks list
       kvfoot tasks show --task T --length L [--index I] [--seed S] [--train --queries Q]
       kvfoot tasks dump --tasks T1,T2 --lengths L1,L2 --count N --seed S [--queries Q] --out FILE.jsonl [--format bin]`

func runTasks(args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(os.Stderr, tasksUsage)
		if len(args) == 0 {
			return errors.New("a subcommand is required: list, show or dump")
		}
		return flag.ErrHelp
	}
	switch args[0] {
	case "list":
		if len(args) > 1 {
			return fmt.Errorf("unexpected arguments %q: tasks list takes none", args[1:])
		}
		for _, n := range tasks.Names() {
			fmt.Printf("%-16s %s\n", n, tasks.Category(n))
		}
		fmt.Printf("%-16s %s\n", tasks.CorpusTask, "corpus (training only: plain corpus text)")
		return nil
	case "show":
		return runTasksShow(args[1:])
	case "dump":
		return runTasksDump(args[1:])
	}
	return fmt.Errorf("unknown subcommand %q (want list, show or dump)", args[0])
}

// taskInputs are the flags every task command shares: the tokenizer and the corpus.
type taskInputs struct {
	tokenizer, model, corpus *string
}

func addTaskInputs(fs *flag.FlagSet) taskInputs {
	return taskInputs{
		tokenizer: fs.String("tokenizer", "", "tokenizer.json (or a folder holding one); default: the --model folder's"),
		model:     fs.String("model", "", "model folder whose tokenizer.json to use (default: the built-in model)"),
		corpus: fs.String("corpus", "", "folder of text files to cut haystacks from "+
			"(default: the Go standard library sources under $(go env GOROOT)/src)"),
	}
}

func (ti taskInputs) load() (*tokenizer.Tokenizer, *tasks.Corpus, error) {
	tok, err := loadTokenizer(*ti.tokenizer, *ti.model)
	if err != nil {
		return nil, nil, err
	}
	var c *tasks.Corpus
	if *ti.corpus != "" {
		c, err = tasks.LoadCorpus(*ti.corpus)
	} else {
		c, err = tasks.DefaultCorpus()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("--corpus: %w", err)
	}
	return tok, c, nil
}

// parseTaskList reads a comma-separated list of task names.
func parseTaskList(flagName, s string, allowCorpus bool) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("%s is required (comma-separated; known: %s)", flagName, strings.Join(tasks.Names(), ", "))
	}
	var out []string
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "all" {
			out = append(out, tasks.Names()...)
			continue
		}
		if err := tasks.Check(p, allowCorpus); err != nil {
			return nil, fmt.Errorf("%s: %w", flagName, err)
		}
		out = append(out, p)
	}
	if d, ok := duplicate(out); ok {
		return nil, fmt.Errorf("%s: %s is given twice (all names every task but corpus)", flagName, d)
	}
	return out, nil
}

func runTasksShow(args []string) error {
	fs := newFlags("tasks show")
	ti := addTaskInputs(fs)
	task := fs.String("task", "", "task name (see kvfoot tasks list)")
	length := fs.Int("length", 4096, "prompt (or document) length in tokens")
	index := fs.Int("index", 0, "instance index")
	seed := fs.Uint64("seed", 0, "seed")
	train := fs.Bool("train", false, "show a training document instead of an evaluation prompt")
	queries := fs.Int("queries", 1, "question/answer pairs of a training document")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := tasks.Check(*task, *train); err != nil {
		return fmt.Errorf("--task: %w", err)
	}
	if isSet(fs, "queries") && !*train {
		return fmt.Errorf("--queries applies to --train documents; an evaluation prompt has one question")
	}
	if *queries < 1 {
		return fmt.Errorf("--queries %d: want at least 1", *queries)
	}
	tok, c, err := ti.load()
	if err != nil {
		return err
	}
	o := tasks.Options{Corpus: c, Tokenizer: tok, Queries: *queries}
	if *train {
		d, err := tasks.Document(*task, *length, *index, *seed, o)
		if err != nil {
			return err
		}
		fmt.Print(d.Text)
		fmt.Fprintf(os.Stderr, "\n[%s, %d tokens, seed %d, answer spans %v]\n", d.Task, len(d.IDs), d.Seed, d.Spans)
		return nil
	}
	in, err := tasks.Generate(*task, *length, *index, *seed, o)
	if err != nil {
		return err
	}
	fmt.Println(in.Prompt)
	fmt.Fprintf(os.Stderr, "[%s, %d tokens, seed %d, metric %s, answers %q]\n", in.Task, len(tok.Encode(in.Prompt)), in.Seed, in.Metric, in.Answers)
	return nil
}

const dumpHelp = `Writes training documents: for every task and length, --count documents of exactly
that many tokens, each one context followed by --queries question/answer pairs
(records_tsv has one question; the pseudo-task "corpus" is plain corpus text).
Document seeds come from the training split, disjoint from those of kvfoot eval.
Documents are generated in parallel (--workers, default GOMAXPROCS) and written in
a fixed order (length, then index, then task), identical for any number of workers.

--format jsonl (default): one JSON object per line with task, category, length, seed,
  text, ids (token ids of text) and answer_spans ([start, end) token ranges of the
  answers, each including the newline that ends it).
--format bin: three files next to --out (its .jsonl/.bin extension dropped):
  BASE.bin   token ids of all documents concatenated, uint16 little-endian
  BASE.mask  one byte per token: 1 for answer tokens, 0 otherwise
  BASE.docs  the token offset where each document starts, int64 little-endian
             (a document ends where the next starts; the last at the end of BASE.bin)

Flags:`

func runTasksDump(args []string) error {
	fs := newFlags("tasks dump")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: kvfoot tasks dump --tasks T1,T2 --lengths L1,L2 --count N --seed S [--queries Q] --out FILE [--format jsonl|bin]\n\n")
		fmt.Fprintln(fs.Output(), dumpHelp)
		fs.PrintDefaults()
	}
	ti := addTaskInputs(fs)
	taskList := fs.String("tasks", "", "comma-separated tasks; all = every task but corpus; corpus = plain corpus text")
	lengthList := fs.String("lengths", "", "comma-separated document lengths in tokens (2k = 2048)")
	count := fs.Int("count", 0, "documents per task and length")
	seed := fs.Uint64("seed", 0, "seed")
	queries := fs.Int("queries", 1, "question/answer pairs per document")
	echo := fs.Bool("echo", false, "re-ranking documents no question asks about repeat their id after their fact, about half of them (training only; tasks.Options.IDEcho)")
	jitter := fs.Float64("jitter", 0, "shorten each document to a length drawn from L·(1−jitter) to L, so that no fixed position marks a document's end (0 ≤ jitter < 1)")
	out := fs.String("out", "", "output file")
	format := fs.String("format", "jsonl", "jsonl or bin")
	workers := fs.Int("workers", 0, "parallel generators (0: GOMAXPROCS)")
	force := fs.Bool("force", false, "replace output files that exist")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	names, err := parseTaskList("--tasks", *taskList, true)
	if err != nil {
		return err
	}
	lengths, err := parseLengths("--lengths", *lengthList)
	if err != nil {
		return err
	}
	switch {
	case *count < 1:
		return fmt.Errorf("--count %d: want at least 1 document per task and length", *count)
	case *queries < 1:
		return fmt.Errorf("--queries %d: want at least 1", *queries)
	case !(*jitter >= 0 && *jitter < 1):
		return fmt.Errorf("--jitter %v: want 0 ≤ jitter < 1", *jitter)
	case *out == "":
		return errors.New("--out is required")
	case *format != "jsonl" && *format != "bin":
		return fmt.Errorf("--format %q: want jsonl or bin", *format)
	case *workers < 0 || *workers > maxThreads:
		return fmt.Errorf("--workers %d: want 0 (GOMAXPROCS) to %d", *workers, maxThreads)
	}
	outs := []string{*out}
	if *format == "bin" {
		base := tasks.BinBase(*out)
		outs = []string{base + ".bin", base + ".mask", base + ".docs"}
	}
	for _, p := range outs {
		if err := checkOutput("--out", p, *force); err != nil {
			return err
		}
	}
	tok, c, err := ti.load()
	if err != nil {
		return err
	}
	if *format == "bin" && tok.VocabSize() > 1<<16 {
		return fmt.Errorf("--format bin stores token ids as uint16; the tokenizer has %d tokens: use --format jsonl", tok.VocabSize())
	}
	gen := tasks.Options{Corpus: c, Tokenizer: tok, Queries: *queries, IDEcho: *echo}
	// Fail on a bad task/length pair before any output file is created.
	for _, l := range lengths {
		for _, n := range names {
			if _, err := tasks.Document(n, l, 0, *seed, gen); err != nil {
				return err
			}
			if short := tasks.ShortestJittered(l, *jitter); short != l {
				if _, err := tasks.Document(n, short, 0, *seed, gen); err != nil {
					return err
				}
			}
		}
	}
	var w tasks.DocWriter
	if *format == "bin" {
		w, err = tasks.NewBinWriter(tasks.BinBase(*out), *force)
	} else {
		w, err = tasks.NewJSONLWriter(*out, *force)
	}
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	o := tasks.DumpOptions{Tasks: names, Lengths: lengths, Count: *count, Seed: *seed, Jitter: *jitter, Workers: *workers, Progress: os.Stderr}
	return tasks.Dump(o, gen, w)
}
