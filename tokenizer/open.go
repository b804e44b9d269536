package tokenizer

import (
	"fmt"
	"io"
	"os"

	"github.com/kvfoot/kvfoot/format/gguf"
)

// Open loads the tokenizer of a model at path: a folder or a tokenizer.json file
// (as Load), or a GGUF file, recognized by its magic whatever its name, whose
// tokenizer.ggml.* metadata builds it (as LoadGGUF).
func Open(path string) (*Tokenizer, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if st.IsDir() {
		return Load(path)
	}
	gg, err := isGGUF(path)
	if err != nil || !gg {
		if err == nil {
			return Load(path)
		}
		return nil, err
	}
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return LoadGGUF(f)
}

// isGGUF says whether the file at path starts with the GGUF magic.
func isGGUF(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("tokenizer: %w", err)
	}
	defer f.Close()
	var magic [4]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return false, nil
		}
		return false, fmt.Errorf("tokenizer: %s: %w", path, err)
	}
	return string(magic[:]) == "GGUF", nil
}
