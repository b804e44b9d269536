package kv_test

import (
	"fmt"

	"github.com/kvfoot/kvfoot/compute"
	"github.com/kvfoot/kvfoot/footprint"
	"github.com/kvfoot/kvfoot/kv"
	"github.com/kvfoot/kvfoot/model"
)

// A cache run by a policy spec, measured by a footprint meter. The model drives it the
// same way: per forward a Begin with the step, one Attend per layer and a Commit.
func ExampleNew() {
	shape := kv.Shape{Layers: 1, Heads: 2, KVHeads: 1, HeadDim: 4}
	meter := footprint.NewMeter(shape.Layers, shape.KVHeads)
	cache, err := kv.New(shape, "streaming:sink=2,window=3", kv.WithObserver(meter))
	if err != nil {
		panic(err)
	}
	forward := func(s model.Step) {
		if err := cache.Begin(s); err != nil {
			panic(err)
		}
		q := make([]float32, s.Rows*shape.Heads*shape.HeadDim)
		k := make([]float32, s.Rows*shape.KVHeads*shape.HeadDim)
		cache.Attend(0, compute.Host(q), compute.Host(k), compute.Host(k), compute.Host(make([]float32, len(q))))
		cache.Commit()
	}
	forward(model.Step{Pos: 0, Rows: 4, Prefill: true})              // first chunk: full attention
	forward(model.Step{Pos: 4, Rows: 4, Prefill: true, Final: true}) // sees sink 2 + window 2 + the chunk, then trimmed
	forward(model.Step{Pos: 8, Rows: 1})                             // decode
	fmt.Println("positions kept:", cache.Positions(0, 0))
	r := meter.Report(false)
	fmt.Printf("footprint %.4f, peak %.4f, prompt_len %d, response_len %d\n", r.Footprint, r.Peak, r.PromptLen, r.ResponseLen)
	a, _ := footprint.Analytic(footprint.Params{Prompt: 8, Response: 1, Chunk: 4, Sink: 2, Window: 3, HeadSparsity: 1})
	fmt.Printf("analytic  %.4f, peak %.4f\n", a.Footprint, a.Peak)
	fmt.Println(kv.Names())
	// Output:
	// positions kept: [0 1 6 7 8]
	// footprint 0.9333, peak 0.8889, prompt_len 8, response_len 1
	// analytic  0.9333, peak 0.8889
	// [bf16 full h2o headmask locret pyramidkv quant random snapkv streaming tova]
}
