// Package kv is the KV cache: per layer and per KV head, variable length, with the
// policies that decide what each KV head keeps.
package kv

import (
	"fmt"
	"math"

	"github.com/kvfoot/kvfoot/tensor"
)

// Shape is the attention geometry of a model.
type Shape struct {
	Layers, Heads, KVHeads, HeadDim int
}

// head is the storage of one KV head of one layer: keys and values of the entries it
// keeps, row by row, and the absolute position of each entry.
type head struct {
	k, v []float32
	pos  []int32
}

func (h *head) len() int { return len(h.pos) }

// Cache is a full (never evicting) KV cache with exact causal attention.
type Cache struct {
	shape  Shape
	pos    int
	heads  [][]head // [layer][kv head]
	scores []float32
}

// NewFull returns an empty cache that keeps every entry.
func NewFull(s Shape) *Cache {
	c := &Cache{shape: s, heads: make([][]head, s.Layers)}
	for l := range c.heads {
		c.heads[l] = make([]head, s.KVHeads)
	}
	return c
}

// Pos is the number of tokens fed so far.
func (c *Cache) Pos() int { return c.pos }

// Commit ends a chunk of n tokens.
func (c *Cache) Commit(n int) { c.pos += n }

// Attend appends the chunk's keys and values of layer and writes the attention of q
// into out; query i of the chunk sees every kept entry before the chunk and chunk
// tokens 0…i.
func (c *Cache) Attend(layer int, q, k, v, out []float32, n int) {
	s := c.shape
	d := s.HeadDim
	group := s.Heads / s.KVHeads
	scale := float32(1 / math.Sqrt(float64(d)))
	for g := range c.heads[layer] {
		h := &c.heads[layer][g]
		past := h.len()
		for i := 0; i < n; i++ {
			off := (i*s.KVHeads + g) * d
			h.k = append(h.k, k[off:off+d]...)
			h.v = append(h.v, v[off:off+d]...)
			h.pos = append(h.pos, int32(c.pos+i))
		}
		for qh := g * group; qh < (g+1)*group; qh++ {
			for i := 0; i < n; i++ {
				visible := past + i + 1
				if cap(c.scores) < visible {
					c.scores = make([]float32, visible)
				}
				sc := c.scores[:visible]
				qi := q[(i*s.Heads+qh)*d : (i*s.Heads+qh+1)*d]
				for j := range sc {
					sc[j] = tensor.Dot(qi, h.k[j*d:(j+1)*d]) * scale
				}
				tensor.Softmax(sc)
				o := out[(i*s.Heads+qh)*d : (i*s.Heads+qh+1)*d]
				clear(o)
				for j, p := range sc {
					tensor.Axpy(p, h.v[j*d:(j+1)*d], o)
				}
			}
		}
	}
}

// New returns a cache for the policy named by spec. Only "full" exists so far; the
// policies of the KV issue register here.
func New(s Shape, spec string) (*Cache, error) {
	if spec != "" && spec != "full" {
		return nil, fmt.Errorf("kv: unknown policy %q (known: full)", spec)
	}
	return NewFull(s), nil
}
