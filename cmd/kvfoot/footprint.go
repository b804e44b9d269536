package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/kvfoot/kvfoot/footprint"
	"github.com/kvfoot/kvfoot/model"
)

func init() {
	register("footprint", "the paper's analytic KV footprint and peak for a prompt and response length", runFootprint)
}

type footprintOutput struct {
	footprint.Result
	PromptLen   int              `json:"prompt_len"`
	ResponseLen int              `json:"response_len"`
	Variant     string           `json:"variant"`
	Model       string           `json:"model,omitempty"`
	Bytes       *footprint.Bytes `json:"bytes,omitempty"`
	// With a --model that has local (sliding-window) layers: how many, and the method's
	// footprint and peak on global layers alone (Result is then the model's).
	LocalLayers  int               `json:"local_layers,omitempty"`
	Layers       int               `json:"layers,omitempty"`
	GlobalResult *footprint.Result `json:"global,omitempty"`
}

func runFootprint(args []string) error {
	fs := newFlags("footprint")
	var p footprint.Params
	fs.IntVar(&p.Prompt, "prompt-len", 0, "prompt tokens P (required)")
	fs.IntVar(&p.Response, "response-len", 0, "generated tokens R")
	fs.IntVar(&p.Chunk, "chunk", 0, "pre-fill chunk size C (0: the whole prompt in one chunk)")
	fs.IntVar(&p.Sink, "sink", 0, "sink tokens S of streaming heads")
	fs.IntVar(&p.Window, "window", 0, "local window W of streaming heads")
	fs.Float64Var(&p.HeadSparsity, "head-sparsity", 0, "fraction h of streaming heads (DuoAttention, PruLong)")
	fs.Float64Var(&p.KVSparsity, "kv-sparsity", 0, "token sparsity s of the other heads (SnapKV, PyramidKV, Locret)")
	fs.IntVar(&p.KVWindow, "kv-window", 64, "tokens kept per chunk on top of round((1−s)·chunk) (the paper always uses 64)")
	exact := fs.Bool("exact", false, "the harness's own arithmetic instead of the published formula: --prompt-len tokens pre-filled and --response-len decoded (a harness sample of L prompt and R output tokens is L−1 and R), chunks keep int((1−s)·n) window included")
	fs.BoolVar(&p.PostFill, "post-fill", false, "with --exact: evict once after the pre-fill (SnapKV/PyramidKV without chunking)")
	fs.BoolVar(&p.Patch, "patch", false, "with --exact: SnapKV's patch (non-final chunks keep exactly int((1−s)·n))")
	fs.IntVar(&p.Layers, "layers", 0, "with --exact: PyramidKV's per-layer budgets over this many layers (0: SnapKV)")
	fs.IntVar(&p.Beta, "beta", 20, "with --exact --layers: PyramidKV's β")
	locret := fs.Bool("locret", false, "Locret's variant: chunks over P−local-len, then one chunk of local-len; stabilizers replace kv-window")
	localLen := fs.Int("local-len", 100, "Locret: length of the last pre-fill chunk")
	stabilizers := fs.Int("stabilizers", 2500, "Locret: tokens kept per chunk on top of round((1−s)·chunk)")
	dir := fs.String("model", "", "model folder: add bytes (peak and mean) for its config; its own sliding-window layers count as what they see")
	dtype := fs.String("dtype", "bfloat16", "with --model: KV element type (float32, bfloat16, float16)")
	format := fs.String("format", "text", "output: text or json")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *format != "text" && *format != "json" {
		return fmt.Errorf("--format %q: want text or json", *format)
	}
	for _, f := range []struct {
		name  string
		v, lo int
	}{{"prompt-len", p.Prompt, 1}, {"response-len", p.Response, 0}, {"chunk", p.Chunk, 0}, {"sink", p.Sink, 0},
		{"window", p.Window, 0}, {"kv-window", p.KVWindow, 0}, {"local-len", *localLen, 0}, {"stabilizers", *stabilizers, 0}} {
		if f.v < f.lo || f.v > footprint.MaxTokens {
			return fmt.Errorf("--%s %d: want %d…%d", f.name, f.v, f.lo, footprint.MaxTokens)
		}
	}
	if p.Layers < 0 || p.Layers > footprint.MaxLayers {
		return fmt.Errorf("--layers %d: want 0 (SnapKV) to %d", p.Layers, footprint.MaxLayers)
	}
	if p.Beta < 0 {
		return fmt.Errorf("--beta %d: want ≥ 0", p.Beta)
	}
	if p.Prompt+p.Response > footprint.MaxTokens {
		return fmt.Errorf("--prompt-len %d + --response-len %d: want at most %d tokens in all", p.Prompt, p.Response, footprint.MaxTokens)
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"head-sparsity", p.HeadSparsity}, {"kv-sparsity", p.KVSparsity}} {
		if !(f.v >= 0 && f.v <= 1) {
			return fmt.Errorf("--%s %g: want 0…1", f.name, f.v)
		}
	}
	unread, with := []string{"local-len", "stabilizers"}, "without" // flags the chosen variant does not read
	if *locret {
		unread, with = []string{"sink", "window", "head-sparsity", "kv-window"}, "with"
	}
	for _, f := range unread {
		if isSet(fs, f) {
			return fmt.Errorf("--%s has no effect %s --locret", f, with)
		}
	}
	if isSet(fs, "dtype") && *dir == "" {
		return fmt.Errorf("--dtype has no effect without --model")
	}
	out := footprintOutput{PromptLen: p.Prompt, ResponseLen: p.Response, Variant: "get_kv_footprint", Model: *dir}
	var err error
	if !*exact && (p.PostFill || p.Patch || p.Layers != 0) {
		return fmt.Errorf("--post-fill, --patch and --layers describe the harness's arithmetic: give --exact too")
	}
	switch {
	case *locret && *exact:
		out.Variant = "harness_locret"
		out.Result, err = footprint.LocretExact(p.Prompt, p.Response, p.Chunk, p.KVSparsity, *localLen, *stabilizers)
	case *locret:
		out.Variant = "get_kv_footprint_locret"
		out.Result, err = footprint.Locret(p.Prompt, p.Response, p.Chunk, p.KVSparsity, *localLen, *stabilizers)
	case *exact:
		out.Variant = "harness"
		out.Result, err = footprint.Exact(p)
	default:
		out.Result, err = footprint.Analytic(p)
	}
	if err != nil {
		return err
	}
	if *dir != "" {
		cfg, err := model.LoadConfig(*dir)
		if err != nil {
			return fmt.Errorf("--model: %w", err)
		}
		if n := cfg.LocalLayers(); n > 0 {
			g := out.Result
			out.GlobalResult, out.LocalLayers, out.Layers = &g, n, cfg.Layers
			out.Result = footprint.WithLocalLayers(g, p.Prompt+p.Response, cfg.Window)
		}
		per, err := footprint.BytesPerToken(cfg.Layers, cfg.KVHeads, cfg.HeadDim, *dtype)
		if err != nil {
			return fmt.Errorf("--dtype: %w", err)
		}
		b := footprint.KVBytes(out.Result, p.Prompt+p.Response, per)
		out.Bytes = &b
	}
	if *format == "json" {
		return json.NewEncoder(os.Stdout).Encode(out)
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "footprint %.6f\npeak      %.6f\n", out.Footprint, out.Peak)
	if g := out.GlobalResult; g != nil {
		fmt.Fprintf(&sb, "local layers %d of %d see only their window (native footprint below 1 under full attention); on global layers alone: footprint %.6f, peak %.6f\n",
			out.LocalLayers, out.Layers, g.Footprint, g.Peak)
	}
	if b := out.Bytes; b != nil {
		fmt.Fprintf(&sb, "bytes/token %d (%s)\npeak      %.3f GiB\nmean      %.3f GiB\n", b.PerToken, *dtype, b.PeakGiB, b.MeanGiB)
	}
	_, err = os.Stdout.WriteString(sb.String())
	return err
}
