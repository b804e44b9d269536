package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/kvfoot/kvfoot/format/safetensors"
	"github.com/kvfoot/kvfoot/kv"
	"github.com/kvfoot/kvfoot/model"
)

func init() {
	register("logits", "write every position's logits for given token ids to a safetensors file", runLogits)
}

func runLogits(args []string) (err error) {
	fs := newFlags("logits")
	dir := fs.String("model", "", "model folder (config.json and safetensors weights; default: the built-in model)")
	idsFlag := fs.String("ids", "", "comma-separated token ids")
	chunk := fs.Int("chunk", 0, "pre-fill chunk size in tokens (0: all at once)")
	out := fs.String("out", "", "output safetensors file (tensors logits [T, vocab] float32 and input_ids)")
	force := fs.Bool("force", false, "replace --out if it exists")
	threads := addThreadsFlag(fs)
	device := deviceFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := setThreads(*threads); err != nil {
		return err
	}
	if err := checkOutput("--out", *out, *force); err != nil {
		return err
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
	dev, err := openDevice(*device)
	if err != nil {
		return err
	}
	defer dev.close()
	cacheOpts, err := dev.load(m)
	if err != nil {
		return err
	}
	defer recoverFault(&err)
	cache, err := kv.New(kv.Shape(m.Shape()), "full", cacheOpts...)
	if err != nil {
		return err
	}
	n := *chunk
	if n == 0 || n > len(ids) {
		n = len(ids)
	}
	// The logits go to the file chunk by chunk, so memory stays one chunk's worth.
	f, err := createOutput("--out", *out, *force)
	if err != nil {
		return err
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
