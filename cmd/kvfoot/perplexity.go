package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kvfoot/kvfoot/eval"
	"github.com/kvfoot/kvfoot/internal/goroot"
	"github.com/kvfoot/kvfoot/tasks"
)

func init() {
	register("perplexity", "language-modelling perplexity of a model on windows of text files", runPerplexity)
}

func runPerplexity(args []string) error {
	fs := newFlags("perplexity")
	dir := fs.String("model", "", "model folder (default: the built-in model)")
	corpus := fs.String("corpus", "", "folder of text files, read in sorted order (default: $(go env GOROOT)/src/go, held out from the built-in model's training)")
	length := fs.Int("length", 1024, "tokens per window")
	windows := fs.Int("windows", 8, "number of consecutive windows")
	chunk := fs.Int("chunk", 0, "pre-fill chunk size (0: whole window)")
	format := fs.String("format", "text", "text or json")
	threads := addThreadsFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := setThreads(*threads); err != nil {
		return err
	}
	switch {
	case *format != "text" && *format != "json":
		return fmt.Errorf("--format %q: want text or json", *format)
	case *length < 2:
		return fmt.Errorf("--length %d: want at least 2 tokens (one predicted)", *length)
	case *windows < 1:
		return fmt.Errorf("--windows %d: want at least 1", *windows)
	case *chunk < 0:
		return fmt.Errorf("--chunk %d: want ≥ 0 (0: the whole window)", *chunk)
	}
	if *corpus == "" {
		*corpus = filepath.Join(goroot.Dir(), "src", "go")
	}
	c, err := tasks.LoadCorpus(*corpus)
	if err != nil {
		return fmt.Errorf("--corpus: %w", err)
	}
	m, tok, modelDir, err := loadModelWith(*dir, true)
	if err != nil {
		return err
	}
	defer m.Close()
	if *length > m.Config.MaxPositions {
		return fmt.Errorf("--length %d exceeds the model's context of %d tokens", *length, m.Config.MaxPositions)
	}
	ws, err := eval.Windows(c, tok, *length, *windows)
	if err != nil {
		return err
	}
	rep, err := eval.Perplexity(m, ws, *chunk, func(done int) {
		fmt.Fprintf(os.Stderr, "perplexity: %d/%d windows\n", done, len(ws))
	})
	if err != nil {
		return err
	}
	if *format == "json" {
		return json.NewEncoder(os.Stdout).Encode(rep)
	}
	fmt.Printf("%s on %s: perplexity %.3f (%.4f nats/token) over %d windows of %d tokens\n",
		modelDir, *corpus, rep.Perplexity, rep.NLL, rep.Windows, rep.Length)
	return nil
}
