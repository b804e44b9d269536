package tokenizer

import (
	"container/heap"
	"unicode/utf8"
)

// symbol is one piece of a word during merging, linked to its neighbours.
type symbol struct {
	id         int32
	prev, next int32
	size       int32 // bytes covered; 0 once merged into its left neighbour
}

// bpe appends the BPE encoding of the word w.
func (t *Tokenizer) bpe(dst []int, w string) []int {
	var buf [32]symbol
	syms := t.initialSymbols(buf[:0], w)
	if len(syms) <= 48 {
		syms = t.mergeScan(syms)
	} else {
		syms = t.mergeHeap(syms)
	}
	for _, s := range syms {
		if s.size > 0 {
			dst = append(dst, int(s.id))
		}
	}
	return dst
}

// initialSymbols splits w into its starting symbols: bytes for a byte-level
// model; characters, else their <0xNN> bytes, else unk, for the others.
func (t *Tokenizer) initialSymbols(syms []symbol, w string) []symbol {
	push := func(id int32, size int) {
		n := int32(len(syms))
		syms = append(syms, symbol{id: id, prev: n - 1, next: n + 1, size: int32(size)})
	}
	if t.byteLevel {
		for i := 0; i < len(w); i++ {
			push(t.byteTokens[w[i]], 1)
		}
	} else {
		unkOpen := false
		for i := 0; i < len(w); {
			_, n := utf8.DecodeRuneInString(w[i:])
			if id, ok := t.vocab[w[i:i+n]]; ok {
				push(int32(id), n)
				unkOpen = false
			} else if t.byteFallback {
				for k := i; k < i+n; k++ {
					push(t.byteTokens[w[k]], 1)
				}
				unkOpen = false
			} else if t.unk >= 0 {
				if t.fuseUnk && unkOpen {
					syms[len(syms)-1].size += int32(n)
				} else {
					push(int32(t.unk), n)
				}
				unkOpen = true
			}
			i += n
		}
	}
	if len(syms) > 0 {
		syms[len(syms)-1].next = -1
	}
	return syms
}

// mergeScan merges short words: repeatedly apply the lowest-ranked pair,
// leftmost first. It yields exactly what mergeHeap yields.
func (t *Tokenizer) mergeScan(syms []symbol) []symbol {
	for len(syms) > 1 {
		best, bestRank, bestID := -1, int32(1<<31-1), int32(0)
		for i := 0; i+1 < len(syms); i++ {
			if m, ok := t.merges[pairKey(syms[i].id, syms[i+1].id)]; ok && m.rank < bestRank {
				best, bestRank, bestID = i, m.rank, m.id
			}
		}
		if best < 0 {
			break
		}
		syms[best].id = bestID
		syms[best].size += syms[best+1].size
		syms = append(syms[:best+1], syms[best+2:]...)
	}
	return syms
}

// mergeHeap merges long words with a priority queue of candidate pairs, as the
// tokenizers library does: lowest rank first, then leftmost; stale candidates
// are skipped when popped.
func (t *Tokenizer) mergeHeap(syms []symbol) []symbol {
	q := make(mergeQueue, 0, len(syms))
	for i := 0; i+1 < len(syms); i++ {
		if m, ok := t.merges[pairKey(syms[i].id, syms[i+1].id)]; ok {
			q = append(q, candidate{rank: m.rank, pos: int32(i), id: m.id})
		}
	}
	heap.Init(&q)
	for len(q) > 0 {
		c := heap.Pop(&q).(candidate)
		s := &syms[c.pos]
		if s.size == 0 || s.next < 0 {
			continue
		}
		right := &syms[s.next]
		if m, ok := t.merges[pairKey(s.id, right.id)]; !ok || m.id != c.id {
			continue
		}
		s.id = c.id
		s.size += right.size
		right.size = 0
		s.next = right.next
		if s.next >= 0 {
			syms[s.next].prev = c.pos
			if m, ok := t.merges[pairKey(s.id, syms[s.next].id)]; ok {
				heap.Push(&q, candidate{rank: m.rank, pos: c.pos, id: m.id})
			}
		}
		if s.prev >= 0 {
			if m, ok := t.merges[pairKey(syms[s.prev].id, s.id)]; ok {
				heap.Push(&q, candidate{rank: m.rank, pos: s.prev, id: m.id})
			}
		}
	}
	return syms
}

type candidate struct{ rank, pos, id int32 }

type mergeQueue []candidate

func (q mergeQueue) Len() int { return len(q) }
func (q mergeQueue) Less(i, j int) bool {
	if q[i].rank != q[j].rank {
		return q[i].rank < q[j].rank
	}
	return q[i].pos < q[j].pos
}
func (q mergeQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *mergeQueue) Push(x any)   { *q = append(*q, x.(candidate)) }
func (q *mergeQueue) Pop() any {
	old := *q
	c := old[len(old)-1]
	*q = old[:len(old)-1]
	return c
}
