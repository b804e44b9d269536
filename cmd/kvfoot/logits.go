package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/kvfoot/kvfoot/format/safetensors"
	"github.com/kvfoot/kvfoot/internal/modeldir"
	"github.com/kvfoot/kvfoot/internal/outfile"
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
	force := fs.Bool("force", false, "replace --out if it exists")
	threads := fs.Int("threads", 0, "kernel threads (0: all cores)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := setThreads(*threads); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("--out is required")
	}
	if err := outfile.Check(*out, *force); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if *chunk < 0 {
		return fmt.Errorf("--chunk %d: want ≥ 0", *chunk)
	}
	ids, err := parseIDs("--ids", *idsFlag)
	if err != nil {
		return err
	}
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
	// The logits go to the file chunk by chunk, so memory stays one chunk's worth.
	f, err := outfile.Create(*out, *force)
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	defer f.Abort()
	w := bufio.NewWriter(f)
	ids64 := make([]int64, len(ids))
	for i, id := range ids {
		ids64[i] = int64(id)
	}
	idsT := safetensors.FromInt64s("input_ids", []int{len(ids)}, ids64)
	_, err = safetensors.WriteHeader(w, []safetensors.Tensor{
		{Name: "logits", Dtype: safetensors.F32, Shape: []int{len(ids), m.Config.Vocab}}, idsT}, nil)
	if err == nil {
		_, err = w.Write(idsT.Data) // input_ids sorts before logits
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", *out, err)
	}
	var b [4]byte
	r := model.NewRunner(m, n)
	_, err = r.Prefill(cache, ids, model.PrefillOptions{Chunk: n, All: true, OnChunk: func(_ int, l []float32) error {
		for _, x := range l {
			binary.LittleEndian.PutUint32(b[:], math.Float32bits(x))
			if _, err := w.Write(b[:]); err != nil {
				return fmt.Errorf("write %s: %w", *out, err)
			}
		}
		return nil
	}})
	if err != nil {
		return fmt.Errorf("--ids: %w", err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", *out, err)
	}
	return f.Commit()
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

// maxThreads bounds --threads: more goroutines than that only cost memory.
const maxThreads = 4096

// setThreads applies a --threads flag; 0 keeps one thread per core.
func setThreads(n int) error {
	if n < 0 || n > maxThreads {
		return fmt.Errorf("--threads %d: want 0 (one per core) to %d", n, maxThreads)
	}
	if n > 0 {
		tensor.SetThreads(n)
	}
	return nil
}
