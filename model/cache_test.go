package model_test

import (
	"math"

	"github.com/kvfoot/kvfoot/compute"
	"github.com/kvfoot/kvfoot/model"
)

// fullCache is the plainest correct model.Cache: it keeps every key and value and
// computes causal softmax attention in float64, one query head at a time (with the
// shape's scale, soft cap and each layer's sliding window: a query at position i sees
// keys j with i − j < window). The
// model's tests use it so that they check the forward pass alone (the kv package
// has its own tests against the model).
type fullCache struct {
	s    model.Shape
	pos  int
	step model.Step
	k, v [][]float32 // per layer: [pos, kv_heads·head_dim]
}

func newFullCache(s model.Shape) *fullCache {
	return &fullCache{s: s, k: make([][]float32, s.Layers), v: make([][]float32, s.Layers)}
}

func (c *fullCache) Pos() int        { return c.pos }
func (c *fullCache) PatchLen() int   { return 0 }
func (c *fullCache) LocalChunk() int { return 0 }
func (c *fullCache) Commit()         { c.pos += c.step.Tokens() }

func (c *fullCache) Begin(s model.Step) error {
	c.step = s
	return s.Check()
}

func (c *fullCache) Attend(layer int, qb, kb, vb, ob compute.Buf) {
	q, k, v, out := compute.HostOf(qb), compute.HostOf(kb), compute.HostOf(vb), compute.HostOf(ob)
	n := c.step.Rows
	d, kvd := c.s.HeadDim, c.s.KVHeads*c.s.HeadDim
	group := c.s.Heads / c.s.KVHeads
	c.k[layer] = append(c.k[layer], k[:n*kvd]...)
	c.v[layer] = append(c.v[layer], v[:n*kvd]...)
	K, V := c.k[layer], c.v[layer]
	scale := 1 / math.Sqrt(float64(d))
	if c.s.Scale != 0 {
		scale = float64(c.s.Scale)
	}
	for i := 0; i < n; i++ {
		visible := c.pos + i + 1
		from := 0
		if c.s.Window != nil && c.s.Window[layer] > 0 {
			from = max(0, visible-c.s.Window[layer])
		}
		for h := 0; h < c.s.Heads; h++ {
			g := h / group
			qi := q[(i*c.s.Heads+h)*d : (i*c.s.Heads+h+1)*d]
			sc := make([]float64, visible)
			mx := math.Inf(-1)
			for j := range sc {
				if j < from {
					sc[j] = math.Inf(-1)
					continue
				}
				kj := K[j*kvd+g*d : j*kvd+(g+1)*d]
				var s float64
				for x := range qi {
					s += float64(qi[x]) * float64(kj[x])
				}
				sc[j] = s * scale
				if cp := float64(c.s.SoftCap); cp != 0 {
					sc[j] = cp * math.Tanh(sc[j]/cp)
				}
				mx = math.Max(mx, sc[j])
			}
			var sum float64
			for j := range sc {
				sc[j] = math.Exp(sc[j] - mx)
				sum += sc[j]
			}
			o := out[(i*c.s.Heads+h)*d : (i*c.s.Heads+h+1)*d]
			for x := range o {
				var acc float64
				for j := range sc {
					acc += sc[j] * float64(V[j*kvd+g*d+x])
				}
				o[x] = float32(acc / sum)
			}
		}
	}
}
