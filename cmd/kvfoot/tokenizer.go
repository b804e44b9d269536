package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kvfoot/kvfoot/internal/outfile"
	"github.com/kvfoot/kvfoot/tokenizer"
)

func init() {
	register("tokenizer", "tokenizer tools: train (learn a byte-level BPE vocabulary)", runTokenizer)
}

func runTokenizer(args []string) error {
	if len(args) == 0 || args[0] != "train" {
		return errors.New("usage: kvfoot tokenizer train --vocab-size N --out tokenizer.json [--force] FILES")
	}
	return runTokenizerTrain(args[1:])
}

// maxVocab bounds --vocab-size: token ids are int32 in the model's embedding table
// and a vocabulary beyond a few million entries is no tokenizer anyone trains.
const maxVocab = 1 << 24

func runTokenizerTrain(args []string) error {
	fs := newFlags("tokenizer train")
	vocab := fs.Int("vocab-size", 4096, "vocabulary size, special tokens included")
	out := fs.String("out", "", "tokenizer.json to write (tokenizer_config.json goes beside it)")
	special := fs.String("special", strings.Join(tokenizer.DefaultSpecialTokens, ","), "comma-separated special tokens; the first is BOS, the second EOS")
	force := fs.Bool("force", false, "replace --out and the tokenizer_config.json beside it if they exist")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("--out is required")
	}
	if fs.NArg() == 0 {
		return errors.New("no training files given")
	}
	if *vocab < 1 || *vocab > maxVocab {
		return fmt.Errorf("--vocab-size %d: want at most %d", *vocab, maxVocab)
	}
	cfgPath := filepath.Join(filepath.Dir(*out), "tokenizer_config.json")
	if filepath.Base(*out) == "tokenizer_config.json" {
		return fmt.Errorf("--out %s: that name is the tokenizer_config.json written beside --out", *out)
	}
	for _, p := range []string{*out, cfgPath} {
		if err := checkOutput("--out", p, *force); err != nil {
			return err
		}
	}
	for _, f := range fs.Args() {
		if strings.HasPrefix(f, "-") {
			return fmt.Errorf("%s after the training files: flags go before them", f)
		}
		if st, err := os.Stat(f); err != nil {
			return err
		} else if !st.Mode().IsRegular() {
			return fmt.Errorf("training file %s is not a regular file", f)
		}
	}
	var specials []string
	for _, s := range strings.Split(*special, ",") {
		if s = strings.TrimSpace(s); s != "" {
			specials = append(specials, s)
		}
	}
	start := time.Now()
	tr := tokenizer.NewTrainer()
	var total int64
	for _, f := range fs.Args() {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		total += int64(len(data))
		tr.AddParallel(data)
	}
	counted := time.Since(start)
	js, cfg, err := tr.Train(*vocab, specials)
	if err != nil {
		return fmt.Errorf("--vocab-size: %w", err)
	}
	if err := outfile.Write(*out, js, *force); err != nil {
		return err
	}
	if err := outfile.Write(cfgPath, cfg, *force); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "trained on %d files, %.1f MB, %d distinct pre-tokens: counting %.1fs, merging %.1fs; wrote %s and %s\n",
		fs.NArg(), float64(total)/1e6, tr.Words(), counted.Seconds(), (time.Since(start) - counted).Seconds(), *out, cfgPath)
	return nil
}
