package cuda

import (
	"fmt"

	"github.com/kvfoot/kvfoot/internal/rows"
)

// BlockEntries is the number of KV entries per block of the paged pool (KV_BLOCK in the kernels).
const BlockEntries = 64

// PagedCache is the host-side bookkeeping of a paged KV pool: fixed-size blocks handed to heads
// (one per (layer, KV head)) as they grow and returned when they shrink, so that each head holds
// only the blocks its own number of entries needs. A head of n entries fills the places
// 0..n-1 of its blocks (place p is pool slot table[h][p/64]·64 + p%64), which the attention
// kernels read, in any order: attention does not depend on the entries' order. kvfoot's
// policies name entries by index in position order, so each head maps entry i to its place;
// Keep fills the places its dropped entries leave below the new length with the kept entries
// above it. A streaming head, which appends one entry and drops its window's oldest a step,
// then moves one entry a step (its window becomes a ring) instead of shifting the window.
type PagedCache struct {
	blocks int
	free   []int32 // free block ids, a stack: the most recently freed is reused first
	tables [][]int32
	lens   []int
	// places[h][i] is the place of head h's entry i; nil while every entry is at its own
	// index (a head that never dropped an entry from its middle, as a full head).
	places [][]int32
	taken  []bool  // Keep's scratch: the places below the new length that kept entries hold
	next   []int32 // Keep's scratch: the new places
}

// Move is one entry copied from pool slot Src to pool slot Dst.
type Move struct{ Src, Dst int32 }

// NewPagedCache manages a pool of blocks shared by heads heads, all empty.
func NewPagedCache(blocks, heads int) (*PagedCache, error) {
	if blocks <= 0 || heads <= 0 {
		return nil, fmt.Errorf("cuda: paged cache of %d blocks for %d heads: both must be positive", blocks, heads)
	}
	c := &PagedCache{blocks: blocks, tables: make([][]int32, heads), lens: make([]int, heads), places: make([][]int32, heads)}
	for b := blocks - 1; b >= 0; b-- {
		c.free = append(c.free, int32(b))
	}
	return c, nil
}

// Heads is the number of heads.
func (c *PagedCache) Heads() int { return len(c.lens) }

// Len is the number of entries head h holds.
func (c *PagedCache) Len(h int) int { return c.lens[h] }

// FreeBlocks is the number of blocks no head holds.
func (c *PagedCache) FreeBlocks() int { return len(c.free) }

// HeldBlocks is the number of blocks head h holds.
func (c *PagedCache) HeldBlocks(h int) int { return len(c.tables[h]) }

func (c *PagedCache) checkHead(op string, h int) error {
	if h < 0 || h >= len(c.lens) {
		return fmt.Errorf("cuda: paged cache %s: head %d of %d", op, h, len(c.lens))
	}
	return nil
}

// Slot is the pool slot of entry i of head h.
func (c *PagedCache) Slot(h, i int) int32 { return c.slot(h, c.place(h, i)) }

// Place is where entry i of head h is among the places 0..Len(h)-1 the kernels read.
func (c *PagedCache) place(h, i int) int {
	if p := c.places[h]; p != nil {
		return int(p[i])
	}
	return i
}

// Places returns head h's places (entry i is at place p[i]), nil when every entry is at its
// own index: the attention scores, which the kernels compute by place, are handed out by entry.
func (c *PagedCache) Places(h int) []int32 { return c.places[h] }

func (c *PagedCache) slot(h, place int) int32 {
	return c.tables[h][place/BlockEntries]*BlockEntries + int32(place%BlockEntries)
}

// Append makes room for n more entries on head h and returns their pool slots, in order.
// With too few free blocks it changes nothing and says how many were needed.
func (c *PagedCache) Append(h, n int) ([]int32, error) {
	if err := c.checkHead("append", h); err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, fmt.Errorf("cuda: paged cache append: %d entries", n)
	}
	newLen := c.lens[h] + n
	want := (newLen+BlockEntries-1)/BlockEntries - len(c.tables[h])
	if want > len(c.free) {
		return nil, fmt.Errorf("cuda: paged cache: head %d needs %d more blocks of %d entries, %d of %d are free", h, want, BlockEntries, len(c.free), c.blocks)
	}
	for ; want > 0; want-- {
		c.tables[h] = append(c.tables[h], c.free[len(c.free)-1])
		c.free = c.free[:len(c.free)-1]
	}
	slots := make([]int32, n)
	for i := range slots {
		p := c.lens[h] + i // appended entries take the places after the others
		slots[i] = c.slot(h, p)
		if c.places[h] != nil {
			c.places[h] = append(c.places[h], int32(p))
		}
	}
	c.lens[h] = newLen
	return slots, nil
}

