package cuda

import (
	"slices"
	"testing"
)

func TestPagedAppendTakesBlocksAsNeeded(t *testing.T) {
	c, err := NewPagedCache(4, 2)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Append(0, 65) // one full block and one entry of a second
	if err != nil {
		t.Fatal(err)
	}
	if c.HeldBlocks(0) != 2 || c.FreeBlocks() != 2 || c.Len(0) != 65 {
		t.Fatalf("held %d, free %d, len %d", c.HeldBlocks(0), c.FreeBlocks(), c.Len(0))
	}
	// Blocks come from the free stack lowest id first: block 0 then block 1.
	if s[0] != 0 || s[63] != 63 || s[64] != 64 {
		t.Fatalf("slots %d %d %d", s[0], s[63], s[64])
	}
	s2, err := c.Append(1, 3)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s2, []int32{128, 129, 130}) {
		t.Fatalf("head 1 slots %v, want block 2's first three", s2)
	}
	s3, err := c.Append(0, 63) // fills block 1 exactly: no new block
	if err != nil {
		t.Fatal(err)
	}
	if c.HeldBlocks(0) != 2 || s3[62] != 127 {
		t.Fatalf("held %d, last slot %d", c.HeldBlocks(0), s3[62])
	}
}

func TestPagedAppendOutOfBlocksChangesNothing(t *testing.T) {
	c, _ := NewPagedCache(2, 1)
	if _, err := c.Append(0, 100); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Append(0, 100); err == nil {
		t.Fatal("appended past the pool")
	}
	if c.Len(0) != 100 || c.FreeBlocks() != 0 {
		t.Fatalf("len %d, free %d after a failed append", c.Len(0), c.FreeBlocks())
	}
}

