package gpu

import (
	"fmt"

	"github.com/kvfoot/kvfoot/compute"
	"github.com/kvfoot/kvfoot/cuda"
	"github.com/kvfoot/kvfoot/kv"
)

// KIVI storage (kv's quant:bits=…,group=…,residual=…) on the GPU. Each head's entries are its
// quantized rows (cuda.KIVIPool) followed by its residual, bf16 in the KV pool as the bf16
// storage's entries are: the same codes as kv's CPU storage for the same inputs, quantized by a
// kernel when Group entries older than the Residual most recent have accumulated, as the CPU
// does. A decode step that asks for no scores attends on the codes (cuda.KIVIDecode); otherwise
// the layer's entries are dequantized into a bf16 view beside the pool (one layer's worth) and
// the bf16 score, pre-fill and decode kernels run over it, in entry order, so that the chunk's
// own rows quantized on Append are seen dequantized, as on the CPU.

// kiviBook is a KIVI storage's host bookkeeping: per head, its quantized rows (rows) and its
// residual (res), entry i of a head being quantized row i while i < rows.Len(h), else residual
// entry i − rows.Len(h); each quantized row's key group slot, and the groups' reference counts.
type kiviBook struct {
	layout   cuda.KIVILayout
	residual int
	rows     *cuda.PagedCache
	res      *cuda.PagedCache
	groups   [][]int32 // per head: the key group slot of each quantized row, in entry order
	refs     []int32   // per group slot: the quantized rows that use it
	free     []int32   // group slots no row uses
	live     int       // group slots in use
}

func newKIVIBook(l cuda.KIVILayout, residual int, rows, res *cuda.PagedCache) *kiviBook {
	return &kiviBook{layout: l, residual: residual, rows: rows, res: res, groups: make([][]int32, res.Heads())}
}

// len is head h's entries.
func (b *kiviBook) len(h int) int { return b.rows.Len(h) + b.res.Len(h) }

// due is how many groups head h's residual holds beyond its Residual most recent entries: the
// CPU quantizes a group once Residual + Group entries are in float.
func (b *kiviBook) due(h int) int {
	n := b.res.Len(h) - b.residual
	if n < b.layout.Group {
		return 0
	}
	return n / b.layout.Group
}

// freeGroups is the group slots free in a table of capacity slots.
func (b *kiviBook) freeGroups(capacity int) int { return len(b.free) + capacity - len(b.refs) }

func (b *kiviBook) takeGroup(rows int) int32 {
	b.live++
	if n := len(b.free); n > 0 {
		g := b.free[n-1]
		b.free = b.free[:n-1]
		b.refs[g] = int32(rows)
		return g
	}
	b.refs = append(b.refs, int32(rows))
	return int32(len(b.refs) - 1)
}

func (b *kiviBook) release(g int32) {
	if b.refs[g]--; b.refs[g] == 0 {
		b.free = append(b.free, g)
		b.live--
	}
}

// quantize moves head h's due groups from its residual into quantized rows: jobs for
// cuda.KIVIQuantize (the residual's oldest entries, in order, into new rows) and the residual's
// moves for KVCopy, to run after the jobs (they may overwrite the jobs' sources). The rows pool
// must have the free blocks (rowBlocks).
func (b *kiviBook) quantize(h int, jobs []cuda.KIVIJob) ([]cuda.KIVIJob, []cuda.Move, error) {
	k, G := b.due(h), b.layout.Group
	if k == 0 {
		return jobs, nil, nil
	}
	for i := range k {
		dst, err := b.rows.Append(h, G)
		if err != nil {
			return nil, nil, err
		}
		src := make([]int32, G)
		for t := range src {
			src[t] = b.res.Slot(h, i*G+t)
		}
		g := b.takeGroup(G)
		for range G {
			b.groups[h] = append(b.groups[h], g)
		}
		jobs = append(jobs, cuda.KIVIJob{Group: g, Src: src, Dst: dst})
	}
	keep := make([]int, b.res.Len(h)-k*G)
	for i := range keep {
		keep[i] = k*G + i
	}
	moves, err := b.res.Keep(h, keep)
	return jobs, moves, err
}

