package model_test

import (
	"fmt"

	"github.com/kvfoot/kvfoot/kv"
	"github.com/kvfoot/kvfoot/model"
)

// Generate greedily from a checkpoint folder with a full KV cache, pre-filling the
// prompt in chunks of 2 tokens.
func ExampleGenerate() {
	m, err := model.Load("../testdata/models/llama-gqa", model.LoadOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()
	cache, err := kv.New(kv.Shape(m.Shape()), "full")
	if err != nil {
		fmt.Println(err)
		return
	}
	res, err := model.Generate(m, cache, []int{1, 15, 27, 3}, model.GenerateOptions{MaxTokens: 6, Chunk: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.IDs, res.StopReason)
	// Output: [310 316 450 398 245 129] length
}
