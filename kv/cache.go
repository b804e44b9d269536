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
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/kvfoot/kvfoot/compute"
	"github.com/kvfoot/kvfoot/internal/rows"
	"github.com/kvfoot/kvfoot/model"
)

// Shape is the attention geometry of a model.
type Shape struct {
	Layers, Heads, KVHeads, HeadDim int
	// Window is each layer's sliding window (0: global), as the model was trained: a
	// query at position i sees keys j with i − j < Window[l]. The cache evicts what a
	// local layer will never see again, whatever the policy keeps. Nil: all global.
	Window []int
	// Scale multiplies q·k (0: 1/√HeadDim); SoftCap caps the scaled scores at
	// SoftCap·tanh(s/SoftCap) (0: none).
	Scale, SoftCap float32
}

func (s Shape) check() error {
	if s.Layers < 1 || s.Heads < 1 || s.KVHeads < 1 || s.HeadDim < 1 || s.Heads%s.KVHeads != 0 {
		return fmt.Errorf("kv: shape %+v: want positive sizes and Heads a multiple of KVHeads", s)
	}
	if s.Window != nil && len(s.Window) != s.Layers {
		return fmt.Errorf("kv: shape: %d windows for %d layers", len(s.Window), s.Layers)
	}
	for l, w := range s.Window {
		if w < 0 {
			return fmt.Errorf("kv: shape: layer %d's window %d, want ≥ 0", l, w)
		}
	}
	if s.Scale < 0 || s.SoftCap < 0 {
		return fmt.Errorf("kv: shape: scale %g and soft cap %g, want ≥ 0", s.Scale, s.SoftCap)
	}
	return nil
}

// window is layer l's sliding window (0: global).
func (s Shape) window(l int) int {
	if l < len(s.Window) {
		return s.Window[l]
	}
	return 0
}

// scale is the factor of q·k.
func (s Shape) scale() float32 {
	if s.Scale > 0 {
		return s.Scale
	}
	return float32(1 / math.Sqrt(float64(s.HeadDim)))
}

// Observer is told what every attention call saw and what the cache holds after
// every forward; footprint.Meter implements it.
type Observer interface {
	// Attended: in (layer, KV head) a forward's queries saw entries in all (the past
	// entries kept before it plus the chunk causally, within a local layer's window;
	// patch tokens are not counted), its last query last of them.
	Attended(layer, head int, entries int64, last int)
	// Step ends a forward of n tokens: entries and bytes held now (after eviction) and
	// the most bytes held at any moment during the forward.
	Step(n int, prefill bool, entries int64, bytes, peakBytes int64)
}

// Cache is a KV cache run by a policy; it implements model.Cache. It is the
// backend-neutral half: the policy's decisions, the positions of every entry and the
// meter's counts; the entries themselves and the attention over them are its Storage.
type Cache struct {
	shape Shape // as stored: with an expanding policy, one head per query head
	rep   int   // stored heads per model KV head (1, or the GQA group when expanded)
	pol   Policy
	obs   Observer
	st    Storage
	facts *Facts
	pos   int
	heads [][][]int32 // [layer][stored head]: the positions of its entries
	step  model.Step  // the forward in progress
	peak  int64       // most storage held during the forward in progress

	// per stored head, reused across calls
	fwd  []Forward
	kept [][]int // Keep's lists when the heads' Keeps ran at once (keepAtOnce)
	args AttendArgs
	lo   [][]int // a local layer's AttendArgs.Lo
}

// frontDropper is implemented by policies that hold state per entry: a local layer's
// window dropped the oldest n entries of (layer, head) after their Keep.
type frontDropper interface{ dropFront(layer, head, n int) }

// Option configures New.
type Option func(*config)

type config struct {
	obs     Observer
	dir     string
	fsys    fs.FS // WithFS
	storage StorageMaker
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
	facts, err := Describe(s, spec, options...)
	if err != nil {
		return nil, err
	}
	pol, prec := facts.pol, facts.Precision
	rep := facts.StoredHeads / s.KVHeads
	s.KVHeads = facts.StoredHeads
	mk := cfg.storage
	if mk == nil {
		mk = HostStorage
	}
	st, err := mk(s, rep, prec)
	if err != nil {
		return nil, fmt.Errorf("kv: policy %q: %w", spec, err)
	}
	c := &Cache{shape: s, rep: rep, pol: pol, obs: cfg.obs, st: st, facts: facts, heads: make([][][]int32, s.Layers)}
	for l := range c.heads {
		c.heads[l] = make([][]int32, s.KVHeads)
	}
	c.fwd = make([]Forward, s.KVHeads)
	c.lo = make([][]int, s.KVHeads)
	c.args = AttendArgs{Past: make([]int, s.KVHeads), Req: make([]ScoreRequest, s.KVHeads), Scores: make([][]float32, s.KVHeads)}
	return c, nil
}