// rowBlocks is the blocks of quantized rows head h needs beyond those it holds once its due
// groups are quantized.
func (b *kiviBook) rowBlocks(h int) int {
	n := b.rows.Len(h) + b.due(h)*b.layout.Group
	return (n+cuda.BlockEntries-1)/cuda.BlockEntries - b.rows.HeldBlocks(h)
}

// keep keeps head h's entries idx (increasing), as kv's quant storage does: kept quantized rows
// stay quantized with their key groups, kept residual entries stay in the residual; a group no
// row uses any more is freed. It returns the moves of the rows and of the residual.
func (b *kiviBook) keep(h int, idx []int) (rowMoves, resMoves []cuda.Move, err error) {
	nq := b.rows.Len(h)
	split := 0
	for split < len(idx) && idx[split] < nq {
		split++
	}
	for i, j := range idx {
		if j < 0 || j >= b.len(h) || i > 0 && j <= idx[i-1] {
			return nil, nil, fmt.Errorf("KIVI keep: index %d (%d) is not increasing within the head's %d entries", i, j, b.len(h))
		}
	}
	ri := make([]int, len(idx)-split)
	for i, j := range idx[split:] {
		ri[i] = j - nq
	}
	if rowMoves, err = b.rows.Keep(h, idx[:split]); err != nil {
		return nil, nil, err
	}
	if resMoves, err = b.res.Keep(h, ri); err != nil {
		return nil, nil, err
	}
	old := b.groups[h]
	kept := make([]int32, split)
	for i, j := range idx[:split] {
		kept[i] = old[j]
		b.refs[old[j]]++ // held while the old rows are released
	}
	for _, g := range old {
		b.release(g)
	}
	b.groups[h] = kept
	return rowMoves, resMoves, nil
}

// sources appends to dst where head h's entries are, in entry order (cuda.ViewSource).
func (b *kiviBook) sources(dst []int32, h int) []int32 {
	for i := range b.rows.Len(h) {
		dst = append(dst, cuda.ViewSource(true, b.rows.Slot(h, i)))
	}
	for i := range b.res.Len(h) {
		dst = append(dst, cuda.ViewSource(false, b.res.Slot(h, i)))
	}
	return dst
}

// bytes is what the heads hold as kv's CPU storage counts it: codes and value scales of the
// quantized rows, the key groups in use, and the residual (bf16 here, float32 on the CPU).
func (b *kiviBook) bytes() int64 {
	var rows, res int64
	for h := range b.groups {
		rows += int64(b.rows.Len(h))
		res += int64(b.res.Len(h))
	}
	l := b.layout
	return rows*int64(l.StoredRowBytes()) + int64(b.live)*int64(l.GroupBytes()) + res*int64(l.Dim)*2*2
}

// kiviStorage is the GPU's KIVI kv.Storage: the bf16 storage's KV pool holds the residual.
type kiviStorage struct {
	*storage
	book       *kiviBook
	jobs       []cuda.KIVIJob
	rowPending cuda.MoveQueue // Keep's row copies not yet run (flush)
	src        []int32        // the view's sources
	lens       []int          // per stored head of the layer: its entries
}

func (g *GPU) kiviStorage(s kv.Shape, rep int, p kv.Precision) (kv.Storage, error) {
	st, err := g.Storage(s, rep, kv.Precision{Name: "bf16"})
	if err != nil {
		return nil, err
	}
	base := st.(*storage)
	l := cuda.KIVILayout{Dim: s.HeadDim, Bits: p.Bits, Group: p.Group}
	heads := s.Layers * s.KVHeads
	rows, err := cuda.NewPagedCache(heads, heads)
	if err != nil {
		return nil, err
	}
	pool, err := g.d.NewKIVIPool(l, heads, heads)
	if err != nil {
		return nil, fmt.Errorf("%s: KIVI cache: %w", g.Name(), err)
	}
	base.mem.kivi = pool
	return &kiviStorage{storage: base, book: newKIVIBook(l, p.Residual, rows, base.pages)}, nil
}