func TestPagedTruncateFreesAndReuses(t *testing.T) {
	c, _ := NewPagedCache(3, 2)
	if _, err := c.Append(0, 3*64); err != nil {
		t.Fatal(err)
	}
	if err := c.Truncate(0, 70); err != nil { // keeps blocks 0 and 1
		t.Fatal(err)
	}
	if c.HeldBlocks(0) != 2 || c.FreeBlocks() != 1 {
		t.Fatalf("held %d free %d", c.HeldBlocks(0), c.FreeBlocks())
	}
	s, err := c.Append(1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if s[0] != 2*64 {
		t.Fatalf("head 1 got slot %d, want the freed block 2's first", s[0])
	}
	if err := c.Truncate(0, 71); err == nil {
		t.Fatal("truncate past the length accepted")
	}
	if err := c.Truncate(0, 0); err != nil || c.FreeBlocks() != 2 {
		t.Fatalf("err %v, free %d", err, c.FreeBlocks())
	}
}

// Keep must compact: after its moves, applied as KVCopy does (every source read before any
// write), entry i of the head holds old entry keep[i]; the blocks past the new length are free.
func TestPagedKeepCompactsInOrderAndFreesBlocks(t *testing.T) {
	c, _ := NewPagedCache(8, 1)
	if _, err := c.Append(0, 200); err != nil {
		t.Fatal(err)
	}
	pool := map[int32]int{} // simulated pool: slot -> old entry index
	for i := 0; i < 200; i++ {
		pool[c.Slot(0, i)] = i
	}
	keep := []int{0, 1, 2, 3, 70, 130} // sink and two kept middles
	for i := 150; i < 200; i++ {
		keep = append(keep, i) // window
	}
	moves, err := c.Keep(0, keep)
	if err != nil {
		t.Fatal(err)
	}
	read := make([]int, len(moves))
	for i, m := range moves {
		read[i] = pool[m.Src]
	}
	for i, m := range moves {
		pool[m.Dst] = read[i]
	}
	if c.Len(0) != len(keep) || c.HeldBlocks(0) != 1 || c.FreeBlocks() != 7 {
		t.Fatalf("len %d held %d free %d", c.Len(0), c.HeldBlocks(0), c.FreeBlocks())
	}
	for i, k := range keep {
		if got := pool[c.Slot(0, i)]; got != k {
			t.Fatalf("entry %d holds old entry %d, want %d", i, got, k)
		}
	}
	if len(moves) != len(keep)-4 { // everything but the sink prefix moves down
		t.Fatalf("%d moves, want %d", len(moves), len(keep)-4)
	}
}

// Grow adds free blocks after the existing ones, and a head then gets them.
func TestPagedGrow(t *testing.T) {
	c, _ := NewPagedCache(1, 1)
	if _, err := c.Append(0, 65); err == nil {
		t.Fatal("a second block from a one-block pool")
	}
	if err := c.Grow(2); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Append(0, 130); err != nil {
		t.Fatal(err)
	}
	if c.Blocks() != 3 || c.FreeBlocks() != 0 || c.Slot(0, 129) >= 3*BlockEntries {
		t.Fatalf("blocks %d free %d slot %d", c.Blocks(), c.FreeBlocks(), c.Slot(0, 129))
	}
	if err := c.Grow(0); err == nil {
		t.Fatal("grow by 0 blocks accepted")
	}
}

func TestPagedKeepRejectsBadIndices(t *testing.T) {
	c, _ := NewPagedCache(2, 1)
	if _, err := c.Append(0, 10); err != nil {
		t.Fatal(err)
	}
	for _, keep := range [][]int{{3, 2}, {1, 1}, {10}, {-1}} {
		if _, err := c.Keep(0, keep); err == nil {
			t.Errorf("keep %v accepted", keep)
		}
	}
	if c.Len(0) != 10 {
		t.Fatalf("len %d after rejected keeps", c.Len(0))
	}
}

func TestPagedTablesPadToLongestHead(t *testing.T) {
	c, _ := NewPagedCache(8, 3)
	for h, n := range []int{1, 130, 0} {
		if _, err := c.Append(h, n); err != nil {
			t.Fatal(err)
		}
	}
	table, lens, maxBlocks, err := c.Tables(0, 3)
	if err != nil {
		t.Fatal(err)
	}
	if maxBlocks != 3 || !slices.Equal(lens, []int32{1, 130, 0}) {
		t.Fatalf("maxBlocks %d lens %v", maxBlocks, lens)
	}
	if table[0] != c.Slot(0, 0)/64 || table[3+2] != c.Slot(1, 129)/64 {
		t.Fatalf("table %v", table)
	}
	if _, _, _, err := c.Tables(2, 2); err == nil {
		t.Fatal("tables past the last head accepted")
	}
}

// BenchmarkStreamingKeep: the host's share of one decode step of the Llama-3.1-8B shape with a
// head mask at sparsity 0.7 (180 of its 256 KV heads streaming, sink 128, window 1024): each
// streaming head appends the step's entry and drops its window's oldest, which compacts the
// whole window. Reports the entry moves a step; ns/op is the host time building them.
func BenchmarkStreamingKeep(b *testing.B) {
	const heads, sink, window = 180, 128, 1024
	c, err := NewPagedCache(heads*((sink+window)/BlockEntries+2), heads)
	if err != nil {
		b.Fatal(err)
	}
	for h := range heads {
		if _, err := c.Append(h, sink+window); err != nil {
			b.Fatal(err)
		}
	}
	keep := make([]int, 0, sink+window)
	for i := range sink + window + 1 {
		if i != sink { // the window's oldest goes
			keep = append(keep, i)
		}
	}
	moves := 0
	for b.Loop() {
		moves = 0
		for h := range heads {
			if _, err := c.Append(h, 1); err != nil {
				b.Fatal(err)
			}
			m, err := c.Keep(h, keep)
			if err != nil {
				b.Fatal(err)
			}
			moves += len(m)
		}
	}
	b.ReportMetric(float64(moves), "moves/step")
}
