package eval

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kvfoot/kvfoot/kv"
)

// The short method names of the study (issue 10's list), for a model folder whose
// masks/ holds the head masks that DuoAttention and PruLong need: masks/duo/
// (DuoAttention's full_attention_heads.tsv and config.json with sink_size and
// recent_size) and masks/prulong/ (masks_soft.tsv), as kvfoot duo and kvfoot prulong
// write them; masks/duo.tsv and masks/prulong.tsv work too. Without them the two
// methods and the composition are listed as missing.
//
//	full                  full attention, the reference
//	streaming             StreamingLLM: the masks' sink (else 16), window int((1−s)·length)
//	duo, prulong          headmask: streaming heads at head sparsity s (the masks' sink and window)
//	snapkv                SnapKV, post-fill: one eviction after the pre-fill
//	snapkv*               SnapKV evicting after every pre-fill chunk, patched (the prompt's last
//	                      64 tokens score every chunk; naive scoring by the chunk's own last
//	                      tokens loses the needles of the built-in model at 5% sparsity)
//	pyramidkv*            PyramidKV evicting after every pre-fill chunk, patched
//	locret                Locret (not in the default study)
//	int4                  4-bit KIVI-style storage of every entry
//	prulong+snapkv*+int4  PruLong's heads at s, SnapKV* at s in its full heads (per KV head), 4-bit storage
const snapWindow = 64 // SnapKV's observation window in the paper's sweeps

// BuiltinMethods are the short names for the model in dir, in the study's order.
func BuiltinMethods(dir string) []Method {
	duo, duoErr := findMasks(dir, "duo", "full_attention_heads.tsv")
	pl, plErr := findMasks(dir, "prulong", "masks_soft.tsv")
	sink := 16
	if duoErr == nil {
		sink = duo.sink
	} else if plErr == nil {
		sink = pl.sink
	}
	head := func(m masks, err error, name string) Method {
		if err != nil {
			return Method{Name: name, Spec: "headmask:masks=…,sparsity={s}", Missing: err.Error()}
		}
		return Method{Name: name, Spec: fmt.Sprintf("headmask:masks=%s,sparsity={s},sink=%d,window=%d", m.file, m.sink, m.window)}
	}
	composed := head(pl, plErr, "prulong+snapkv*+int4")
	if plErr == nil {
		composed.Spec += fmt.Sprintf("+snapkv:sparsity={s},window=%d,chunked=true,patch=%d,gqa=mean+quant:bits=4", snapWindow, snapWindow)
	}
	return []Method{
		{Name: "full", Spec: "full"},
		{Name: "streaming", Spec: fmt.Sprintf("streaming:sink=%d,window={window}", sink)},
		head(duo, duoErr, "duo"),
		head(pl, plErr, "prulong"),
		{Name: "snapkv", Spec: fmt.Sprintf("snapkv:sparsity={s},window=%d", snapWindow)},
		{Name: "snapkv*", Spec: fmt.Sprintf("snapkv:sparsity={s},window=%d,chunked=true,patch=%d", snapWindow, snapWindow)},
		{Name: "pyramidkv*", Spec: fmt.Sprintf("pyramidkv:sparsity={s},window=%d,chunked=true,patch=%d", snapWindow, snapWindow)},
		{Name: "locret", Spec: "locret:sparsity={s},local=100,stabilizers=256"},
		{Name: "int4", Spec: "quant:bits=4"},
		composed,
	}
}

// DefaultMethods are the default study's methods: every short name but locret.
func DefaultMethods(dir string) []Method {
	return slices.DeleteFunc(BuiltinMethods(dir), func(m Method) bool { return m.Name == "locret" })
}

type masks struct {
	file         string
	sink, window int
}

// findMasks looks for a method's masks under dir/masks.
func findMasks(dir, name, soft string) (masks, error) {
	base := filepath.Join(dir, "masks")
	for _, f := range []string{filepath.Join(base, name, soft), filepath.Join(base, name+".tsv")} {
		if _, err := os.Stat(f); err != nil {
			continue
		}
		m := masks{file: f, sink: 16, window: 256}
		for _, cf := range []string{filepath.Join(base, name, "config.json"), filepath.Join(base, "duo", "config.json"),
			filepath.Join(base, "prulong", "config.json"), filepath.Join(base, name+".json")} {
			data, err := os.ReadFile(cf)
			if err != nil {
				continue
			}
			var c struct {
				Sink   *int `json:"sink_size"`
				Recent *int `json:"recent_size"`
			}
			if err := json.Unmarshal(data, &c); err != nil {
				return masks{}, fmt.Errorf("%s: %w", cf, err)
			}
			if c.Sink != nil && c.Recent != nil {
				m.sink, m.window = *c.Sink, *c.Recent
				break
			}
		}
		return m, nil
	}
	return masks{}, fmt.Errorf("no head masks in %s (%s/%s or %s.tsv): the training issue makes them (kvfoot %s)",
		base, name, soft, name, name)
}

// ParseMethods reads a list of methods separated by ";": short names (BuiltinMethods)
// or policy specs, in which {s} is the sparsity knob (a spec without it is one
// setting); within a part, commas may separate several short names or specs
// (kv.SplitSpecs). A spec is named by itself.
func ParseMethods(list string, builtin []Method) ([]Method, error) {
	var out []Method
	for _, part := range strings.Split(list, ";") {
		for _, s := range kv.SplitSpecs(part) {
			if i := slices.IndexFunc(builtin, func(m Method) bool { return m.Name == s }); i >= 0 {
				out = append(out, builtin[i])
				continue
			}
			name, _, _ := strings.Cut(strings.Split(s, "+")[0], ":")
			if !slices.Contains(kv.Names(), name) {
				var names []string
				for _, m := range builtin {
					names = append(names, m.Name)
				}
				return nil, fmt.Errorf("unknown method %q: want a short name (%s) or a policy spec (policies: %s)",
					s, strings.Join(names, ", "), strings.Join(kv.Names(), ", "))
			}
			out = append(out, Method{Name: s, Spec: s})
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no methods")
	}
	return out, nil
}
