// Package kv is the KV cache: per layer and per KV head, variable length, with the
// policies that decide what each KV head keeps.
//
// A forward pass of n tokens is appended to every KV head, attended to (query i sees
// the entries the head kept before the forward plus chunk tokens 0…i), and only then
// may the policy evict. Keys are stored after RoPE at their original positions; the
// next position is the number of tokens fed (Pos), not the cache length.
package kv

import (
	"fmt"
	"io/fs"

	"github.com/kvfoot/kvfoot/model"
)

// Shape is the attention geometry of a model.
type Shape struct {
	Layers, Heads, KVHeads, HeadDim int
}

func (s Shape) check() error {
	if s.Layers < 1 || s.Heads < 1 || s.KVHeads < 1 || s.HeadDim < 1 || s.Heads%s.KVHeads != 0 {
		return fmt.Errorf("kv: shape %+v: want positive sizes and Heads a multiple of KVHeads", s)
	}
	return nil
}

// Observer is told what every attention call saw and what the cache holds after
// every forward; footprint.Meter implements it.
type Observer interface {
	// Attended: in (layer, KV head) a forward's n queries each saw the past entries
	// kept before it plus the chunk causally (patch tokens are not counted).
	Attended(layer, head, past, n int)
	// Step ends a forward of n tokens: entries and bytes held now (after eviction) and
	// the most bytes held at any moment during the forward.
	Step(n int, prefill bool, entries int64, bytes, peakBytes int64)
}

// head is one KV head of one layer: its storage and the position of each entry.
type head struct {
	st  store
	pos []int32
}

// Cache is a KV cache run by a policy; it implements model.Cache.
type Cache struct {
	shape Shape // as stored: with an expanding policy, one head per query head
	rep   int   // stored heads per model KV head (1, or the GQA group when expanded)
	pol   Policy
	obs   Observer
	pos   int
	heads [][]head   // [layer][KV head]
	step  model.Step // the forward in progress
	bytes int64      // storage held now
	peak  int64      // most storage held during the forward in progress

	// scratch, reused across calls
	fwd          []Forward // per KV head
	req          []ScoreRequest
	kbuf, vbuf   [][]float32 // per KV head: dequantized views
	kview, vview [][]float32
	rows         []rowStore    // per KV head: set (and no views) when decode converts tiles
	scr          [][]float32   // per query head: decode scores
	acc          [][]float32   // per query head: accumulated probabilities
	ws           []attnWork    // per goroutine of the chunk kernel
	dec          decodeScratch // the decode kernel's
}

// Option configures New.
type Option func(*config)

type config struct {
	obs  Observer
	dir  string
	fsys fs.FS // WithFS
}

// WithObserver reports every attention call and step to o (a footprint.Meter).
func WithObserver(o Observer) Option { return func(c *config) { c.obs = o } }

// WithDir resolves relative file names in the spec (headmask masks) against dir.
func WithDir(dir string) Option { return func(c *config) { c.dir = dir } }

// New returns an empty cache run by the policy named by spec ("" is full); see the
// spec grammar in spec.go.
func New(s Shape, spec string, options ...Option) (*Cache, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	var cfg config
	for _, o := range options {
		o(&cfg)
	}
	pol, st, err := compose(spec, s, cfg)
	if err != nil {
		return nil, fmt.Errorf("kv: policy %q: %w", spec, err)
	}
	rep := 1
	if e, ok := pol.(expander); ok && e.expand() {
		rep, s.KVHeads = s.Heads/s.KVHeads, s.Heads
	}
	c := &Cache{shape: s, rep: rep, pol: pol, obs: cfg.obs, heads: make([][]head, s.Layers)}
	for l := range c.heads {
		c.heads[l] = make([]head, s.KVHeads)
		for g := range c.heads[l] {
			c.heads[l][g].st = st.newStore(s.HeadDim)
		}
	}
	c.fwd = make([]Forward, s.KVHeads)
	c.req = make([]ScoreRequest, s.KVHeads)
	c.kbuf, c.vbuf = make([][]float32, s.KVHeads), make([][]float32, s.KVHeads)
	c.kview, c.vview = make([][]float32, s.KVHeads), make([][]float32, s.KVHeads)
	c.rows = make([]rowStore, s.KVHeads)
	c.scr, c.acc = make([][]float32, s.Heads), make([][]float32, s.Heads)
	return c, nil
}

// expander is implemented by policies that evict per query head on a cache expanded
// to every query head (SnapKV's gqa=expand): each KV head is stored once per query
// head of its group, and the group's query heads attend to their own copies.
type expander interface{ expand() bool }

// Pos is the number of tokens fed so far: the position of the next token.
func (c *Cache) Pos() int { return c.pos }

// Heads is the number of heads per layer the cache stores: the model's KV heads, or
// its query heads when the policy expands the cache. Len and Positions take these.
func (c *Cache) Heads() int { return c.shape.KVHeads }

// Len is the number of entries (layer, KV head) holds.
func (c *Cache) Len(layer, kvHead int) int { return len(c.heads[layer][kvHead].pos) }

// Positions are the positions of the entries (layer, KV head) holds.
func (c *Cache) Positions(layer, kvHead int) []int32 { return c.heads[layer][kvHead].pos }

