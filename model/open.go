package model

import (
	"fmt"
	"github.com/kvfoot/kvfoot/format/gguf"
	"io"
	"os"
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