func (s *kiviStorage) Bytes() int64 { return s.book.bytes() }

// reserveRows grows the KIVI pool to hold blocks more free row blocks and groups more key groups
// than it has free (doubling, as the KV pool does).
func (s *kiviStorage) reserveRows(blocks, groups int) {
	p := &s.mem.kivi
	addBlocks, addGroups := 0, 0
	if short := blocks - s.book.rows.FreeBlocks(); short > 0 {
		addBlocks = max(short, p.Blocks)
	}
	if short := groups - s.book.freeGroups(p.Groups); short > 0 {
		addGroups = max(short, p.Groups)
	}
	if addBlocks == 0 && addGroups == 0 {
		return
	}
	pool, err := s.d.GrowKIVIPool(*p, addBlocks, addGroups)
	if err != nil {
		panic(Fault{fmt.Errorf("the KIVI cache needs %d more blocks of %d rows and %d more key groups: %w", addBlocks, cuda.BlockEntries, addGroups, err)})
	}
	*p = pool
	if addBlocks > 0 {
		check(s.book.rows.Grow(addBlocks))
	}
}

// Append writes the forward's rows to the heads' residuals, then quantizes every head's due
// groups.
func (s *kiviStorage) Append(layer int, k, v compute.Buf, n int) {
	s.flush()
	s.storage.Append(layer, k, v, n)
	blocks, groups := 0, 0
	for g := range s.shape.KVHeads {
		h := s.head(layer, g)
		blocks += max(0, s.book.rowBlocks(h))
		groups += s.book.due(h)
	}
	s.reserveRows(blocks, groups)
	s.jobs = s.jobs[:0]
	for g := range s.shape.KVHeads {
		var moves []cuda.Move
		var err error
		s.jobs, moves, err = s.book.quantize(s.head(layer, g), s.jobs)
		check(err)
		s.pending.Add(s.head(layer, g), moves) // after the jobs, which read their sources
	}
	check(s.d.KIVIQuantize(s.mem.kivi, s.mem.pool, s.jobs))
}

func (s *kiviStorage) flush() {
	s.storage.flush()
	moves := s.rowPending.Moves()
	if len(moves) == 0 {
		return
	}
	work := s.workspace(cuda.KIVICopyWorkBytes(s.book.layout, len(moves)))
	check(s.d.KIVICopy(s.mem.kivi, moves, work))
	s.rowPending.Reset()
}

func (s *kiviStorage) Keep(layer, head int, idx []int) {
	rowMoves, resMoves, err := s.book.keep(s.head(layer, head), idx)
	check(err)
	s.rowPending.Add(s.head(layer, head), rowMoves)
	s.pending.Add(s.head(layer, head), resMoves)
}

// Drop keeps the rest by Keep: a quantized run's rows share their groups' scales.
func (s *kiviStorage) Drop(layer, head, lo, hi int) {
	s.Keep(layer, head, kv.AppendKept(nil, s.book.len(s.head(layer, head)), lo, hi))
}

func (s *kiviStorage) Truncate(layer, head, n int) {
	s.Drop(layer, head, n, s.book.len(s.head(layer, head)))
}

// kiviView places heads of lens entries in a view of blocks of 64 rows, each head's entries in
// order from its first block on: first[g] is head g's first block, maxBlocks the most a head
// holds (at least 1).
func kiviView(lens []int) (first []int, blocks, maxBlocks int) {
	maxBlocks = 1
	for _, n := range lens {
		first = append(first, blocks)
		b := (n + cuda.BlockEntries - 1) / cuda.BlockEntries
		blocks += b
		maxBlocks = max(maxBlocks, b)
	}
	return first, max(blocks, 1), maxBlocks
}

