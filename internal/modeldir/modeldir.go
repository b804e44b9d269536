// Package modeldir finds the built-in model, models/kvfoot-small (model.gguf and
// tokenizer.json), when a command is given no --model.
//
// The search order is: $KVFOOT_MODEL (a folder; an explicit setting wins), then
// models/kvfoot-small under the working directory and each of its parents (so that
// commands work from anywhere inside a kvfoot checkout), then models/kvfoot-small
// next to the executable and in the executable's parent folder (an installed binary
// shipped with its models folder, or one built into bin/).
package modeldir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kvfoot/kvfoot/format/safetensors"
	"github.com/kvfoot/kvfoot/internal/filehash"
	"github.com/kvfoot/kvfoot/model"
)

// Builtin is the built-in model's folder, relative to a kvfoot checkout or install.
const Builtin = "models/kvfoot-small"

// Find returns the model folder: explicit if given, else the built-in model.
func Find(explicit string) (string, error) {
	if explicit != "" {
		if !isModel(explicit) {
			return "", fmt.Errorf("model folder %s: no config.json (or model.gguf)", explicit)
		}
		return explicit, nil
	}
	var tried []string
	try := func(dir string) bool {
		for _, t := range tried {
			if t == dir {
				return false
			}
		}
		tried = append(tried, dir)
		return isModel(dir)
	}
	if env := os.Getenv("KVFOOT_MODEL"); env != "" {
		if try(env) {
			return env, nil
		}
		return "", fmt.Errorf("$KVFOOT_MODEL=%s: no config.json (or model.gguf) there", env)
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			if p := filepath.Join(d, Builtin); try(p) {
				return p, nil
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	if exe, err := os.Executable(); err == nil {
		if r, err := filepath.EvalSymlinks(exe); err == nil {
			exe = r
		}
		dir := filepath.Dir(exe)
		for _, p := range []string{filepath.Join(dir, Builtin), filepath.Join(filepath.Dir(dir), Builtin)} {
			if try(p) {
				return p, nil
			}
		}
	}
	return "", errors.New("no --model given and the built-in model was not found (looked in " +
		strings.Join(tried, ", ") + "); set $KVFOOT_MODEL or pass --model DIR")
}

func isModel(dir string) bool {
	for _, f := range []string{"config.json", "model.gguf"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err == nil && st.Mode().IsRegular() {
			return true
		}
	}
	return false
}

// Hash is the SHA-256 that identifies the model in dir: config.json and every
// safetensors file of its checkpoint (model.safetensors, or the index and its shards).
func Hash(dir string) (string, error) {
	if st, err := os.Stat(dir); err == nil && !st.IsDir() { // a GGUF file is the model
		return filehash.File(dir)
	}
	if g := model.FolderGGUF(dir); g != "" { // and so is a folder's model.gguf
		return filehash.File(g)
	}
	ckpt, err := safetensors.OpenCheckpoint(dir)
	if err != nil {
		return "", err
	}
	files := []string{filepath.Join(dir, "config.json")}
	if len(ckpt.Files) > 1 || filepath.Base(ckpt.Files[0].Path) != "model.safetensors" {
		files = append(files, filepath.Join(dir, "model.safetensors.index.json"))
	}
	for _, f := range ckpt.Files {
		files = append(files, f.Path)
	}
	ckpt.Close()
	sum, err := filehash.Files(files...)
	if err != nil {
		return "", fmt.Errorf("model %s: %w", dir, err)
	}
	return sum, nil
}