// expander is implemented by policies that evict per query head on a cache expanded
// to every query head (SnapKV's gqa=expand): each KV head is stored once per query
// head of its group, and the group's query heads attend to their own copies.
type expander interface{ expand() bool }

// Facts are the cache's policy's facts (Describe).
func (c *Cache) Facts() *Facts { return c.facts }

// Pos is the number of tokens fed so far: the position of the next token.
func (c *Cache) Pos() int { return c.pos }

// Heads is the number of heads per layer the cache stores: the model's KV heads, or
// its query heads when the policy expands the cache. Len and Positions take these.
func (c *Cache) Heads() int { return c.shape.KVHeads }

// Len is the number of entries (layer, KV head) holds.
func (c *Cache) Len(layer, kvHead int) int { return len(c.heads[layer][kvHead]) }

// Positions are the positions of the entries (layer, KV head) holds.
func (c *Cache) Positions(layer, kvHead int) []int32 { return c.heads[layer][kvHead] }

// Bytes is the storage the cache holds: keys, values and quantization scales.
func (c *Cache) Bytes() int64 { return c.st.Bytes() }

// PatchLen is how many of the prompt's last tokens the policy wants appended to every
// non-final pre-fill chunk (SnapKV's patch, docs/METHODS.md §4.4); 0 for most policies.
func (c *Cache) PatchLen() int { return c.facts.PatchLen }

// LocalChunk is how many of the prompt's last pre-filled tokens the policy wants
// pre-filled as a chunk of their own (Locret's local chunk; model.PlanChunks);
// 0 for most policies.
func (c *Cache) LocalChunk() int { return c.facts.LocalChunk }

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
	c.peak = c.st.Bytes()
	return nil
}

// Attend appends the forward's keys and values of layer, writes the attention of q into
// out, and lets the policy evict. q and out are [n, Heads·HeadDim], k and v
// [n, KVHeads·HeadDim].
func (c *Cache) Attend(layer int, q, k, v, out compute.Buf) {
	n := c.step.Rows
	if n == 0 {
		panic("kv: Attend outside a step: the model calls Begin first")
	}
	s, a := c.shape, &c.args
	a.N, a.Tokens = n, c.step.Tokens()
	win := s.window(layer)
	a.Lo = nil
	if win > 0 {
		a.Lo = c.lo
	}
	c.st.Append(layer, k, v, n)
	for g := range c.heads[layer] {
		pos := c.heads[layer][g]
		past := len(pos)
		pos = slices.Grow(pos, n) // one allocation for a 32K chunk, not a doubling's copies
		for i := 0; i < n; i++ {
			pos = append(pos, int32(c.pos+i))
		}
		c.heads[layer][g] = pos
		if win > 0 {
			// row i (at position pos+i) sees the entries after position pos+i−win
			lo, j := growN(&c.lo[g], n), 0
			for i := range lo {
				for int(pos[j]) <= c.pos+i-win {
					j++
				}
				lo[i] = j
			}
		}
		f := &c.fwd[g]
		*f = Forward{Layer: layer, Head: g, KVHead: g / c.rep, Layers: s.Layers, Past: past, N: a.Tokens, Patch: c.step.Patch,
			Prefill: c.step.Prefill, Final: c.step.Final, buf: f.buf, keys: f.keys, cand: f.cand, pool: f.pool}
		r := c.pol.Scores(f)
		r.From, r.To = max(r.From, 0), min(r.To, n)
		a.Past[g], a.Req[g] = past, r
	}
	c.peak = max(c.peak, c.st.Bytes())
	c.st.Attend(layer, q, out, a)
	entries := 0
	for g := range c.heads[layer] {
		f := &c.fwd[g]
		if f.Patch > 0 {
			c.st.Truncate(layer, g, f.Len())
			c.heads[layer][g] = c.heads[layer][g][:f.Len()]
		}
		f.Pos, f.Scores = c.heads[layer][g], a.Scores[g]
		if c.obs != nil {
			c.obs.Attended(layer, g, c.attended(g, f, win), f.Past+f.N-a.lo(g, max(f.N-1, 0)))
		}
		entries += f.Len()
	}
	concurrent := c.keepAtOnce(entries)
	for g := range c.heads[layer] {
		f := &c.fwd[g]
		pos := f.Pos
		if lo, hi, ok := c.dropRun(f); ok {
			if hi > lo {
				c.st.Drop(layer, g, lo, hi)
				c.heads[layer][g] = rows.Drop(pos, lo, hi, 1)
			}
		} else if keep := c.keepOf(g, concurrent); keep != nil {
			c.st.Keep(layer, g, keep)
			for i, j := range keep {
				pos[i] = pos[j]
			}
			c.heads[layer][g] = pos[:len(keep)]
		}
		if win > 0 {
			c.dropOutOfWindow(layer, g, c.pos+a.Tokens-win)
		}
	}
}

