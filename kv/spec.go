package kv

import (
	"fmt"
	"io/fs"
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
//   - a token selector (full, streaming, snapkv, pyramidkv, h2o, tova, and any that a
//     program adds with Register) decides which entries a KV head keeps (default full);
//   - a head role (headmask) makes some KV heads streaming; the others use the selector;
//   - a storage (quant, bf16) sets the precision (default float32).

// Kind is what part of a spec a registration fills.
type Kind int

const (
	Selector Kind = iota // which entries a KV head keeps
	Role                 // which KV heads are streaming
	Stored               // the precision entries are stored in
)

func (k Kind) String() string {
	return [...]string{"token selector", "head role", "storage"}[k]
}

// ParamType is the type of a spec key's value.
type ParamType int

const (
	Int ParamType = iota
	Float
	Bool
	File   // a file name, relative to the cache's WithDir
	Choice // one of Param.Choices
)

// Param is one key of a spec part.
type Param struct {
	Key      string
	Type     ParamType
	Default  string  // the value when the key is absent; "" with Required false: absent
	Min, Max float64 // the accepted range of an Int or Float
	Choices  []string
	Required bool
	Doc      string
}

// Registration describes one spec name: its keys, an example and its constructor.
type Registration struct {
	Name    string
	Kind    Kind
	Doc     string
	Example string // a spec using this name, for help texts and tests
	Params  []Param
	// NewSelector builds a token selector (Kind Selector) from checked arguments.
	NewSelector func(Args) (Policy, error)

	newRole    func(Args) (*headmask, error)
	newStorage func(Args) (Precision, error)
}

var registry = map[string]*Registration{}

// Register adds a token selector to the spec grammar, so that every command, the
// evaluation and the server accept it by name. It refuses a name in use, a malformed
// key list and an example that does not parse.
func Register(r Registration) error {
	if r.NewSelector == nil || r.newRole != nil || r.newStorage != nil {
		return fmt.Errorf("kv: register %q: want a token selector (NewSelector)", r.Name)
	}
	r.Kind = Selector
	return add(r)
}

func add(r Registration) error {
	if r.Name == "" || strings.ContainsAny(r.Name, ":+,= \t") {
		return fmt.Errorf("kv: register %q: want a name without ':', '+', ',', '=' or spaces", r.Name)
	}
	if _, dup := registry[r.Name]; dup {
		return fmt.Errorf("kv: register %q: the name is taken", r.Name)
	}
	for i, p := range r.Params {
		if p.Key == "" || slices.ContainsFunc(r.Params[:i], func(q Param) bool { return q.Key == p.Key }) {
			return fmt.Errorf("kv: register %q: key %q empty or repeated", r.Name, p.Key)
		}
		if p.Default != "" {
			if _, err := p.parse(r.Name, p.Default); err != nil {
				return fmt.Errorf("kv: register %q: default: %w", r.Name, err)
			}
		}
	}
	registry[r.Name] = &r
	if _, err := parseSpec(r.Example); err != nil {
		delete(registry, r.Name)
		return fmt.Errorf("kv: register %q: example %q: %w", r.Name, r.Example, err)
	}
	return nil
}

// mustAdd registers a built-in name.
func mustAdd(r Registration) {
	if err := add(r); err != nil {
		panic(err)
	}
}

// Registry lists every registration, sorted by name.
func Registry() []Registration {
	out := make([]Registration, 0, len(registry))
	for _, n := range Names() {
		out = append(out, *registry[n])
	}
	return out
}

// Names lists the policy names a spec may use.
func Names() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// value is a parsed key: the field of its type is set.
type value struct {
	i int
	f float64
	b bool
	s string
}

func (p Param) parse(name, s string) (value, error) {
	switch p.Type {
	case Int:
		x, err := strconv.Atoi(s)
		if err != nil {
			return value{}, fmt.Errorf("%s: %s=%q: want an integer", name, p.Key, s)
		}
		if lo, hi := intBound(p.Min), intBound(p.Max); int64(x) < lo || int64(x) > hi {
			return value{}, fmt.Errorf("%s: %s=%d: want %s", name, p.Key, x, p.Range())
		}
		return value{i: x}, nil
	case Float:
		x, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(x) {
			return value{}, fmt.Errorf("%s: %s=%q: want a number", name, p.Key, s)
		}
		if x < p.Min || x > p.Max {
			return value{}, fmt.Errorf("%s: %s=%g: want %s", name, p.Key, x, p.Range())
		}
		return value{f: x}, nil
	case Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return value{}, fmt.Errorf("%s: %s=%q: want true or false", name, p.Key, s)
		}
		return value{b: b}, nil
	case Choice:
		if !slices.Contains(p.Choices, s) {
			return value{}, fmt.Errorf("%s: %s=%q: want one of %s", name, p.Key, s, strings.Join(p.Choices, ", "))
		}
	}
	return value{s: s}, nil
}