// Keep keeps the entries keep (increasing indices into head h) and drops the rest: kept entry
// keep[i] becomes entry i. moves lists the copies for KVCopy: each kept entry at a place past
// the new length moves into a place below it that a dropped entry left, so there are as many
// moves as dropped entries below the new length, and no move's source is another's
// destination. Blocks past the new length return to the pool.
func (c *PagedCache) Keep(h int, keep []int) (moves []Move, err error) {
	if err := c.checkHead("keep", h); err != nil {
		return nil, err
	}
	for i, k := range keep {
		if k < 0 || k >= c.lens[h] || (i > 0 && k <= keep[i-1]) {
			return nil, fmt.Errorf("cuda: paged cache keep: index %d (%d) is not increasing within the head's %d entries", i, k, c.lens[h])
		}
	}
	m := len(keep)
	if cap(c.taken) < m {
		c.taken = make([]bool, m)
	}
	c.taken = c.taken[:m]
	clear(c.taken)
	c.next = c.next[:0]
	for _, k := range keep { // each kept entry's place, looked up once
		p := c.place(h, k)
		if p < m {
			c.taken[p] = true
		}
		c.next = append(c.next, int32(p))
	}
	ordered, hole := true, 0
	for i, p := range c.next {
		if int(p) >= m {
			for c.taken[hole] {
				hole++
			}
			c.taken[hole] = true
			moves = append(moves, Move{Src: c.slot(h, int(p)), Dst: c.slot(h, hole)})
			p = int32(hole)
			c.next[i] = p
		}
		ordered = ordered && int(p) == i
	}
	if ordered {
		c.places[h] = nil
	} else {
		c.places[h] = append(c.places[h][:0], c.next...)
	}
	c.truncate(h, m)
	return moves, nil
}

// Drop drops head h's entries lo..hi-1 and keeps the others in order: Keep with every other
// index, in time of the dropped run and the moves rather than of the head's length, so that a
// streaming head's window (a sink, then the most recent entries) costs O(1) host work a step.
func (c *PagedCache) Drop(h, lo, hi int) (moves []Move, err error) {
	if err := c.checkHead("drop", h); err != nil {
		return nil, err
	}
	n := c.lens[h]
	if lo < 0 || lo > hi || hi > n {
		return nil, fmt.Errorf("cuda: paged cache drop: entries %d..%d of head %d, which holds %d", lo, hi-1, h, n)
	}
	if lo == hi {
		return nil, nil
	}
	if hi == n {
		return c.Truncate(h, lo)
	}
	p := c.places[h]
	if p == nil { // entries at their own index: name the places from now on
		p = make([]int32, n, n+BlockEntries)
		for i := range p {
			p[i] = int32(i)
		}
	}
	m := n - (hi - lo)
	holes := c.next[:0]
	for _, q := range p[lo:hi] {
		if int(q) < m {
			holes = append(holes, q)
		}
	}
	// As many kept entries sit at places m and past as there are holes; the newest entries
	// hold the highest places in a ring, so look from the end.
	for i := n - 1; len(holes) > 0; i-- {
		if i == hi-1 {
			i = lo - 1
		}
		if int(p[i]) >= m {
			dst := holes[len(holes)-1]
			holes = holes[:len(holes)-1]
			moves = append(moves, Move{Src: c.slot(h, int(p[i])), Dst: c.slot(h, int(dst))})
			p[i] = dst
		}
	}
	c.next = holes
	c.places[h] = rows.Drop(p, lo, hi, 1)
	c.truncate(h, m)
	return moves, nil
}

// Grow adds blocks free blocks to the pool's bookkeeping (after the pool itself has grown:
// GrowKVPool); their ids follow the existing ones.
func (c *PagedCache) Grow(blocks int) error {
	if blocks <= 0 {
		return fmt.Errorf("cuda: paged cache grow: %d blocks", blocks)
	}
	for b := c.blocks + blocks - 1; b >= c.blocks; b-- {
		c.free = append(c.free, int32(b))
	}
	c.blocks += blocks
	return nil
}

// Blocks is the number of blocks the pool has.
func (c *PagedCache) Blocks() int { return c.blocks }

