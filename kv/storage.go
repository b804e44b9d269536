package kv

import (
	"fmt"

	"github.com/kvfoot/kvfoot/compute"
)

// Storage is the backend half of a cache: one sequence's keys and values for every
// (layer, stored head), each head with its own number of entries, and the attention
// over them. The Cache, the backend-neutral half, drives it per layer: Append, Attend,
// then Keep or Truncate per head as the policy decides; it counts entries itself, so
// the meter's numbers are the same on every backend. A policy never sees a Storage.
type Storage interface {
	// Append adds the forward's n rows of keys and values to every stored head of
	// layer: k and v are [n, KVHeads·HeadDim] of the model (an expanded cache stores
	// each KV head once per query head of its group).
	Append(layer int, k, v compute.Buf, n int)
	// Attend writes into out [n, Heads·HeadDim] the attention of q [n, Heads·HeadDim]:
	// each query of stored head g sees its Past[g] entries from before the forward
	// and the forward's rows causally (on a local layer, from entry Lo[g][i] on), its
	// scores q·k times the shape's Scale and capped by its SoftCap. For every head whose Req is not empty it writes
	// Scores[g] [Past[g]+Tokens]: the asked queries' probabilities summed, averaged
	// over the head's query heads.
	Attend(layer int, q, out compute.Buf, a *AttendArgs)
	// Keep keeps the entries idx (ascending, unique) of a head, in that order.
	Keep(layer, head int, idx []int)
	// Drop drops the entries lo..hi-1 of a head and keeps the others in order: Keep
	// with AppendKept's indices, in time of the run rather than of the head's length.
	Drop(layer, head, lo, hi int)
	// Truncate keeps the first n entries of a head.
	Truncate(layer, head, n int)
	// Bytes is the storage held now: keys, values and quantization scales.
	Bytes() int64
}

// AttendArgs are one layer's attention arguments besides its buffers.
type AttendArgs struct {
	N, Tokens int            // rows of the forward, and those that are not patch rows
	Past      []int          // per stored head: entries kept before the forward
	Req       []ScoreRequest // per stored head
	Scores    [][]float32    // per stored head: set for asked heads
	// Lo is, on a local layer (a sliding window), per stored head the first entry each
	// of the forward's N rows sees (nondecreasing); nil on a global layer, where every
	// row sees from entry 0.
	Lo [][]int
}

// lo is the first entry row i of head g sees.
func (a *AttendArgs) lo(g, i int) int {
	if a.Lo == nil {
		return 0
	}
	return a.Lo[g][i]
}

// Precision is the storage part of a spec: how a cache holds its entries.
type Precision struct {
	Name                  string // "f32", "bf16" or "quant"
	Bits, Group, Residual int    // quant's
}

// StorageMaker makes a cache's storage on a backend, for s (the stored geometry: with
// an expanding policy, KVHeads is the query heads) where each model KV head is stored
// rep times.
type StorageMaker func(s Shape, rep int, p Precision) (Storage, error)

// WithStorage puts the cache's entries on the backend whose storage mk makes (a
// GPU's); by default they are in host memory, for the CPU backend.
func WithStorage(mk StorageMaker) Option { return func(c *config) { c.storage = mk } }

// HostStorage makes the CPU backend's storage: per head, float32, bf16 or quantized
// rows in host memory, with the attention kernels of attention.go.
func HostStorage(s Shape, rep int, p Precision) (Storage, error) {
	var mk storeMaker
	switch p.Name {
	case "", "f32":
		mk = f32Maker{}
	case "bf16":
		mk = bf16Maker{}
	case "quant":
		mk = quant{bits: p.Bits, group: p.Group, residual: p.Residual}
	default:
		return nil, fmt.Errorf("kv: no host storage of precision %q", p.Name)
	}
	st := &hostStorage{shape: s, rep: rep, stores: make([][]store, s.Layers)}
	for l := range st.stores {
		st.stores[l] = make([]store, s.KVHeads)
		for g := range st.stores[l] {
			st.stores[l][g] = mk.newStore(s.HeadDim)
		}
	}
	st.kbuf, st.vbuf = make([][]float32, s.KVHeads), make([][]float32, s.KVHeads)
	st.kview, st.vview = make([][]float32, s.KVHeads), make([][]float32, s.KVHeads)
	st.rows = make([]rowStore, s.KVHeads)
	st.scr, st.acc = make([][]float32, s.Heads), make([][]float32, s.Heads)
	return st, nil
}

