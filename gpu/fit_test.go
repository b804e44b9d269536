package gpu

import (
	"testing"
	"testing/fstest"

	"github.com/kvfoot/kvfoot/cuda"
	"github.com/kvfoot/kvfoot/kv"
)

// Full attention's longest context agrees with LongestContext's closed form (every head holds
// every token in whole blocks, twice over when the pool grows by copying, once and two granules
// when it grows in place); a head mask at sparsity 0.75 whose streaming heads
// hold sink+window fits about four times as long; the limit caps it.
func TestLongestContextFor(t *testing.T) {
	s := kv.Shape{Layers: 4, Heads: 8, KVHeads: 4, HeadDim: 64}
	perToken := int64(s.Layers*s.KVHeads) * 64 * 2 * 2
	free := perToken * 10000
	full, err := kv.Describe(s, "full") // float32 on the CPU, bf16 on the GPU
	if err != nil {
		t.Fatal(err)
	}
	// by copying: 2·(n·perToken + 16 heads' slack of one block) ≤ free: n = 5000 − 64; in
	// place: n·perToken + the slack + 4 MiB (1024 tokens' perToken) ≤ free: n = 10000 − 64 − 1024
	for _, c := range []struct {
		inPlace bool
		want    int
	}{{false, 5000 - cuda.BlockEntries}, {true, 10000 - cuda.BlockEntries - 1024}} {
		n, err := LongestContextFor(s, full, free, 512, 1<<20, c.inPlace)
		if err != nil {
			t.Fatal(err)
		}
		if n != c.want {
			t.Errorf("full attention, growing in place %v: %d tokens, want %d", c.inPlace, n, c.want)
		}
		if closed := LongestContext(s, free, c.inPlace); closed > n || closed < n-cuda.BlockEntries {
			t.Errorf("growing in place %v: LongestContext %d and LongestContextFor %d disagree by more than a block", c.inPlace, closed, n)
		}
	}
	n, err := LongestContextFor(s, full, free, 512, 1<<20, false)
	if err != nil {
		t.Fatal(err)
	}
	masks := "1\t0\t0\t0\n0\t1\t0\t0\n0\t0\t1\t0\n0\t0\t0\t1\n"
	fsys := fstest.MapFS{"m.tsv": {Data: []byte(masks)}}
	hm, err := kv.Describe(s, "headmask:masks=m.tsv,sparsity=0.75,sink=4,window=60", kv.WithFS(fsys))
	if err != nil {
		t.Fatal(err)
	}
	m, err := LongestContextFor(s, hm, free, 512, 1<<20, false)
	if err != nil {
		t.Fatal(err)
	}
	if m < 3*n || m > 4*n+1000 {
		t.Errorf("head mask at 0.75: %d tokens beside full attention's %d; want about four times", m, n)
	}
	if c, _ := LongestContextFor(s, hm, free, 512, 777, false); c != 777 {
		t.Errorf("with a limit of 777: %d", c)
	}
	if c, _ := LongestContextFor(s, full, perToken, 512, 1000, true); c != 0 {
		t.Errorf("a free memory below one block a head: %d tokens", c)
	}
}
