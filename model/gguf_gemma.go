package model

import (
	"fmt"
	"math"
	"slices"

	"github.com/kvfoot/kvfoot/format/gguf"
)

// ggufGemma sets the Gemma 2/3 fields of c from a GGUF file as llama.cpp reads them
// (src/llama-model.cpp, load_hparams for LLM_ARCH_GEMMA2 and LLM_ARCH_GEMMA3), whose
// converter stores none of what llama.cpp fixes per architecture:
//   - windows: Gemma 2 alternates local and global layers, local first, with a
//     window of 4096 unless attention.sliding_window says otherwise; Gemma 3 has
//     five local layers before each global one when attention.sliding_window is set
//     (and positive), else only global layers;
//   - local layers' RoPE (Gemma 3): base 10000, unscaled;
//   - attention scale: 1/√(hidden/heads) for the 27B models (46 layers for Gemma 2,
//     62 for Gemma 3), 1/√head_dim for the others (query_pre_attn_scalar is not
//     stored);
//   - soft caps: Gemma 2's default to 50 (attention) and 30 (logits); Gemma 3 has no
//     attention cap, and a logit cap only when final_logit_softcapping is given;
//   - embeddings scaled by √hidden in float32; norms stored as 1 + w (read as is).
//
// Where a file states one of the fixed values under a key of llama.cpp's own
// vocabulary (attention.scale, attention.sliding_window_pattern as a period or a
// per-layer list, rope.freq_base_swa, embedding_scale, and Gemma 3's
// attn_logit_softcapping; Ollama's converter writes the pattern and, as
// rope.local.freq_base, the local base), the key wins: llama.cpp's converter writes none of them for
// Gemma, so its files read exactly as llama.cpp reads them, and a model that departs
// from the fixed values (kvfoot export writes such keys: a bf16 checkpoint's √hidden,
// which transformers rounds to bf16, is one) keeps its semantics.
func ggufGemma(f *gguf.File, arch string, c *Config) error {
	c.Gemma = true
	key := func(k string) string { return arch + "." + k }
	positive := func(k string, dst *float64) error {
		if !f.Has(key(k)) {
			return nil
		}
		v, err := f.Float(key(k))
		if err != nil {
			return err
		}
		if !(v > 0) || math.IsInf(v, 0) {
			return fmt.Errorf("%s: metadata %q: %g, want a positive number", f.Path, key(k), v)
		}
		*dst = v
		return nil
	}

	embedScale := math.Sqrt(float64(c.Hidden))
	if err := positive("embedding_scale", &embedScale); err != nil {
		return err
	}
	c.EmbedScale = float32(embedScale)

	large := arch == "gemma2" && c.Layers == 46 || arch == "gemma3" && c.Layers == 62
	scale := 1 / math.Sqrt(float64(c.HeadDim))
	if large {
		scale = 1 / math.Sqrt(float64(c.Hidden/c.Heads))
	}
	if err := positive("attention.scale", &scale); err != nil {
		return err
	}
	c.AttnScale = float32(scale)

	attnCap, finalCap := 50.0, 30.0
	if arch == "gemma3" {
		attnCap, finalCap = 0, 0
	}
	if err := positive("attn_logit_softcapping", &attnCap); err != nil {
		return err
	}
	if err := positive("final_logit_softcapping", &finalCap); err != nil {
		return err
	}
	c.AttnSoftCap, c.FinalSoftCap = float32(attnCap), float32(finalCap)

	window, period := 0, 2
	if arch == "gemma2" {
		window = 4096
	} else {
		period = 6
	}
	if f.Has(key("attention.sliding_window")) {
		w, err := f.Int(key("attention.sliding_window"))
		if err != nil {
			return err
		}
		if w < 0 || w > 1<<30 || w == 0 && arch == "gemma2" {
			return fmt.Errorf("%s: metadata %q: %d, want a positive integer up to %d", f.Path, key("attention.sliding_window"), w, 1<<30)
		}
		window = int(w)
	}
	if window == 0 {
		c.Window = nil
		return nil
	}
	local, err := ggufWindowPattern(f, key("attention.sliding_window_pattern"), c.Layers, period)
	if err != nil {
		return err
	}
	if !slices.Contains(local, true) {
		c.Window = nil
		return nil
	}
	c.Window = make([]int, c.Layers)
	for l, loc := range local {
		if loc {
			c.Window[l] = window
		}
	}
	if arch == "gemma3" {
		c.LocalRope = Rope{Theta: 10000, Type: "default", Factor: 1}
		// llama.cpp's key, or Ollama's converter's
		for _, k := range []string{"rope.freq_base_swa", "rope.local.freq_base"} {
			if !f.Has(key(k)) {
				continue
			}
			if err := positive(k, &c.LocalRope.Theta); err != nil {
				return err
			}
			if !(c.LocalRope.Theta > 1) {
				return fmt.Errorf("%s: metadata %q: %g, want > 1", f.Path, key(k), c.LocalRope.Theta)
			}
			break
		}
	}
	return nil
}

// ggufWindowPattern says which of n layers are local: by llama.cpp's
// set_swa_pattern(period) (layer l is local unless l % period == period − 1) unless
// the file has key, either such a period or one flag per layer (true: local).
func ggufWindowPattern(f *gguf.File, key string, n, period int) ([]bool, error) {
	local := make([]bool, n)
	v, ok := f.Lookup(key)
	if a, isArray := v.(gguf.Array); ok && isArray {
		if a.Len() != n {
			return nil, fmt.Errorf("%s: metadata %q: %d entries for %d layers", f.Path, key, a.Len(), n)
		}
		if flags, isBool := a.Values.([]bool); isBool {
			copy(local, flags)
			return local, nil
		}
		ints, err := f.Ints(key)
		if err != nil {
			return nil, fmt.Errorf("%s: metadata %q: an array of %s, want one bool per layer", f.Path, key, a.Elem)
		}
		for l, x := range ints {
			local[l] = x != 0
		}
		return local, nil
	}
	if ok {
		p, err := f.Int(key)
		if err != nil {
			return nil, err
		}
		if p < 1 || p > 1<<30 {
			return nil, fmt.Errorf("%s: metadata %q: %d, want a positive period (or one flag per layer)", f.Path, key, p)
		}
		period = int(p)
	}
	for l := range local {
		local[l] = l%period < period-1
	}
	return local, nil
}
