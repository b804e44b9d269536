package cuda

import (
	"fmt"
	"math/rand/v2"
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
	if _, err := c.Truncate(0, 70); err != nil { // keeps blocks 0 and 1
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
	if _, err := c.Truncate(0, 71); err == nil {
		t.Fatal("truncate past the length accepted")
	}
	if _, err := c.Truncate(0, 0); err != nil || c.FreeBlocks() != 2 {
		t.Fatalf("err %v, free %d", err, c.FreeBlocks())
	}
}

// simPool is a pool of entries by slot (the index of the entry each slot holds), to which
// moves are applied as KVCopy does: every source read before any write.
type simPool map[int32]int

func (p simPool) apply(moves []Move) {
	read := make([]int, len(moves))
	for i, m := range moves {
		read[i] = p[m.Src]
	}
	for i, m := range moves {
		p[m.Dst] = read[i]
	}
}

// check fails unless head h's entry i is at a slot holding want[i] and its entries fill the
// places 0..len-1 of its blocks (the slots the kernels read), each once.
func (p simPool) check(t *testing.T, c *PagedCache, h int, want []int) {
	t.Helper()
	if c.Len(h) != len(want) {
		t.Fatalf("head %d holds %d entries, want %d", h, c.Len(h), len(want))
	}
	read := map[int32]bool{}
	table, _, maxBlocks, _ := c.Tables(h, 1)
	for i := range len(want) {
		read[table[i/BlockEntries]*BlockEntries+int32(i%BlockEntries)] = true
	}
	if maxBlocks != (len(want)+BlockEntries-1)/BlockEntries && len(want) > 0 {
		t.Fatalf("head %d holds %d blocks for %d entries", h, maxBlocks, len(want))
	}
	for i, w := range want {
		s := c.Slot(h, i)
		if p[s] != w {
			t.Fatalf("entry %d of head %d: slot %d holds old entry %d, want %d", i, h, s, p[s], w)
		}
		if !read[s] {
			t.Fatalf("entry %d of head %d is at slot %d, outside the places the kernels read", i, h, s)
		}
		delete(read, s)
	}
}

// Keep moves only the kept entries past the new length, into the places dropped entries left
// below it: entry i then holds old entry keep[i], every kept entry is among the places the
// kernels read, and the blocks past the new length are free.
func TestPagedKeepFillsHolesAndFreesBlocks(t *testing.T) {
	c, _ := NewPagedCache(8, 1)
	slots, err := c.Append(0, 200)
	if err != nil {
		t.Fatal(err)
	}
	pool := simPool{}
	for i, s := range slots {
		pool[s] = i
	}
	keep := []int{0, 1, 2, 3, 70, 130} // sink and two kept middles
	for i := 160; i < 200; i++ {
		keep = append(keep, i) // window
	}
	moves, err := c.Keep(0, keep)
	if err != nil {
		t.Fatal(err)
	}
	pool.apply(moves)
	pool.check(t, c, 0, keep)
	if c.HeldBlocks(0) != 1 || c.FreeBlocks() != 7 {
		t.Fatalf("held %d free %d", c.HeldBlocks(0), c.FreeBlocks())
	}
	// 46 kept: the sink stays, and the 42 kept past place 46 fill places 4..45.
	if len(moves) != 42 {
		t.Fatalf("%d moves, want 42", len(moves))
	}
}

// A streaming head (sink 4, window 70) appends one entry a step and drops its window's oldest:
// one move a step, whatever the window, and the head always holds the sink and the last 70.
// A streaming head (sink 4, window 70) drops its window's oldest entry a step, by Keep or by
// Drop: one move a step, within the blocks sink+window needs.
func TestPagedStreamingHeadIsARing(t *testing.T) {
	for _, drop := range []bool{false, true} {
		t.Run(map[bool]string{false: "Keep", true: "Drop"}[drop], func(t *testing.T) { streamingRing(t, drop) })
	}
}

func streamingRing(t *testing.T, drop bool) {
	const sink, window = 4, 70
	c, _ := NewPagedCache(4, 1)
	pool := simPool{}
	held := []int{}
	for step := range 300 {
		slots, err := c.Append(0, 1)
		if err != nil {
			t.Fatal(err)
		}
		pool[slots[0]] = step
		held = append(held, step)
		if len(held) <= sink+window {
			continue
		}
		keep := make([]int, 0, sink+window)
		for i := range len(held) {
			if i != sink {
				keep = append(keep, i)
			}
		}
		var moves []Move
		if drop {
			moves, err = c.Drop(0, sink, sink+1)
		} else {
			moves, err = c.Keep(0, keep)
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(moves) != 1 {
			t.Fatalf("step %d: %d moves, want 1", step, len(moves))
		}
		pool.apply(moves)
		held = append(held[:sink], held[sink+1:]...)
		pool.check(t, c, 0, held)
	}
	if c.HeldBlocks(0) != 2 {
		t.Fatalf("a head of %d entries holds %d blocks", sink+window, c.HeldBlocks(0))
	}
}

// Random appends, keeps and truncates on three heads sharing a pool: after every operation each
// head's entries are where the bookkeeping says, within the places the kernels read.
// Random appends, keeps and truncates over three heads: every kept entry stays where the
// tables say, whether each op's moves run at once or, as the GPU storage runs them, queued
// (MoveQueue) until the next append or a random point, all in one gather-then-scatter copy.
func TestPagedRandomKeepsAndTruncates(t *testing.T) {
	for _, queued := range []bool{false, true} {
		t.Run(map[bool]string{false: "each op's moves at once", true: "queued moves in one copy"}[queued], func(t *testing.T) {
			randomKeepsAndTruncates(t, queued)
		})
	}
}

func randomKeepsAndTruncates(t *testing.T, queued bool) {
	r := rand.New(rand.NewPCG(7, 8))
	const heads = 3
	c, _ := NewPagedCache(40, heads)
	pool := simPool{}
	held := make([][]int, heads)
	next := 0
	var q MoveQueue
	run := func(h int, moves []Move) {
		if queued {
			q.Add(h, moves)
		} else {
			pool.apply(moves)
		}
	}
	flush := func() {
		pool.apply(q.Moves())
		q.Reset()
	}
	for op := range 2000 {
		h := r.IntN(heads)
		switch r.IntN(4) {
		case 0:
			flush() // the storage runs its queued copies before it appends
			n := r.IntN(70)
			if (c.Len(h)+n+BlockEntries-1)/BlockEntries-c.HeldBlocks(h) > c.FreeBlocks() {
				continue
			}
			slots, err := c.Append(h, n)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range slots {
				pool[s] = next
				held[h] = append(held[h], next)
				next++
			}
		case 1:
			var keep, kept []int
			for i, e := range held[h] {
				if r.IntN(4) != 0 {
					keep, kept = append(keep, i), append(kept, e)
				}
			}
			moves, err := c.Keep(h, keep)
			if err != nil {
				t.Fatal(err)
			}
			run(h, moves)
			held[h] = kept
		case 3:
			lo := r.IntN(len(held[h]) + 1)
			hi := lo + r.IntN(len(held[h])-lo+1)
			moves, err := c.Drop(h, lo, hi)
			if err != nil {
				t.Fatal(err)
			}
			run(h, moves)
			held[h] = append(held[h][:lo], held[h][hi:]...)
		case 2:
			n := r.IntN(len(held[h]) + 1)
			moves, err := c.Truncate(h, n)
			if err != nil {
				t.Fatal(err)
			}
			run(h, moves)
			held[h] = held[h][:n]
		}
		if queued && r.IntN(3) != 0 {
			continue // the pool is checked only where its copies ran
		}
		flush()
		for g := range heads {
			pool.check(t, c, g, held[g])
		}
		counted, ids := c.FreeBlocks(), map[int32]bool{} // no block held twice, none lost
		for g := range heads {
			table, _, _, _ := c.Tables(g, 1)
			for _, id := range table[:c.HeldBlocks(g)] {
				if ids[id] {
					t.Fatalf("op %d: block %d held twice", op, id)
				}
				ids[id] = true
			}
			counted += c.HeldBlocks(g)
		}
		if counted != c.Blocks() {
			t.Fatalf("op %d: %d blocks held or free of %d", op, counted, c.Blocks())
		}
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
	for _, r := range [][2]int{{-1, 2}, {3, 2}, {5, 11}} {
		if _, err := c.Drop(0, r[0], r[1]); err == nil {
			t.Errorf("drop %d..%d of 10 accepted", r[0], r[1]-1)
		}
	}
	if c.Len(0) != 10 {
		t.Fatalf("len %d after rejected drops", c.Len(0))
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
// streaming head appends the step's entry and drops its window's oldest, one move a head (the
// window is a ring; it was the whole window, 184,320 moves a step, when Keep compacted in
// order). Reports the entry moves a step; ns/op is the host time building them.
// BenchmarkStreamingKeep is a decode step's bookkeeping of streaming heads: each appends an
// entry and drops its window's oldest, by Keep (every kept index listed) or Drop (the run).
// 180 heads of window 1024 are the 8B shape's at head sparsity 0.7; 256 of 16384, streaming
// over all its heads at a 32K context.
func BenchmarkStreamingKeep(b *testing.B) {
	for _, c := range []struct{ heads, window int }{{180, 1024}, {256, 16384}} {
		for _, drop := range []bool{false, true} {
			name := fmt.Sprintf("heads=%d/window=%d/%s", c.heads, c.window, map[bool]string{false: "keep", true: "drop"}[drop])
			b.Run(name, func(b *testing.B) { streamingKeep(b, c.heads, c.window, drop) })
		}
	}
}

func streamingKeep(b *testing.B, heads, window int, drop bool) {
	const sink = 128
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
			var m []Move
			if drop {
				m, err = c.Drop(h, sink, sink+1)
			} else {
				m, err = c.Keep(h, keep)
			}
			if err != nil {
				b.Fatal(err)
			}
			moves += len(m)
		}
	}
	b.ReportMetric(float64(moves), "moves/step")
}

// BenchmarkEvictKeep is SnapKV's post-fill eviction of the Llama-3.1-8B shape at 32K with
// gqa=expand, as the pool's bookkeeping sees it: 1024 heads of 32K entries each keep a random
// half, and their moves are queued for one copy. ns/op is one layer's 32 heads.
func BenchmarkEvictKeep(b *testing.B) {
	const heads, n = 32, 32768
	r := rand.New(rand.NewPCG(7, 8))
	keeps := make([][]int, heads)
	for h := range keeps {
		for i := range n {
			if r.IntN(2) == 0 || i >= n-64 {
				keeps[h] = append(keeps[h], i)
			}
		}
	}
	var q MoveQueue
	for b.Loop() {
		b.StopTimer()
		c, err := NewPagedCache(heads*n/BlockEntries, heads)
		if err != nil {
			b.Fatal(err)
		}
		for h := range heads {
			if _, err := c.Append(h, n); err != nil {
				b.Fatal(err)
			}
		}
		q.Reset()
		b.StartTimer()
		for h := range heads {
			m, err := c.Keep(h, keeps[h])
			if err != nil {
				b.Fatal(err)
			}
			q.Add(h, m)
		}
	}
	b.ReportMetric(float64(len(q.Moves())), "moves/op")
}