// concurrentKeeper is implemented by policies whose Keep may run for several heads at once:
// it reads only its Forward and the policy's settings, and writes only the Forward's buffers.
type concurrentKeeper interface{ keepsConcurrently() bool }

// keepAtOnce runs the policy's Keep of every stored head of the layer in c.fwd on every core,
// into c.kept, where the policy allows and a pre-fill's layer holds entries enough (a 32K
// eviction: 1024 heads of the 8B shape with gqa=expand, half a millisecond each); it says
// whether it did. Decode steps never do: their Keeps are cheap.
func (c *Cache) keepAtOnce(entries int) bool {
	ck, ok := c.pol.(concurrentKeeper)
	workers := min(runtime.GOMAXPROCS(0), len(c.fwd))
	if !ok || !ck.keepsConcurrently() || !c.step.Prefill || entries < 1<<16 || workers < 2 {
		return false
	}
	c.kept = growN(&c.kept, len(c.fwd))
	var next atomic.Int64
	var wg sync.WaitGroup
	var first sync.Once
	var failure any // a Keep's panic, raised again here: a server recovers a request's panics on its own goroutine only
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if r := recover(); r != nil {
					first.Do(func() { failure = r })
				}
			}()
			for g := int(next.Add(1) - 1); g < len(c.fwd); g = int(next.Add(1) - 1) {
				c.kept[g] = nil
				if _, _, drop := c.dropRun(&c.fwd[g]); !drop {
					c.kept[g] = c.pol.Keep(&c.fwd[g])
				}
			}
		}()
	}
	wg.Wait()
	if failure != nil {
		panic(failure)
	}
	return true
}

// keepOf is the policy's Keep of stored head g: run by keepAtOnce, or now.
func (c *Cache) keepOf(g int, atOnce bool) []int {
	if atOnce {
		return c.kept[g]
	}
	return c.pol.Keep(&c.fwd[g])
}

// dropRun is the policy's run to drop from head f, if it names one (runDropper).
func (c *Cache) dropRun(f *Forward) (lo, hi int, ok bool) {
	if r, is := c.pol.(runDropper); is {
		return r.dropRun(f)
	}
	return 0, 0, false
}

// attended is the entries the forward's queries of stored head g saw in all.
func (c *Cache) attended(g int, f *Forward, win int) int64 {
	n, past := int64(f.N), int64(f.Past)
	e := n*past + n*(n+1)/2
	if win > 0 {
		for _, lo := range c.lo[g][:f.N] {
			e -= int64(lo)
		}
	}
	return e
}

// dropOutOfWindow evicts the entries of (layer, head g) at or before position last:
// a local layer's next query is past their window, and so is every later one.
func (c *Cache) dropOutOfWindow(layer, g, last int) {
	pos := c.heads[layer][g]
	d := 0
	for d < len(pos) && int(pos[d]) <= last {
		d++
	}
	if d == 0 {
		return
	}
	c.st.Drop(layer, g, 0, d)
	c.heads[layer][g] = pos[d:]
	if fd, ok := c.pol.(frontDropper); ok {
		fd.dropFront(layer, g, d)
	}
}

// Commit ends the forward: Pos advances by the step's tokens (patch rows excluded).
func (c *Cache) Commit() {
	real := c.step.Tokens()
	c.pos += real
	if c.obs != nil {
		var entries int64
		for l := range c.heads {
			for g := range c.heads[l] {
				entries += int64(len(c.heads[l][g]))
			}
		}
		c.obs.Step(real, c.step.Prefill, entries, c.st.Bytes(), c.peak)
	}
	c.step = model.Step{}
}
