package kv

import "github.com/kvfoot/kvfoot/compute"

// Test access to a host cache's stores, below the Storage seam.

func (c *Cache) store(l, g int) store { return c.st.(*hostStorage).stores[l][g] }

// seed appends n rows to stored head (l, g) at positions 0…n−1, as if pre-filled.
func (c *Cache) seed(l, g int, k, v []float32, n, stride int) {
	c.store(l, g).appendRows(k, v, n, stride)
	for i := 0; i < n; i++ {
		c.heads[l][g] = append(c.heads[l][g], int32(i))
	}
	c.recount()
}

// keepSeeded keeps entries idx of a seeded head.
func (c *Cache) keepSeeded(l, g int, idx []int) {
	c.store(l, g).keep(idx)
	pos := c.heads[l][g]
	for i, j := range idx {
		pos[i] = pos[j]
	}
	c.heads[l][g] = pos[:len(idx)]
	c.recount()
}

// empty drops every entry, keeping the capacity.
func (c *Cache) empty() {
	for l := range c.heads {
		for g := range c.heads[l] {
			c.store(l, g).truncate(0)
			c.heads[l][g] = c.heads[l][g][:0]
		}
	}
	c.recount()
}

func (c *Cache) recount() {
	h := c.st.(*hostStorage)
	h.bytes = 0
	for l := range h.stores {
		for _, st := range h.stores[l] {
			h.bytes += st.bytes()
		}
	}
}

// attendHost is Attend on host slices.
func (c *Cache) attendHost(layer int, q, k, v, out []float32) {
	c.Attend(layer, compute.Host(q), compute.Host(k), compute.Host(v), compute.Host(out))
}
