package gpu

import (
	"sort"

	"github.com/kvfoot/kvfoot/cuda"
	"github.com/kvfoot/kvfoot/kv"
)

// LongestContextFor is the longest prompt a cache of policy f, its entries held as the GPU
// holds them (StoredPrecision), pre-fills in chunks of chunk tokens within free bytes of device memory, at most
// limit: the policy's peak bytes plus every stored head's partly filled last block, twice over
// when the pool grows by copying (inPlace false: its last growth holds the old and the new pool
// at once), else once and growthSlack. 0 when not even one token fits.
func LongestContextFor(s kv.Shape, f *kv.Facts, free int64, chunk, limit int, inPlace bool) (int, error) {
	g := *f
	g.Precision = StoredPrecision(f.Precision)
	f = &g
	heads := int64(s.Layers * f.StoredHeads)
	slack := heads * cuda.BlockEntries * int64(s.HeadDim) * 2 * 2
	var err error
	fits := func(n int) bool {
		if err != nil {
			return false
		}
		b, e := f.PeakBytes(kv.Workload{Prompt: n, MaxTokens: 1, Chunk: chunk})
		if e != nil {
			err = e
			return false
		}
		if inPlace {
			return b+slack+growthSlack <= free
		}
		return 2*(b+slack) <= free
	}
	// PeakBytes grows with the prompt: the first length that does not fit, less one
	n := sort.Search(limit, func(i int) bool { return !fits(i + 1) })
	return n, err
}