// viewTable is kiviView's block tables as the attention kernels read them: row g holds head
// g's blocks, the rest of the row 0.
func viewTable(dst []int32, first, lens []int, maxBlocks int) []int32 {
	for g, n := range lens {
		held := (n + cuda.BlockEntries - 1) / cuda.BlockEntries
		for b := range maxBlocks {
			if b < held {
				dst = append(dst, int32(first[g]+b))
			} else {
				dst = append(dst, 0)
			}
		}
	}
	return dst
}

// Attend runs a decode step that asks for no scores on the codes (KIVIDecode). Otherwise it
// dequantizes the layer's entries into the view and runs the bf16 score, pre-fill and decode
// kernels over it as the bf16 storage runs them over its pool: the scores are handed out by
// entry, which the view holds in order.
func (s *kiviStorage) Attend(layer int, q, out compute.Buf, a *kv.AttendArgs) {
	s.flush()
	if a.N != s.n {
		panic(Fault{fmt.Errorf("attention over %d rows after appending %d", a.N, s.n)})
	}
	s.req = scoreHeads(s.req, a)
	asked := cuda.ScoresLen(s.req)
	if a.N == 1 && asked == 0 {
		for g := range a.Scores {
			a.Scores[g] = a.Scores[g][:0]
		}
		s.decode(layer, q, out)
		return
	}
	H, d := s.shape.KVHeads, s.shape.HeadDim
	s.lens = s.lens[:0]
	longest, total := 0, 0
	for g := range H {
		n := s.book.len(s.head(layer, g))
		s.lens = append(s.lens, n)
		longest, total = max(longest, n), total+n
	}
	first, blocks, maxBlocks := kiviView(s.lens)
	// Every buffer grows before anything is staged: growing waits for the GPU, after which the
	// staging area is reused.
	half := int64(blocks) * cuda.BlockEntries * int64(d) * 2
	view := s.grow(&s.mem.view, 2*half)
	pool := cuda.KVPool{K: cuda.Buffer{Ptr: view.Ptr, Bytes: half}, V: cuda.Buffer{Ptr: view.Ptr + uint64(half), Bytes: half}, Blocks: blocks, Dim: d}
	var work cuda.Buffer
	var sp cuda.DecodeSplit
	if a.N > 1 {
		work = s.workspace(2 * int64(a.N*H*d) * 2)
	} else {
		sp = s.d.DecodeSplits(total, longest)
		work = s.workspace(cuda.DecodeWorkspaceBytes(s.shape.Heads, d, sp.Splits))
	}
	var res, scoreWork cuda.Buffer
	if asked > 0 {
		outBytes := (int64(asked)*4 + 255) &^ 255
		buf := s.grow(&s.mem.scores, outBytes+cuda.ScoresWorkBytes(s.shape.Heads, s.req))
		res = cuda.Buffer{Ptr: buf.Ptr, Bytes: outBytes}
		scoreWork = cuda.Buffer{Ptr: buf.Ptr + uint64(outBytes), Bytes: buf.Bytes - outBytes}
	}

	s.src = s.src[:0]
	for g := range H {
		s.src = s.book.sources(s.src, s.head(layer, g))
		s.src = append(s.src, make([]int32, (first[g]+(s.lens[g]+cuda.BlockEntries-1)/cuda.BlockEntries)*cuda.BlockEntries-len(s.src))...)
		for i := first[g]*cuda.BlockEntries + s.lens[g]; i < len(s.src); i++ {
			s.src[i] = cuda.ViewSkip
		}
	}
	check(s.d.KIVIView(pool.K, pool.V, s.mem.kivi, s.mem.pool, s.src))
	if asked > 0 { // before the attention, whose out may be q
		heads := s.viewHeads(first, maxBlocks, func(g int) int { return s.lens[g] })
		check(s.d.AttentionScores(res, dev(q), pool, heads, a.N, s.req, scoreWork))
	}
	if a.N > 1 {
		// the chunk's rows as the view holds them (dequantized where Append quantized them),
		// [n][heads][d] for the pre-fill kernel; the cache part is each head's first Past
		s.slots = s.slots[:0]
		for t := range a.N {
			for g := range H {
				s.slots = append(s.slots, int32(first[g]*cuda.BlockEntries+a.Past[g]+t))
			}
		}
		chunk := int64(a.N*H*d) * 2
		kc, vc := cuda.Buffer{Ptr: work.Ptr, Bytes: chunk}, cuda.Buffer{Ptr: work.Ptr + uint64(chunk), Bytes: chunk}
		check(s.d.KVRead(pool, kc, vc, s.slots))
		heads := s.viewHeads(first, maxBlocks, func(g int) int { return a.Past[g] })
		check(s.d.PrefillAttention(dev(out), dev(q), kc, vc, pool, heads, a.N))
	} else {
		heads := s.viewHeads(first, maxBlocks, func(g int) int { return s.lens[g] })
		check(s.d.DecodeAttention(dev(out), dev(q), pool, heads, sp, work))
	}
	if asked > 0 {
		s.scores = append(s.scores[:0], make([]float32, asked)...)
		check(cuda.Download(s.d, s.scores, res))
		off := 0
		for g, h := range s.req {
			a.Scores[g] = a.Scores[g][:0]
			if h.To > h.From { // the view holds entries in order: scores by place are by entry
				a.Scores[g] = append(a.Scores[g], s.scores[off:off+h.Count]...)
				off += h.Count
			}
		}
	}
}