// intBound is an Int key's bound as an integer, so that values near 2^62 compare
// exactly (a float comparison took 2^62+1 for 2^62).
func intBound(b float64) int64 {
	switch {
	case b >= math.MaxInt64:
		return math.MaxInt64
	case b <= math.MinInt64:
		return math.MinInt64
	}
	return int64(b)
}

// Range is the values p accepts, as help texts and errors write them.
func (p Param) Range() string {
	num := func(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }
	switch p.Type {
	case Int, Float:
		return num(p.Min) + "…" + num(p.Max)
	case Choice:
		return strings.Join(p.Choices, "|")
	}
	return p.placeholder()
}

// placeholder stands for a value of p's type in messages and help texts.
func (p Param) placeholder() string {
	switch p.Type {
	case Int:
		return "N"
	case Float:
		return "X"
	case Bool:
		return "true|false"
	case File:
		return "FILE"
	}
	return strings.Join(p.Choices, "|")
}

// Args are the checked key=value settings of one spec part, with the model shape and
// the directory that relative file names are resolved against.
type Args struct {
	reg   *Registration
	vals  map[string]value
	shape Shape
	dir   string
	fsys  fs.FS
}

// Shape is the attention geometry of the model the cache is for.
func (a Args) Shape() Shape { return a.shape }

// Has reports whether the spec gave key (or it has a default).
func (a Args) Has(key string) bool {
	_, ok := a.get(key)
	return ok
}

func (a Args) get(key string) (value, bool) {
	if v, ok := a.vals[key]; ok {
		return v, true
	}
	for _, p := range a.reg.Params {
		if p.Key == key {
			if p.Default == "" {
				return value{}, false
			}
			v, _ := p.parse(a.reg.Name, p.Default) // checked by add
			return v, true
		}
	}
	panic(fmt.Sprintf("kv: %s has no key %q", a.reg.Name, key))
}

// Int, Float, Bool and Text return a key's value, or its default (the zero value
// when it has none); asking for a key the registration lacks is a programming error.
func (a Args) Int(key string) int       { v, _ := a.get(key); return v.i }
func (a Args) Float(key string) float64 { v, _ := a.get(key); return v.f }
func (a Args) Bool(key string) bool     { v, _ := a.get(key); return v.b }
func (a Args) Text(key string) string   { v, _ := a.get(key); return v.s }
func (a Args) Errorf(format string, x ...any) error {
	return fmt.Errorf("%s: %s", a.reg.Name, fmt.Sprintf(format, x...))
}

// part is one parsed `name:key=value,...`.
type part struct {
	reg  *Registration
	vals map[string]value
}

