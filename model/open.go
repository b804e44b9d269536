package model

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/kvfoot/kvfoot/format/gguf"
)

// Open loads a model from path: a Hugging Face folder (config.json and safetensors,
// as Load) or a GGUF file (as LoadGGUF; any name, since Ollama's blobs have no
// extension, recognized by its magic).
func Open(path string, opts LoadOptions) (*Model, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if st.IsDir() {
		return Load(path, opts)
	}
	gg, err := isGGUF(path)
	if err != nil {
		return nil, err
	}
	if !gg {
		return nil, fmt.Errorf("model: %s is neither a model folder nor a GGUF file (it does not start with \"GGUF\")", path)
	}
	return LoadGGUF(path, opts)
}

// FolderGGUF is the GGUF file that holds the model of folder dir, or "": a folder may hold
// its weights, hyper-parameters and tokenizer as model.gguf instead of config.json and
// safetensors (the built-in model, as a Q8_0 file), beside what else a folder holds (its
// tokenizer.json, masks/).
func FolderGGUF(dir string) string {
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err == nil {
		return ""
	}
	g := filepath.Join(dir, "model.gguf")
	if st, err := os.Stat(g); err == nil && st.Mode().IsRegular() {
		return g
	}
	return ""
}

// isGGUF says whether the file at path starts with the GGUF magic.
func isGGUF(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("model: %w", err)
	}
	defer f.Close()
	var magic [4]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return false, nil
		}
		return false, fmt.Errorf("model: %s: %w", path, err)
	}
	return string(magic[:]) == "GGUF", nil
}

// OpenConfig reads the config of the model at path: a folder's config.json, or a
// GGUF file's metadata.
func OpenConfig(path string) (Config, error) {
	st, err := os.Stat(path)
	if err != nil {
		return Config{}, fmt.Errorf("model: %w", err)
	}
	if st.IsDir() {
		return LoadConfig(path)
	}
	f, err := gguf.Open(path)
	if err != nil {
		return Config{}, err
	}
	defer f.Close()
	return GGUFConfig(f)
}