// viewHeads stages the view's block tables with each head's length from lens.
func (s *kiviStorage) viewHeads(first []int, maxBlocks int, lens func(g int) int) cuda.AttentionHeads {
	H := s.shape.KVHeads
	s.ints = viewTable(s.ints[:0], first, s.lens, maxBlocks)
	for g := range H {
		s.ints = append(s.ints, int32(lens(g)))
	}
	staged, err := s.d.StageInts(s.ints)
	check(err)
	tb := int64(H*maxBlocks) * 4
	return cuda.AttentionHeads{
		HQ: s.shape.Heads, HKV: H, MaxBlocks: maxBlocks, Scale: s.scale,
		Tables: cuda.Buffer{Ptr: staged.Ptr, Bytes: tb},
		Lens:   cuda.Buffer{Ptr: staged.Ptr + uint64(tb), Bytes: int64(H) * 4},
	}
}

// decode is a decode step's attention on the layer's codes and residuals, split-K.
func (s *kiviStorage) decode(layer int, q, out compute.Buf) {
	H := s.shape.KVHeads
	first := s.head(layer, 0)
	rowTab, rows, maxRow, err := s.book.rows.Tables(first, H)
	check(err)
	resTab, res, maxRes, err := s.book.res.Tables(first, H)
	check(err)
	longest, total := 0, 0
	for g := range H {
		n := int(rows[g] + res[g])
		longest, total = max(longest, n), total+n
	}
	sp := s.d.DecodeSplits(total, longest)
	work := s.workspace(cuda.DecodeWorkspaceBytes(s.shape.Heads, s.shape.HeadDim, sp.Splits)) // before staging: it may wait
	s.ints = append(append(append(append(s.ints[:0], rowTab...), resTab...), rows...), res...)
	staged, err := s.d.StageInts(s.ints)
	check(err)
	rb, sb := int64(len(rowTab))*4, int64(len(resTab))*4
	heads := cuda.KIVIHeads{HQ: s.shape.Heads, HKV: H, MaxRowBlocks: maxRow, MaxResBlocks: maxRes, Scale: s.scale,
		RowTables: cuda.Buffer{Ptr: staged.Ptr, Bytes: rb},
		ResTables: cuda.Buffer{Ptr: staged.Ptr + uint64(rb), Bytes: sb},
		Lens:      cuda.Buffer{Ptr: staged.Ptr + uint64(rb+sb), Bytes: int64(2*H) * 4}}
	check(s.d.KIVIDecode(dev(out), dev(q), s.mem.kivi, s.mem.pool, heads, sp, work))
}