// parseSpec splits a spec into parts and checks names, keys and values against the
// registry.
func parseSpec(spec string) ([]part, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		spec = "full"
	}
	var parts []part
	for _, s := range strings.Split(spec, "+") {
		s = strings.TrimSpace(s)
		name, args, _ := strings.Cut(s, ":")
		name = strings.TrimSpace(name)
		if name == "" {
			return nil, fmt.Errorf("empty policy name in %q", spec)
		}
		r, ok := registry[name]
		if !ok {
			return nil, fmt.Errorf("unknown policy %q (known: %s)", name, strings.Join(Names(), ", "))
		}
		p := part{reg: r, vals: map[string]value{}}
		if strings.TrimSpace(args) != "" {
			for _, a := range strings.Split(args, ",") {
				k, v, ok := strings.Cut(a, "=")
				k, v = strings.TrimSpace(k), strings.TrimSpace(v)
				if !ok || k == "" || v == "" {
					return nil, fmt.Errorf("%s: %q: want key=value", name, a)
				}
				i := slices.IndexFunc(r.Params, func(q Param) bool { return q.Key == k })
				if i < 0 {
					if len(r.Params) == 0 {
						return nil, fmt.Errorf("%s: unknown key %q (%s takes no keys)", name, k, name)
					}
					return nil, fmt.Errorf("%s: unknown key %q (known: %s)", name, k, strings.Join(r.keys(), ", "))
				}
				if _, dup := p.vals[k]; dup {
					return nil, fmt.Errorf("%s: key %q given twice", name, k)
				}
				x, err := r.Params[i].parse(name, v)
				if err != nil {
					return nil, err
				}
				p.vals[k] = x
			}
		}
		for _, q := range r.Params {
			if _, ok := p.vals[q.Key]; q.Required && !ok {
				return nil, fmt.Errorf("%s: %s=%s is required (%s)", name, q.Key, q.placeholder(), q.Doc)
			}
		}
		parts = append(parts, p)
	}
	return parts, nil
}

func (r *Registration) keys() []string {
	k := make([]string, len(r.Params))
	for i, p := range r.Params {
		k[i] = p.Key
	}
	return k
}

// compose builds the policy and the storage of a spec for a model shape.
func compose(parts []part, s Shape, cfg config) (Policy, Precision, error) {
	var err error
	var byKind [3]*part
	for i := range parts {
		p := &parts[i]
		if prev := byKind[p.reg.Kind]; prev != nil {
			return nil, Precision{}, fmt.Errorf("%s and %s are both a %s: a spec combines at most one token selector, "+
				"one head role and one storage (%s)", prev.reg.Name, p.reg.Name, p.reg.Kind, kindsList())
		}
		byKind[p.reg.Kind] = p
	}
	args := func(p *part) Args { return Args{reg: p.reg, vals: p.vals, shape: s, dir: cfg.dir, fsys: cfg.fsys} }
	var pol Policy = full{}
	if p := byKind[Selector]; p != nil {
		if pol, err = p.reg.NewSelector(args(p)); err != nil {
			return nil, Precision{}, err
		}
	}
	if p := byKind[Role]; p != nil {
		if sel := byKind[Selector]; sel != nil && sel.reg.Name == "streaming" {
			return nil, Precision{}, fmt.Errorf("headmask+streaming: headmask already makes its streaming heads keep sink+window; " +
				"a streaming selector would make every head streaming (use streaming alone)")
		}
		hm, err := p.reg.newRole(args(p))
		if err != nil {
			return nil, Precision{}, err
		}
		hm.inner = pol
		pol = hm
	}
	st := Precision{Name: "f32"}
	if p := byKind[Stored]; p != nil {
		if st, err = p.reg.newStorage(args(p)); err != nil {
			return nil, Precision{}, err
		}
	}
	return pol, st, nil
}

// kindsList names the registrations of each kind, for error messages.
func kindsList() string {
	var out []string
	for k := Selector; k <= Stored; k++ {
		var names []string
		for _, r := range Registry() {
			if r.Kind == k {
				names = append(names, r.Name)
			}
		}
		out = append(out, k.String()+": "+strings.Join(names, ", "))
	}
	return strings.Join(out, "; ")
}

type f32Maker struct{}

func (f32Maker) newStore(d int) store { return &f32Store{d: d} }

type bf16Maker struct{}

func (bf16Maker) newStore(d int) store { return &bf16Store{d: d} }

// storeMaker makes the storage of one KV head with head dimension d.
type storeMaker interface{ newStore(d int) store }

func init() {
	mustAdd(Registration{Name: "bf16", Kind: Stored, Example: "bf16",
		Doc:        "keys and values stored as bfloat16 (half the bytes of float32)",
		newStorage: func(Args) (Precision, error) { return Precision{Name: "bf16"}, nil }})
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
