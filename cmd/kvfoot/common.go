package main

// The helpers every command uses for the flags they share, so that one flag is
// checked and behaves the same in every command: --model (with its tokenizer),
// --threads, lists of ids and counts, and --out.

import (
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/kvfoot/kvfoot/internal/modeldir"
	"github.com/kvfoot/kvfoot/internal/outfile"
	"github.com/kvfoot/kvfoot/model"
	"github.com/kvfoot/kvfoot/tasks"
	"github.com/kvfoot/kvfoot/tensor"
	"github.com/kvfoot/kvfoot/tokenizer"
)

// maxThreads bounds --threads: more goroutines than that only cost memory.
const maxThreads = 4096

// addThreadsFlag defines --threads, read with setThreads.
func addThreadsFlag(fs *flag.FlagSet) *int {
	return fs.Int("threads", 0, fmt.Sprintf("kernel threads, 1 to %d (0: one per core)", maxThreads))
}

// checkThreads checks a thread count given to flag: 1 to maxThreads, or 0 (one per
// core) where zeroOK.
func checkThreads(flag string, n int, zeroOK bool) error {
	lo := 1
	if zeroOK {
		lo = 0
	}
	if n < lo || n > maxThreads {
		if zeroOK {
			return fmt.Errorf("%s %d: want 0 (one per core) to %d", flag, n, maxThreads)
		}
		return fmt.Errorf("%s %d: want 1 to %d", flag, n, maxThreads)
	}
	return nil
}

// setThreads checks and applies --threads; 0 keeps one thread per core.
func setThreads(n int) error {
	if err := checkThreads("--threads", n, true); err != nil {
		return err
	}
	if n > 0 {
		tensor.SetThreads(n)
	}
	return nil
}

// parseThreadList reads a comma-separated list of thread counts (each 1 to maxThreads).
func parseThreadList(flag, s string) ([]int, error) {
	counts, err := parseCounts(flag, s)
	if err != nil {
		return nil, err
	}
	for _, n := range counts {
		if err := checkThreads(flag, n, false); err != nil {
			return nil, err
		}
	}
	return counts, nil
}

// parseIDs reads a comma-separated list of token ids (non-negative integers) given
// to flag; an empty list is an error.
func parseIDs(flag, s string) ([]int, error) {
	return parseIntList(flag, s, 0, "a token id (want a non-negative integer)", "comma-separated token ids")
}

// parseCounts reads a comma-separated list of positive integers given to flag.
func parseCounts(flag, s string) ([]int, error) {
	return parseIntList(flag, s, 1, "a positive integer", "comma-separated positive integers")
}

func parseIntList(flag, s string, lo int, what, list string) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("%s is required (%s)", flag, list)
	}
	parts := strings.Split(s, ",")
	out := make([]int, len(parts))
	for i, p := range parts {
		v, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || v < lo {
			return nil, fmt.Errorf("%s: %q is not %s", flag, p, what)
		}
		out[i] = v
	}
	return out, nil
}

// parseLengths reads a comma-separated list of token counts; "4k" means 4096.
func parseLengths(flagName, s string) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("%s is required (comma-separated token counts, e.g. 2048,4096 or 2k,4k)", flagName)
	}
	var out []int
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		orig, mul := p, 1
		if strings.HasSuffix(p, "k") || strings.HasSuffix(p, "K") {
			p, mul = p[:len(p)-1], 1024
		}
		v, err := strconv.Atoi(p)
		if err != nil || v < 1 {
			return nil, fmt.Errorf("%s: %q is not a positive token count", flagName, orig)
		}
		if v > tasks.MaxLength/mul {
			return nil, fmt.Errorf("%s: %s is longer than the %d tokens a task can have", flagName, orig, tasks.MaxLength)
		}
		out = append(out, v*mul)
	}
	if d, ok := duplicate(out); ok {
		return nil, fmt.Errorf("%s: %d is given twice", flagName, d)
	}
	return out, nil
}

// duplicate returns a value that occurs more than once in xs.
func duplicate[T comparable](xs []T) (T, bool) {
	seen := map[T]bool{}
	for _, x := range xs {
		if seen[x] {
			return x, true
		}
		seen[x] = true
	}
	var zero T
	return zero, false
}

// loadModel loads --model, or the built-in model when dir is empty.
func loadModel(dir string) (*model.Model, error) {
	m, _, _, err := loadModelWith(dir, false)
	return m, err
}

// loadModelWith loads --model (the built-in model when dir is empty) and returns
// the folder it found; with withTokenizer also the folder's tokenizer (loaded
// first, so that a bad tokenizer fails before the weights are read), which must
// not have more tokens than the model's vocabulary.
func loadModelWith(dir string, withTokenizer bool) (*model.Model, *tokenizer.Tokenizer, string, error) {
	dir, err := modeldir.Locate(dir)
	if err != nil {
		return nil, nil, "", err
	}
	var tok *tokenizer.Tokenizer
	if withTokenizer {
		if tok, err = tokenizer.Open(dir); err != nil {
			return nil, nil, "", fmt.Errorf("--model: %w", err)
		}
	}
	m, err := model.Open(dir, model.LoadOptions{})
	if err != nil {
		return nil, nil, "", err
	}
	if tok != nil && tok.VocabSize() > m.Config.Vocab {
		m.Close()
		return nil, nil, "", fmt.Errorf("--model %s: the tokenizer has %d tokens, more than the model's vocabulary of %d", dir, tok.VocabSize(), m.Config.Vocab)
	}
	return m, tok, dir, nil
}

// loadTokenizer loads --tokenizer (a tokenizer.json, or a folder holding one and
// perhaps its tokenizer_config.json and chat_template.jinja); when path is empty,
// the --model folder's (the built-in model's when model is empty too).
func loadTokenizer(path, model string) (*tokenizer.Tokenizer, error) {
	if path != "" {
		tok, err := tokenizer.Load(path)
		if err != nil {
			return nil, fmt.Errorf("--tokenizer: %w", err)
		}
		return tok, nil
	}
	dir, err := modeldir.Locate(model)
	if err != nil {
		return nil, fmt.Errorf("--tokenizer not given: %w", err)
	}
	tok, err := tokenizer.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("--model: %w", err)
	}
	return tok, nil
}

// checkOutput checks, before any work, that the file path given to flag may be
// written: its folder exists and it does not (unless force).
func checkOutput(flag, path string, force bool) error {
	if path == "" {
		return fmt.Errorf("%s is required", flag)
	}
	if err := outfile.Check(path, force); err != nil {
		return fmt.Errorf("%s: %w", flag, err)
	}
	return nil
}

// createOutput starts writing the file path given to flag (see internal/outfile):
// Commit puts it in place, Abort leaves no trace.
func createOutput(flag, path string, force bool) (*outfile.File, error) {
	if err := checkOutput(flag, path, force); err != nil {
		return nil, err
	}
	f, err := outfile.Create(path, force)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	return f, nil
}

// flagGiven says whether name was set on the command line (not left at its default).
func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}
