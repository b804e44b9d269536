package kv

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// A spec names a policy: `name:key=value,...`, several composed with `+`, e.g.
// `headmask:masks=m.tsv,sparsity=0.7+snapkv:sparsity=0.5,chunked=true+quant:bits=4`.
// The CLI, the evaluation and the server all go through New, so they share this
// grammar and its errors.
//
// Every part has one kind, and a spec holds at most one part of each kind:
//   - a token selector (full, streaming, snapkv, pyramidkv, h2o, tova) decides which
//     entries a KV head keeps (default full);
//   - a head role (headmask) makes some KV heads streaming; the others use the selector;
//   - a storage (quant, bf16) sets the precision (default float32).
type kind int

const (
	kindSelector kind = iota
	kindRole
	kindStorage
)

func (k kind) String() string {
	return [...]string{"token selector", "head role", "storage"}[k]
}

type builder struct {
	kind  kind
	keys  []string
	build func(opts) (any, error)
}

var registry = map[string]builder{}

// register adds a spec name. build returns a Policy (selector), a *headmask (role)
// or a storeMaker (storage).
func register(name string, k kind, keys []string, build func(opts) (any, error)) {
	registry[name] = builder{k, keys, build}
}

// storeMaker makes the storage of one KV head with head dimension d.
type storeMaker interface{ newStore(d int) store }

// Names lists the policy names a spec may use.
func Names() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// opts are the key=value settings of one spec part, with the context a builder needs.
type opts struct {
	name  string
	kv    map[string]string
	shape Shape
	dir   string // where relative file names (masks) are looked up
}

func (o opts) raw(key string) (string, bool) {
	s, ok := o.kv[key]
	return s, ok
}

func (o opts) int(key string, def, lo, hi int) (int, error) {
	s, ok := o.kv[key]
	if !ok {
		return def, nil
	}
	x, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%s: %s=%q: want an integer", o.name, key, s)
	}
	if x < lo || x > hi {
		return 0, fmt.Errorf("%s: %s=%d: want %d…%d", o.name, key, x, lo, hi)
	}
	return x, nil
}

func (o opts) float(key string, def, lo, hi float64) (float64, error) {
	s, ok := o.kv[key]
	if !ok {
		return def, nil
	}
	x, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(x) {
		return 0, fmt.Errorf("%s: %s=%q: want a number", o.name, key, s)
	}
	if x < lo || x > hi {
		return 0, fmt.Errorf("%s: %s=%g: want %g…%g", o.name, key, x, lo, hi)
	}
	return x, nil
}

func (o opts) bool(key string, def bool) (bool, error) {
	s, ok := o.kv[key]
	if !ok {
		return def, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, fmt.Errorf("%s: %s=%q: want true or false", o.name, key, s)
	}
	return b, nil
}

// part is one parsed `name:key=value,...`.
type part struct {
	name string
	kv   map[string]string
}

// parseSpec splits a spec into parts and checks names and keys against the registry;
// values are checked by the builders.
func parseSpec(spec string) ([]part, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		spec = "full"
	}
	var parts []part
	for _, s := range strings.Split(spec, "+") {
		s = strings.TrimSpace(s)
		name, args, _ := strings.Cut(s, ":")
		if name == "" {
			return nil, fmt.Errorf("empty policy name in %q", spec)
		}
		b, ok := registry[name]
		if !ok {
			return nil, fmt.Errorf("unknown policy %q (known: %s)", name, strings.Join(Names(), ", "))
		}
		p := part{name: name, kv: map[string]string{}}
		if strings.TrimSpace(args) != "" {
			for _, a := range strings.Split(args, ",") {
				k, v, ok := strings.Cut(a, "=")
				k, v = strings.TrimSpace(k), strings.TrimSpace(v)
				if !ok || k == "" || v == "" {
					return nil, fmt.Errorf("%s: %q: want key=value", name, a)
				}
				if !slices.Contains(b.keys, k) {
					if len(b.keys) == 0 {
						return nil, fmt.Errorf("%s: unknown key %q (%s takes no keys)", name, k, name)
					}
					return nil, fmt.Errorf("%s: unknown key %q (known: %s)", name, k, strings.Join(b.keys, ", "))
				}
				if _, dup := p.kv[k]; dup {
					return nil, fmt.Errorf("%s: key %q given twice", name, k)
				}
				p.kv[k] = v
			}
		}
		parts = append(parts, p)
	}
	return parts, nil
}

// compose builds the policy and the storage of a spec for a model shape.
func compose(spec string, s Shape, dir string) (Policy, storeMaker, error) {
	parts, err := parseSpec(spec)
	if err != nil {
		return nil, nil, err
	}
	byKind := map[kind]part{}
	built := map[kind]any{}
	for _, p := range parts {
		k := registry[p.name].kind
		if prev, dup := byKind[k]; dup {
			return nil, nil, fmt.Errorf("%s and %s are both a %s: a spec combines at most one token selector "+
				"(full, streaming, snapkv, pyramidkv, h2o, tova), one head role (headmask) and one storage (quant, bf16)",
				prev.name, p.name, k)
		}
		byKind[k] = p
		x, err := registry[p.name].build(opts{name: p.name, kv: p.kv, shape: s, dir: dir})
		if err != nil {
			return nil, nil, err
		}
		built[k] = x
	}
	var pol Policy = full{}
	if x, ok := built[kindSelector]; ok {
		pol = x.(Policy)
	}
	if x, ok := built[kindRole]; ok {
		hm := x.(*headmask)
		if byKind[kindSelector].name == "streaming" {
			return nil, nil, fmt.Errorf("headmask+streaming: headmask already makes its streaming heads keep sink+window; " +
				"a streaming selector would make every head streaming (use streaming alone)")
		}
		hm.inner = pol
		pol = hm
	}
	var st storeMaker = f32Maker{}
	if x, ok := built[kindStorage]; ok {
		st = x.(storeMaker)
	}
	return pol, st, nil
}

type f32Maker struct{}

func (f32Maker) newStore(d int) store { return &f32Store{d: d} }

type bf16Maker struct{}

func (bf16Maker) newStore(d int) store { return &bf16Store{d: d} }

func init() {
	register("bf16", kindStorage, nil, func(opts) (any, error) { return bf16Maker{}, nil })
}

// SplitSpecs splits a comma-separated list of policy specs, whose own key=value options
// are comma-separated too: a segment whose first "=" comes before any ":" continues the
// previous spec, so "full,streaming:sink=4,window=64" is two specs.
func SplitSpecs(list string) []string {
	var specs []string
	for _, seg := range strings.Split(list, ",") {
		seg = strings.TrimSpace(seg)
		if seg == "" {
			continue
		}
		eq, colon := strings.Index(seg, "="), strings.Index(seg, ":")
		if len(specs) > 0 && eq >= 0 && (colon < 0 || eq < colon) {
			specs[len(specs)-1] += "," + seg
			continue
		}
		specs = append(specs, seg)
	}
	return specs
}