// Bytes is the storage the cache holds: keys, values and quantization scales.
func (c *Cache) Bytes() int64 { return c.bytes }

// PatchLen is how many of the prompt's last tokens the policy wants appended to every
// non-final pre-fill chunk (SnapKV's patch, docs/METHODS.md §4.4); 0 for most policies.
func (c *Cache) PatchLen() int {
	if p, ok := c.pol.(patcher); ok {
		return p.patchLen()
	}
	return 0
}

// LocalChunk is how many of the prompt's last pre-filled tokens the policy wants
// pre-filled as a chunk of their own (Locret's local chunk; model.PrefillOptions.Tail);
// 0 for most policies.
func (c *Cache) LocalChunk() int {
	pol := c.pol
	if h, ok := pol.(*headmask); ok {
		pol = h.inner
	}
	if l, ok := pol.(interface{ localChunk() int }); ok {
		return l.localChunk()
	}
	return 0
}

// Begin starts the forward described by s; the model calls it once, before layer 0.
func (c *Cache) Begin(s model.Step) error {
	if err := s.Check(); err != nil {
		return fmt.Errorf("kv: %w", err)
	}
	if s.Pos != c.pos {
		return fmt.Errorf("kv: step at position %d, but the cache is at %d", s.Pos, c.pos)
	}
	if s.Patch > c.PatchLen() {
		return fmt.Errorf("kv: a step with %d patch rows, but the policy asks for %d", s.Patch, c.PatchLen())
	}
	c.step = s
	c.peak = c.bytes
	return nil
}

// Attend appends the forward's keys and values of layer, writes the attention of q into
// out, and lets the policy evict. q and out are [n, Heads·HeadDim], k and v
// [n, KVHeads·HeadDim].
func (c *Cache) Attend(layer int, q, k, v, out []float32) {
	n := c.step.Rows
	if n == 0 {
		panic("kv: Attend outside a step: the model calls Begin first")
	}
	s := c.shape
	d, stride := s.HeadDim, s.KVHeads/c.rep*s.HeadDim // k and v hold the model's KV heads
	for g := range c.heads[layer] {
		h := &c.heads[layer][g]
		past := len(h.pos)
		b0 := h.st.bytes()
		src := g / c.rep
		h.st.appendRows(k[src*d:], v[src*d:], n, stride)
		for i := 0; i < n; i++ {
			h.pos = append(h.pos, int32(c.pos+i))
		}
		c.bytes += h.st.bytes() - b0
		f := &c.fwd[g]
		*f = Forward{Layer: layer, Head: g, KVHead: src, Layers: s.Layers, Past: past, N: c.step.Tokens(), Patch: c.step.Patch,
			Prefill: c.step.Prefill, Final: c.step.Final, buf: f.buf, order: f.order, pool: f.pool, Scores: f.Scores}
		c.req[g] = c.pol.Scores(f)
		c.req[g].From, c.req[g].To = max(c.req[g].From, 0), min(c.req[g].To, n)
		c.rows[g] = nil
		if rs, ok := h.st.(rowStore); ok && n == 1 {
			c.rows[g], c.kview[g], c.vview[g] = rs, nil, nil // decode converts tiles itself
		} else {
			c.kview[g], c.vview[g] = h.st.view(&c.kbuf[g], &c.vbuf[g])
		}
	}
	c.peak = max(c.peak, c.bytes)
	c.attend(q, out, n)
	group := s.Heads / s.KVHeads
	for g := range c.heads[layer] {
		h := &c.heads[layer][g]
		f := &c.fwd[g]
		b0 := h.st.bytes()
		if f.Patch > 0 {
			h.st.truncate(f.Len())
			h.pos = h.pos[:f.Len()]
		}
		f.Pos = h.pos
		f.Scores = f.Scores[:0]
		if !c.req[g].none() {
			f.Scores = grow(&f.Scores, f.Len())
			clear(f.Scores)
			inv := 1 / float32(group)
			for qh := g * group; qh < (g+1)*group; qh++ {
				for j, p := range c.acc[qh][:f.Len()] {
					f.Scores[j] += p * inv
				}
			}
		}
		if c.obs != nil {
			c.obs.Attended(layer, g, f.Past, f.N)
		}
		if keep := c.pol.Keep(f); keep != nil {
			h.st.keep(keep)
			for i, j := range keep {
				h.pos[i] = h.pos[j]
			}
			h.pos = h.pos[:len(keep)]
		}
		c.bytes += h.st.bytes() - b0
	}
}

// attend computes every query head's attention: a chunk by the tiled kernel, a decode
// step (memory bound) by the streaming one (attention.go).
func (c *Cache) attend(q, out []float32, n int) {
	if n > 1 {
		c.attendChunk(q, out, n)
		return
	}
	c.attendDecode(q, out)
}

// Commit ends the forward: Pos advances by the step's tokens (patch rows excluded).
func (c *Cache) Commit() {
	real := c.step.Tokens()
	c.pos += real
	if c.obs != nil {
		var entries int64
		for l := range c.heads {
			for g := range c.heads[l] {
				entries += int64(len(c.heads[l][g].pos))
			}
		}
		c.obs.Step(real, c.step.Prefill, entries, c.bytes, c.peak)
	}
	c.step = model.Step{}
}
