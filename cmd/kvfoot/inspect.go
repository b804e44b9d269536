package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"text/tabwriter"

	"github.com/kvfoot/kvfoot/format/safetensors"
	"github.com/kvfoot/kvfoot/kv"
	"github.com/kvfoot/kvfoot/model"
)

func init() {
	register("inspect", "show a model's architecture, parameters, dtypes and KV bytes per token", runInspect)
}

type inspectOutput struct {
	Architecture     string         `json:"architecture"`
	Params           int64          `json:"params"`
	Layers           int            `json:"layers"`
	Hidden           int            `json:"hidden"`
	Intermediate     int            `json:"intermediate"`
	Heads            int            `json:"heads"`
	KVHeads          int            `json:"kv_heads"`
	HeadDim          int            `json:"head_dim"`
	Vocab            int            `json:"vocab"`
	TiedEmbeddings   bool           `json:"tied_embeddings"`
	QKVBias          bool           `json:"qkv_bias"`
	OBias            bool           `json:"o_bias"`
	Rope             model.Rope     `json:"rope"`
	MaxPositions     int            `json:"max_positions"`
	LocalLayers      []int          `json:"local_layers,omitempty"` // layers with a sliding window
	Windows          []int          `json:"windows,omitempty"`      // each local layer's window
	LocalRope        *model.Rope    `json:"local_rope,omitempty"`   // local layers' RoPE when it differs
	KVBytesPerLayer  int            `json:"kv_bytes_per_token_per_layer"`
	WeightBytes      map[string]int `json:"weight_bytes_by_dtype"`
	Files            int            `json:"files"`
	KVBytesPerToken  int            `json:"kv_bytes_per_token"`
	KVBytesPerTokenB int            `json:"kv_bytes_per_token_bf16"`
	Device           map[string]any `json:"device,omitempty"` // with --device cuda: the GPU, its memory, the longest context
}

func runInspect(args []string) error {
	fs := newFlags("inspect")
	dir := fs.String("model", "", "model folder (config.json and safetensors weights; default: the built-in model)")
	format := fs.String("format", "text", "output: text or json")
	device := deviceFlag(fs)
	spec := fs.String("kv", "", "with --device cuda: also the longest context that fits for this KV cache policy")
	chunk := fs.Int("chunk", 4096, "with --kv: the pre-fill chunk in tokens")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *format != "text" && *format != "json" {
		return fmt.Errorf("--format %q: want text or json", *format)
	}
	m, _, d, err := loadModelWith(*dir, false)
	if err != nil {
		return err
	}
	*dir = d
	defer m.Close()
	c := m.Config
	o := inspectOutput{
		Architecture: c.Arch, Params: c.Params(), Layers: c.Layers, Hidden: c.Hidden, Intermediate: c.Intermediate,
		Heads: c.Heads, KVHeads: c.KVHeads, HeadDim: c.HeadDim, Vocab: c.Vocab, TiedEmbeddings: c.TieEmbeddings,
		QKVBias: c.QKVBias, OBias: c.OBias, Rope: c.Rope, MaxPositions: c.MaxPositions,
		KVBytesPerLayer: 2 * c.KVHeads * c.HeadDim * 4,
		KVBytesPerToken: c.KVBytesPerToken(), KVBytesPerTokenB: c.KVBytesPerToken() / 2,
		WeightBytes: map[string]int{},
	}
	for l, win := range c.Window {
		if win > 0 {
			o.LocalLayers, o.Windows = append(o.LocalLayers, l), append(o.Windows, win)
		}
	}
	if c.LocalRope.Theta != 0 && len(o.LocalLayers) > 0 {
		o.LocalRope = &c.LocalRope
	}
	ckpt, err := safetensors.OpenCheckpoint(*dir)
	if err != nil {
		return err
	}
	defer ckpt.Close()
	o.Files = len(ckpt.Files)
	for _, f := range ckpt.Files {
		for _, n := range f.Names() {
			t, _ := f.Tensor(n)
			o.WeightBytes[string(t.Dtype)] += len(t.Data)
		}
	}
	dev, err := openDevice(*device)
	if err != nil {
		return err
	}
	defer dev.close()
	if *format == "json" {
		o.Device = map[string]any{}
		if err := dev.describe(&c, func(k string, v any) { o.Device[k] = v }, *spec, *chunk, kv.WithDir(*dir)); err != nil {
			return err
		}
		if len(o.Device) == 0 {
			o.Device = nil
		}
		return json.NewEncoder(os.Stdout).Encode(o)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(w, "%s\t%v\n", k, v) }
	row("architecture", o.Architecture)
	row("parameters", fmt.Sprintf("%d (%.1fM)", o.Params, float64(o.Params)/1e6))
	row("layers", o.Layers)
	row("hidden / intermediate", fmt.Sprintf("%d / %d", o.Hidden, o.Intermediate))
	row("heads / kv heads / head dim", fmt.Sprintf("%d / %d / %d", o.Heads, o.KVHeads, o.HeadDim))
	row("vocab", o.Vocab)
	row("tied embeddings", o.TiedEmbeddings)
	row("biases (qkv, o)", fmt.Sprintf("%v, %v", o.QKVBias, o.OBias))
	rope := fmt.Sprintf("%s, theta %g", c.Rope.Type, c.Rope.Theta)
	switch c.Rope.Type {
	case "linear":
		rope += fmt.Sprintf(", factor %g", c.Rope.Factor)
	case "llama3":
		rope += fmt.Sprintf(", factor %g, low/high freq factor %g/%g, original max positions %g",
			c.Rope.Factor, c.Rope.LowFreqFactor, c.Rope.HighFreqFactor, c.Rope.OriginalMaxPositions)
	}
	row("rope", rope)
	row("max positions", o.MaxPositions)
	if n := len(o.LocalLayers); n > 0 {
		row("layers local / global", fmt.Sprintf("%d / %d (local %v, windows %v)", n, o.Layers-n, o.LocalLayers, o.Windows))
		row("KV bytes per token, local layer", fmt.Sprintf("%d (float32) while within its window, 0 after", o.KVBytesPerLayer))
		if o.LocalRope != nil {
			row("local rope", fmt.Sprintf("%s, theta %g", o.LocalRope.Type, o.LocalRope.Theta))
		}
	}
	row("KV bytes per token per layer", fmt.Sprintf("%d (float32), %d (bf16)", o.KVBytesPerLayer, o.KVBytesPerLayer/2))
	dtypes := make([]string, 0, len(o.WeightBytes))
	for d := range o.WeightBytes {
		dtypes = append(dtypes, d)
	}
	sort.Strings(dtypes)
	for _, d := range dtypes {
		row("weights "+d, fmt.Sprintf("%d bytes", o.WeightBytes[d]))
	}
	row("weight files", o.Files)
	row("KV bytes per token", fmt.Sprintf("%d (float32), %d (bf16)", o.KVBytesPerToken, o.KVBytesPerTokenB))
	if err := dev.describe(&c, row, *spec, *chunk, kv.WithDir(*dir)); err != nil {
		return err
	}
	return w.Flush()
}
