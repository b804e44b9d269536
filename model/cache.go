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

// Prefiller is optionally implemented by a Cache whose policy needs the prompt as a
// whole (post-fill eviction, SnapKV's patch, the footprint meter's prompt/response
// split). Generate calls BeginPrefill once before the first pre-fill chunk with the
// prompt length and the chunk size. If it returns patch > 0, every non-final chunk is
// fed with the prompt's last patch tokens appended (so they sit at the positions right
// after the chunk); the cache scores the chunk with them, drops them, and its Pos
// advances by the chunk alone (method-spec 4.4).
type Prefiller interface {
	BeginPrefill(promptLen, chunk int) (patch int)
}
