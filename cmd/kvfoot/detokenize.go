package main

import (
	"fmt"
	"os"
)

func init() {
	register("detokenize", "decode token ids to text with a tokenizer.json", runDetokenize)
}

func runDetokenize(args []string) error {
	fs := newFlags("detokenize")
	path := fs.String("tokenizer", "", "tokenizer.json, or a folder holding one")
	idList := fs.String("ids", "", "comma-separated token ids")
	skipSpecial := fs.Bool("skip-special", false, "leave out special tokens")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ids, err := parseIDs("--ids", *idList)
	if err != nil {
		return err
	}
	if *path == "" {
		return errNoTokenizer
	}
	tok, err := loadTokenizer(*path, "")
	if err != nil {
		return err
	}
	for _, id := range ids {
		if _, ok := tok.Token(id); !ok {
			return fmt.Errorf("--ids: %d is not a token of this tokenizer (vocabulary size %d)", id, tok.VocabSize())
		}
	}
	text := tok.Decode(ids)
	if *skipSpecial {
		text = tok.DecodeSkipSpecial(ids)
	}
	_, err = fmt.Fprintln(os.Stdout, text)
	return err
}