// hostStorage is the CPU's Storage.
type hostStorage struct {
	shape  Shape // as stored
	rep    int
	stores [][]store // [layer][stored head]
	bytes  int64

	// the layer in progress (Attend's arguments) and scratch reused across calls
	past         []int
	req          []ScoreRequest
	lo           [][]int     // AttendArgs.Lo
	kbuf, vbuf   [][]float32 // per head: dequantized views
	kview, vview [][]float32
	rows         []rowStore    // per head: set (and no views) when decode converts tiles
	scr          [][]float32   // per query head: decode scores
	acc          [][]float32   // per query head: accumulated probabilities
	ws           []attnWork    // per goroutine of the chunk kernel
	dec          decodeScratch // the decode kernel's
}

func (c *hostStorage) Bytes() int64 { return c.bytes }

func (c *hostStorage) Append(layer int, kb, vb compute.Buf, n int) {
	k, v := compute.HostOf(kb), compute.HostOf(vb)
	s := c.shape
	d, stride := s.HeadDim, s.KVHeads/c.rep*s.HeadDim // k and v hold the model's KV heads
	for g, st := range c.stores[layer] {
		b0 := st.bytes()
		src := g / c.rep
		st.appendRows(k[src*d:], v[src*d:], n, stride)
		c.bytes += st.bytes() - b0
	}
}

func (c *hostStorage) Attend(layer int, qb, ob compute.Buf, a *AttendArgs) {
	q, out := compute.HostOf(qb), compute.HostOf(ob)
	c.past, c.req, c.lo = a.Past, a.Req, a.Lo
	for g, st := range c.stores[layer] {
		c.rows[g] = nil
		if rs, ok := st.(rowStore); ok && a.N == 1 {
			c.rows[g], c.kview[g], c.vview[g] = rs, nil, nil // decode converts tiles itself
		} else {
			c.kview[g], c.vview[g] = st.view(&c.kbuf[g], &c.vbuf[g])
		}
	}
	if a.N > 1 {
		c.attendChunk(q, out, a.N)
	} else {
		c.attendDecode(q, out)
	}
	s := c.shape
	group := s.Heads / s.KVHeads
	inv := 1 / float32(group)
	for g := range c.stores[layer] {
		a.Scores[g] = a.Scores[g][:0]
		if a.Req[g].none() {
			continue
		}
		m := a.Past[g] + a.Tokens
		sc := grow(&a.Scores[g], m)
		clear(sc)
		for qh := g * group; qh < (g+1)*group; qh++ {
			for j, p := range c.acc[qh][:m] {
				sc[j] += p * inv
			}
		}
	}
}

func (c *hostStorage) Keep(layer, head int, idx []int) {
	st := c.stores[layer][head]
	b0 := st.bytes()
	st.keep(idx)
	c.bytes += st.bytes() - b0
}

func (c *hostStorage) Drop(layer, head, lo, hi int) {
	st := c.stores[layer][head]
	b0 := st.bytes()
	st.drop(lo, hi)
	c.bytes += st.bytes() - b0
}

// AppendKept appends to dst the indices of n entries but lo..hi-1: what Keep is given
// to do what Drop(lo, hi) does, for storage that has no quicker way.
func AppendKept(dst []int, n, lo, hi int) []int {
	for i := range n {
		if i < lo || i >= hi {
			dst = append(dst, i)
		}
	}
	return dst
}

func (c *hostStorage) Truncate(layer, head, n int) {
	st := c.stores[layer][head]
	b0 := st.bytes()
	st.truncate(n)
	c.bytes += st.bytes() - b0
}
