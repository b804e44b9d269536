package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

func init() {
	register("tokenize", "encode text to token ids with a tokenizer.json", runTokenize)
}

func runTokenize(args []string) error {
	fs := newFlags("tokenize")
	path := fs.String("tokenizer", "", "tokenizer.json, or a folder holding one")
	text := fs.String("text", "", "text to encode")
	input := fs.String("input", "", "JSONL file of objects with a \"text\" field (- for stdin); prints one {\"ids\": [...]} per line")
	addSpecial := fs.Bool("add-special", false, "add the post-processor's special tokens (such as BOS)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	textSet := false
	fs.Visit(func(f *flag.Flag) { textSet = textSet || f.Name == "text" })
	if textSet == (*input != "") {
		return errors.New("give exactly one of --text and --input")
	}
	if *path == "" {
		return errNoTokenizer
	}
	tok, err := loadTokenizer(*path, "")
	if err != nil {
		return err
	}
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	if textSet {
		return enc.Encode(tok.AppendEncode([]int{}, *text, *addSpecial)) // [] rather than null for empty text
	}
	var in io.Reader = os.Stdin
	if *input != "-" {
		f, err := os.Open(*input)
		if err != nil {
			return fmt.Errorf("--input: %w", err)
		}
		defer f.Close()
		in = f
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(nil, 1<<30)
	ids := []int{} // never nil: an empty text prints "ids":[]
	for line := 1; sc.Scan(); line++ {
		var rec struct {
			Text *string `json:"text"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return fmt.Errorf("--input %s line %d: %w", *input, line, err)
		}
		if rec.Text == nil {
			return fmt.Errorf("--input %s line %d: no \"text\" field", *input, line)
		}
		ids = tok.AppendEncode(ids[:0], *rec.Text, *addSpecial)
		if err := enc.Encode(struct {
			IDs []int `json:"ids"`
		}{ids}); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("--input %s: %w", *input, err)
	}
	return nil
}

// errNoTokenizer is the error of a command that needs --tokenizer.
var errNoTokenizer = errors.New("--tokenizer is required (a tokenizer.json or a folder holding one)")
