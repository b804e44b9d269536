package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/kvfoot/kvfoot/format/safetensors"
	"github.com/kvfoot/kvfoot/internal/modeldir"
	"github.com/kvfoot/kvfoot/kv"
	"github.com/kvfoot/kvfoot/model"
	"github.com/kvfoot/kvfoot/tensor"
)

func init() {
	register("logits", "write every position's logits for given token ids to a safetensors file", runLogits)
}

func runLogits(args []string) error {
	fs := newFlags("logits")
	dir := fs.String("model", "", "model folder (config.json and safetensors weights; default: the built-in model)")
	idsFlag := fs.String("ids", "", "comma-separated token ids")
	chunk := fs.Int("chunk", 0, "pre-fill chunk size in tokens (0: all at once)")
	out := fs.String("out", "", "output safetensors file (tensors logits [T, vocab] float32 and input_ids)")
	threads := fs.Int("threads", 0, "kernel threads (0: all cores)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("--out is required")
	}
	if *chunk < 0 {
		return fmt.Errorf("--chunk %d: want ≥ 0", *chunk)
	}
	ids, err := parseIDs("--ids", *idsFlag)
	if err != nil {
		return err
	}
	setThreads(*threads)
	m, err := loadModel(*dir)
	if err != nil {
		return err
	}
	defer m.Close()
	cache, err := kv.New(kv.Shape(m.Shape()), "full")
	if err != nil {
		return err
	}
	n := *chunk
	if n == 0 || n > len(ids) {
		n = len(ids)
	}
	r := model.NewRunner(m, n)
	logits := make([]float32, 0, len(ids)*m.Config.Vocab)
	_, err = r.Prefill(cache, ids, model.PrefillOptions{Chunk: n, All: true, OnChunk: func(_ int, l []float32) error {
		logits = append(logits, l...)
		return nil
	}})
	if err != nil {
		return fmt.Errorf("--ids: %w", err)
	}
	ids64 := make([]int64, len(ids))
	for i, id := range ids {
		ids64[i] = int64(id)
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	werr := safetensors.Write(f, []safetensors.Tensor{
		safetensors.FromFloat32s("logits", []int{len(ids), m.Config.Vocab}, logits),
		safetensors.FromInt64s("input_ids", []int{len(ids)}, ids64),
	}, nil)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("write %s: %w", *out, werr)
	}
	return nil
}

// parseIDs reads a comma-separated list of token ids given to flag.
func parseIDs(flag, s string) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("%s is required (comma-separated token ids)", flag)
	}
	parts := strings.Split(s, ",")
	ids := make([]int, len(parts))
	for i, p := range parts {
		v, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || v < 0 {
			return nil, fmt.Errorf("%s: %q is not a token id (want a non-negative integer)", flag, p)
		}
		ids[i] = v
	}
	return ids, nil
}

// loadModel loads the model folder given to --model.
// loadModel loads --model, or the built-in model when it is empty.
func loadModel(dir string) (*model.Model, error) {
	dir, err := modeldir.Find(dir)
	if err != nil {
		return nil, err
	}
	return model.Load(dir, model.LoadOptions{})
}

// setThreads applies a --threads flag; 0 keeps one thread per core.
func setThreads(n int) {
	if n > 0 {
		tensor.SetThreads(n)
	}
}
