package model

// Cache is the model's view of the KV cache. For every chunk of n tokens the model
// calls Attend once per layer, in layer order, then Commit once. The cache stores the
// chunk's keys and values, computes the chunk's attention over what it holds (each
// query sees what the cache kept from earlier chunks plus the chunk itself causally),
// and may evict only after the chunk has been attended to. Decoding is a chunk of one.
//
// q and out are [n, Heads·HeadDim]; k and v are [n, KVHeads·HeadDim]; keys arrive
// after RoPE, at their absolute positions Pos() … Pos()+n−1.
type Cache interface {
	Attend(layer int, q, k, v, out []float32, n int)
	// Commit ends a chunk of n tokens: Pos advances by n.
	Commit(n int)
	// Pos is the number of tokens fed so far: the position of the next token. It is
	// independent of how many entries eviction has left in the cache.
	Pos() int
}
