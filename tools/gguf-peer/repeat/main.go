// Command repeat writes a copy of a Llama-family GGUF file whose block 0 stands for every
// one of N blocks: side-by-side.py's way to a random-weight file of a shape whose weights
// do not fit in memory at once (gguf-tiny-llama holds all of them as float32: 51 GB for
// the Llama-3.1-8B shape). Each block's tensors are separate bytes in the file, so an
// engine reads as much as from a file of N different blocks, and times it the same; the
// output's numbers are not a model's.
//
//	go run ./tools/gguf-peer/repeat -in ONE-BLOCK.gguf -blocks 32 -out FILE.gguf
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/kvfoot/kvfoot/format/gguf"
)

func main() {
	in := flag.String("in", "", "GGUF file whose block 0 is repeated")
	out := flag.String("out", "", "GGUF file to write (refused if it exists)")
	blocks := flag.Int("blocks", 0, "blocks in the output")
	flag.Parse()
	if err := run(*in, *out, *blocks); err != nil {
		fmt.Fprintln(os.Stderr, "repeat:", err)
		os.Exit(1)
	}
}

func run(in, out string, blocks int) error {
	if in == "" || out == "" || blocks < 1 {
		return fmt.Errorf("want -in, -out and -blocks ≥ 1")
	}
	f, err := gguf.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	arch, ok := f.Lookup("general.architecture")
	if !ok {
		return fmt.Errorf("%s: no general.architecture", in)
	}
	countKey := fmt.Sprint(arch) + ".block_count"
	kv := make([]gguf.KV, len(f.KV))
	copy(kv, f.KV)
	found := false
	for i := range kv {
		if kv[i].Key == countKey {
			kv[i].Value, found = uint32(blocks), true
		}
	}
	if !found {
		return fmt.Errorf("%s: no %s", in, countKey)
	}
	var head, block, tail []gguf.Tensor // before block 0, block 0, after it
	for i := range f.Tensors {
		ti := &f.Tensors[i]
		data, err := f.ReadTensor(ti)
		if err != nil {
			return err
		}
		t := gguf.Tensor{Name: ti.Name, Dims: ti.Dims, Type: ti.Type, Data: data}
		switch {
		case strings.HasPrefix(ti.Name, "blk.0."):
			block = append(block, t)
		case strings.HasPrefix(ti.Name, "blk."):
			return fmt.Errorf("%s: %s: only block 0 is repeated; give a file of one block", in, ti.Name)
		case len(block) == 0:
			head = append(head, t)
		default:
			tail = append(tail, t)
		}
	}
	if len(block) == 0 {
		return fmt.Errorf("%s: no tensors of block 0", in)
	}
	tensors := head
	for b := range blocks {
		for _, t := range block {
			t.Name = fmt.Sprintf("blk.%d.%s", b, strings.TrimPrefix(t.Name, "blk.0."))
			tensors = append(tensors, t) // the same bytes, written once per block
		}
	}
	return gguf.WriteFile(out, kv, append(tensors, tail...), false)
}