// Truncate drops head h's entries from n on and returns the blocks past them to the pool;
// moves are the copies that bring kept entries at places past n below it (as Keep's).
func (c *PagedCache) Truncate(h, n int) (moves []Move, err error) {
	if err := c.checkHead("truncate", h); err != nil {
		return nil, err
	}
	if n < 0 || n > c.lens[h] {
		return nil, fmt.Errorf("cuda: paged cache truncate: head %d to %d entries, it holds %d", h, n, c.lens[h])
	}
	if c.places[h] == nil {
		c.truncate(h, n)
		return nil, nil
	}
	keep := make([]int, n)
	for i := range keep {
		keep[i] = i
	}
	return c.Keep(h, keep)
}

func (c *PagedCache) truncate(h, n int) {
	keepBlocks := (n + BlockEntries - 1) / BlockEntries
	for i := len(c.tables[h]) - 1; i >= keepBlocks; i-- {
		c.free = append(c.free, c.tables[h][i])
	}
	c.tables[h] = c.tables[h][:keepBlocks]
	c.lens[h] = n
	if c.places[h] != nil {
		c.places[h] = c.places[h][:n]
	}
}

// Tables flattens the block tables and lengths of heads first..first+count-1 (one layer's KV
// heads) for the attention kernels: table[i·maxBlocks + b] is block b of head first+i (the
// table's unused cells are 0), lens[i] its length. maxBlocks is at least 1.
func (c *PagedCache) Tables(first, count int) (table []int32, lens []int32, maxBlocks int, err error) {
	if first < 0 || count <= 0 || first+count > len(c.lens) {
		return nil, nil, 0, fmt.Errorf("cuda: paged cache tables: heads %d..%d of %d", first, first+count-1, len(c.lens))
	}
	maxBlocks = 1
	for h := first; h < first+count; h++ {
		maxBlocks = max(maxBlocks, len(c.tables[h]))
	}
	table = make([]int32, count*maxBlocks)
	lens = make([]int32, count)
	for i := 0; i < count; i++ {
		copy(table[i*maxBlocks:], c.tables[first+i])
		lens[i] = int32(c.lens[first+i])
	}
	return table, lens, maxBlocks, nil
}

// MoveQueue gathers the moves of successive Keeps and Truncates until they run as one KVCopy
// (or KIVICopy), which reads every source before it writes any destination. Run that way, a
// move of a later list whose source an earlier list wrote would read the entry the earlier move
// replaced, so Add reads such a source where the earlier move did, and drops an earlier move
// whose destination a later one writes: the one copy leaves what the lists, run one after the
// other, would. Only lists of one head can meet (a head's moves stay in its own blocks, and no
// block changes hands before the queue runs), so a head's first list is queued as it is and
// only a later one of the same head is composed: SnapKV's post-fill eviction at 32K queues 8K
// moves in each of 1024 heads (BenchmarkEvictKeep).
type MoveQueue struct {
	moves []Move
	lists []moveList       // each Add's moves, in order
	heads map[int]struct{} // heads with a list in the queue
	at    map[int32]int    // while composing: destination slot → its move's index in moves
	srcs  []int32
}

// moveList is the moves [lo, hi) of one Add of head.
type moveList struct{ head, lo, hi int }

// Add queues next, a list of moves of head h whose sources and destinations are disjoint (one
// Keep's).
func (q *MoveQueue) Add(h int, next []Move) {
	if len(next) == 0 {
		return
	}
	if q.heads == nil {
		q.heads, q.at = map[int]struct{}{}, map[int32]int{}
	}
	lo := len(q.moves)
	if _, seen := q.heads[h]; !seen {
		q.heads[h] = struct{}{}
		q.moves = append(q.moves, next...)
		q.lists = append(q.lists, moveList{h, lo, len(q.moves)})
		return
	}
	clear(q.at)
	for _, l := range q.lists {
		if l.head == h {
			for i := l.lo; i < l.hi; i++ {
				q.at[q.moves[i].Dst] = i
			}
		}
	}
	q.srcs = q.srcs[:0]
	for _, m := range next { // every source as the queue leaves it, before next writes
		src := m.Src
		if i, ok := q.at[src]; ok {
			src = q.moves[i].Src
		}
		q.srcs = append(q.srcs, src)
	}
	for j, m := range next {
		if i, ok := q.at[m.Dst]; ok {
			q.moves[i].Src = q.srcs[j]
			continue
		}
		q.moves = append(q.moves, Move{Src: q.srcs[j], Dst: m.Dst})
	}
	if len(q.moves) > lo {
		q.lists = append(q.lists, moveList{h, lo, len(q.moves)})
	}
}

// Moves are the queued moves, to run at once.
func (q *MoveQueue) Moves() []Move { return q.moves }

// Reset empties the queue (after its moves ran).
func (q *MoveQueue) Reset() {
	q.moves, q.lists = q.moves[:0], q.lists[:0]
	clear(q.heads)
}
