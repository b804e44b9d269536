package gpu

import (
	"fmt"
	"math"
	"runtime"

	"github.com/kvfoot/kvfoot/compute"
	"github.com/kvfoot/kvfoot/cuda"
	"github.com/kvfoot/kvfoot/kv"
)

// storage is the GPU's kv.Storage: every (layer, stored head) is a head of one PagedCache over
// a bf16 KV pool that doubles when it runs out of blocks, so each head holds the blocks its own
// entries need and a streaming head's stay few. Entries stay in position order (Keep compacts).
type storage struct {
	d       *cuda.Device
	shape   kv.Shape // as stored: an expanded cache's KVHeads are the query heads
	rep     int      // stored heads per model KV head
	pages   *cuda.PagedCache
	mem     *deviceMem // the pool and workspaces, freed when the storage is collected
	scale   float32
	k, v    compute.Buf // the forward's keys and values (Append), which pre-fill attention reads
	n       int         // their rows
	ints    []int32     // block tables and lengths staged for upload
	slots   []int32
	pending cuda.MoveQueue // Keep's copies not yet run (flush)
	entries int64
	req     []cuda.ScoreHead // the layer in progress's score requests (scores.go)
	scores  []float32        // their results, downloaded
	cleanup runtime.Cleanup  // frees mem once the storage is unreachable, unless Close did
}

// deviceMem is a storage's device memory, apart from the storage so that a cleanup can free
// it once the storage is unreachable (kv.Storage has no Close).
type deviceMem struct {
	d    *cuda.Device
	pool cuda.KVPool
	work cuda.Buffer // decode attention's partial results; KVCopy's gathered entries; an expanded chunk
	// the attention scores and their softmax statistics, apart from work, which the decode
	// attention queued after them overwrites before they are downloaded
	scores cuda.Buffer
	kivi   cuda.KIVIPool // KIVI storage's quantized rows (kivi.go); its residual is in pool
	view   cuda.Buffer   // KIVI storage's layer dequantized to bf16 for the attention kernels
}

func (m *deviceMem) free() {
	m.d.FreeKVPool(m.pool)
	m.d.Free(m.work)
	m.d.Free(m.scores)
	m.d.FreeKIVIPool(m.kivi)
	m.d.Free(m.view)
}

// Close frees the storage's device memory now rather than when the storage is collected: a
// server closes a finished request's cache so that the next request finds its memory free.
// The storage must not be used afterwards.
func (s *storage) Close() error {
	s.cleanup.Stop()
	err := s.d.Sync() // a queued kernel may still use the memory
	s.mem.free()
	*s.mem = deviceMem{d: s.d} // nothing left to free: a second Close frees nothing
	return err
}

// Storage makes caches' storage on the GPU (pass it to kv.WithStorage). It stores bf16 entries
// for the precisions "f32" (the default; kvfoot's CPU path stores float32) and "bf16", and
// KIVI's quantized rows with a bf16 residual for "quant" (kivi.go). An expanded cache (rep > 1,
// SnapKV's gqa=expand) stores each model KV head rep times, one copy per query head, which then
// attend one to one. The attention probabilities that token-eviction policies ask for are
// computed on the GPU (scores.go).
func (g *GPU) Storage(s kv.Shape, rep int, p kv.Precision) (kv.Storage, error) {
	if err := g.CheckStorage(s, rep, p); err != nil {
		return nil, err
	}
	if p.Name == "quant" {
		return g.kiviStorage(s, rep, p)
	}
	heads := s.Layers * s.KVHeads
	blocks := 2 * heads // grows by doubling
	pages, err := cuda.NewPagedCache(blocks, heads)
	if err != nil {
		return nil, err
	}
	pool, err := g.d.NewKVPool(blocks, s.HeadDim)
	if err != nil {
		return nil, fmt.Errorf("%s: KV cache: %w", g.Name(), err)
	}
	mem := &deviceMem{d: g.d, pool: pool}
	st := &storage{d: g.d, shape: s, rep: rep, pages: pages, mem: mem, scale: float32(1 / math.Sqrt(float64(s.HeadDim)))}
	st.cleanup = runtime.AddCleanup(st, func(m *deviceMem) { m.free() }, mem)
	return st, nil
}

// CheckStorage says, without allocating anything, whether Storage takes a cache of this
// geometry and precision: a server asks it when it admits a request, so that a policy the GPU
// cannot hold is refused then rather than failing mid-stream.
func (g *GPU) CheckStorage(s kv.Shape, rep int, p kv.Precision) error {
	switch p.Name {
	case "", "f32", "bf16":
	case "quant":
		if !g.d.HasKernels(cuda.KIVIKernels...) {
			return fmt.Errorf("%s: this build's PTX has no KIVI kernels (cuda/kernels/kivi.cu; run tools/cuda-ptx.sh); %q storage is CPU-only until then", g.Name(), p.Name)
		}
		if err := (cuda.KIVILayout{Dim: s.HeadDim, Bits: p.Bits, Group: p.Group}).Check(); err != nil {
			return fmt.Errorf("%s: %w", g.Name(), err)
		}
	default:
		return fmt.Errorf("%s stores KV entries in bf16 or KIVI's quantized rows; %q storage is CPU-only", g.Name(), p.Name)
	}
	if rep < 1 || s.KVHeads%rep != 0 {
		return fmt.Errorf("%s: %d stored heads per layer are not %d copies of the model's KV heads", g.Name(), s.KVHeads, rep)
	}
	if s.HeadDim != 64 && s.HeadDim != 128 {
		return fmt.Errorf("%s: head dimension %d; the attention kernels take 64 or 128", g.Name(), s.HeadDim)
	}
	if s.Heads/s.KVHeads > 8 {
		return fmt.Errorf("%s: %d query heads per KV head; the decode kernel takes up to 8", g.Name(), s.Heads/s.KVHeads)
	}
	return nil
}

// StoredPrecision is the precision Storage keeps entries of precision p in: bf16 for "f32"
// and "bf16"; "quant" as it is (kv counts its residual as float32, which bounds the GPU's bf16
// residual, and its rows' codes and scales as the GPU holds them, kivi.go). A server predicts a request's KV bytes with it, so that its admission counts
// the bytes the GPU holds (2·2·HeadDim per entry), not the CPU's float32 (2·4·HeadDim).
func StoredPrecision(p kv.Precision) kv.Precision {
	switch p.Name {
	case "", "f32", "bf16":
		return kv.Precision{Name: "bf16"}
	}
	return p
}

// entryBytes is the bytes of one entry of one head: a bf16 key and value.
func (s *storage) entryBytes() int64 { return int64(s.shape.HeadDim) * 2 * 2 }

func (s *storage) Bytes() int64 { return s.entries * s.entryBytes() }

// reserve makes the pool hold at least blocks more blocks than it has free. A pool that grows
// in place (cuda.KVPool.GrowsInPlace) grows by a quarter, one that copies doubles (keeping the
// copies few, the old and the new pool held together for a moment); when that does not fit,
// either grows by what is missing.
func (s *storage) reserve(blocks int) {
	short := blocks - s.pages.FreeBlocks()
	if short <= 0 {
		return
	}
	add := max(short, s.pages.Blocks())
	if s.mem.pool.GrowsInPlace() {
		add = max(short, s.pages.Blocks()/4)
	}
	pool, err := s.d.GrowKVPool(s.mem.pool, add)
	if err != nil && add > short {
		add = short
		pool, err = s.d.GrowKVPool(s.mem.pool, add)
	}
	if err != nil {
		panic(Fault{fmt.Errorf("the KV cache needs %d more blocks of %d entries (%s) beside the %d it has: %w", add,
			cuda.BlockEntries, gib(uint64(add)*uint64(s.blockBytes())), s.pages.Blocks(), err)})
	}
	s.mem.pool = pool
	check(s.pages.Grow(add))
}

// blockBytes is the device memory of one pool block: keys and values of 64 entries.
func (s *storage) blockBytes() int64 { return cuda.BlockEntries * s.entryBytes() }

// LongestContext is the longest sequence whose full-attention cache fits in free bytes of
// device memory with a model of shape s: every (layer, KV head) holds every token, rounded up
// to whole blocks. A pool that grows by copying (inPlace false) holds the old and the new pool
// at once in its last growth, so the cache can use about half of the memory; one that grows in
// place all of it but the granules its last mapping rounds up to.
func LongestContext(s kv.Shape, free int64, inPlace bool) int {
	perBlock := int64(s.Layers*s.KVHeads) * cuda.BlockEntries * int64(s.HeadDim) * 2 * 2 // every head's block
	blocks := (free - growthSlack) / perBlock
	if !inPlace {
		blocks = free / 2 / perBlock
	}
	return int(max(blocks-1, 0) * cuda.BlockEntries)
}

// growthSlack is what a pool growing in place may map past its need: a 2 MiB granule for K
// and one for V.
const growthSlack = 2 * 2 << 20

// workspace returns the workspace, grown to at least bytes as needed. Growing waits for the
// GPU, after which staged lists are reused: grow before staging what the next launch reads.
func (s *storage) workspace(bytes int64) cuda.Buffer { return s.grow(&s.mem.work, bytes) }

func (s *storage) grow(b *cuda.Buffer, bytes int64) cuda.Buffer {
	if b.Bytes < bytes {
		check(s.d.Sync()) // a queued kernel may still use the old one
		check(s.d.Free(*b))
		*b = cuda.Buffer{}
		w, err := s.d.Alloc(max(bytes, 1<<20))
		check(err)
		*b = w
	}
	return *b
}

func (s *storage) head(layer, g int) int { return layer*s.shape.KVHeads + g }

// Append writes the forward's rows to every stored head of layer; in an expanded cache each
// model KV head's rows go to its rep stored heads, one KVWrite per copy.
func (s *storage) Append(layer int, k, v compute.Buf, n int) {
	s.flush()
	H := s.shape.KVHeads
	need := 0
	for g := range H {
		h := s.head(layer, g)
		need += (s.pages.Len(h)+n+cuda.BlockEntries-1)/cuda.BlockEntries - s.pages.HeldBlocks(h)
	}
	s.reserve(need)
	for c := range s.rep {
		var err error
		s.slots, err = appendSlots(s.slots, s.pages, s.head(layer, 0), H, s.rep, c, n)
		check(err)
		check(s.d.KVWrite(s.mem.pool, dev(k), dev(v), s.slots))
	}
	s.k, s.v, s.n = k, v, n
	s.entries += int64(n * H)
}

// appendSlots appends n entries to copy c of every model KV head of a layer whose stored heads
// (heads of them, rep copies of each model KV head in a row) start at pages head first, and
// returns in dst the pool slot of each row of the forward's k and v, [n][heads/rep] rows.
func appendSlots(dst []int32, pages *cuda.PagedCache, first, heads, rep, c, n int) ([]int32, error) {
	kvHeads := heads / rep
	dst = append(dst[:0], make([]int32, n*kvHeads)...)
	for src := range kvHeads {
		slots, err := pages.Append(first+src*rep+c, n)
		if err != nil {
			return nil, err
		}
		for t, slot := range slots {
			dst[t*kvHeads+src] = slot
		}
	}
	return dst, nil
}

// stageTables sends layer's block tables with each head's length from lens.
func (s *storage) stageTables(layer int, lens func(g int, held int32) int32) cuda.AttentionHeads {
	H := s.shape.KVHeads
	table, held, maxBlocks, err := s.pages.Tables(s.head(layer, 0), H)
	check(err)
	s.ints = append(s.ints[:0], table...)
	for g, n := range held {
		s.ints = append(s.ints, lens(g, n))
	}
	staged, err := s.d.StageInts(s.ints)
	check(err)
	tb := int64(len(table)) * 4
	return cuda.AttentionHeads{
		HQ: s.shape.Heads, HKV: H, MaxBlocks: maxBlocks, Scale: s.scale,
		Tables: cuda.Buffer{Ptr: staged.Ptr, Bytes: tb},
		Lens:   cuda.Buffer{Ptr: staged.Ptr + uint64(tb), Bytes: int64(H) * 4},
	}
}

func (s *storage) Attend(layer int, q, out compute.Buf, a *kv.AttendArgs) {
	s.flush()
	if a.N != s.n {
		panic(Fault{fmt.Errorf("attention over %d rows after appending %d", a.N, s.n)})
	}
	res, asked := s.queueScores(layer, q, a) // before the attention, whose out may be q
	if a.N > 1 {
		// The chunk's own rows come from k and v, causally; the cache part is the entries
		// from before the forward, the first Past[g] of each head.
		kc, vc := dev(s.k), dev(s.v)
		if s.rep > 1 {
			kc, vc = s.expandChunk(layer, a)
		}
		heads := s.stageTables(layer, func(g int, _ int32) int32 { return int32(a.Past[g]) })
		check(s.d.PrefillAttention(dev(out), dev(q), kc, vc, s.mem.pool, heads, a.N))
	} else {
		longest, total := 0, 0
		for g := range s.shape.KVHeads {
			n := s.pages.Len(s.head(layer, g))
			longest, total = max(longest, n), total+n
		}
		sp := s.d.DecodeSplits(total, longest)
		work := s.workspace(cuda.DecodeWorkspaceBytes(s.shape.Heads, s.shape.HeadDim, sp.Splits))
		heads := s.stageTables(layer, func(_ int, held int32) int32 { return held })
		check(s.d.DecodeAttention(dev(out), dev(q), s.mem.pool, heads, sp, work))
	}
	if asked {
		s.collectScores(layer, res, a)
	}
}

// expandChunk gathers the forward's rows of every stored head of an expanded cache from the
// pool into [n][stored heads][HeadDim] keys and values in the workspace: the pre-fill kernel
// reads the chunk laid out by the heads it attends to, and k and v hold the model's fewer KV
// heads.
func (s *storage) expandChunk(layer int, a *kv.AttendArgs) (k, v cuda.Buffer) {
	H := s.shape.KVHeads
	half := int64(a.N*H*s.shape.HeadDim) * 2
	w := s.workspace(2 * half)
	s.slots = chunkSlots(s.slots, s.pages, s.head(layer, 0), a.Past, a.N)
	k, v = cuda.Buffer{Ptr: w.Ptr, Bytes: half}, cuda.Buffer{Ptr: w.Ptr + uint64(half), Bytes: half}
	check(s.d.KVRead(s.mem.pool, k, v, s.slots))
	return k, v
}

// chunkSlots returns in dst the pool slots of the forward's n rows of the len(past) heads from
// pages head first, [n][heads]: row t of head g is its entry past[g]+t.
func chunkSlots(dst []int32, pages *cuda.PagedCache, first int, past []int, n int) []int32 {
	dst = dst[:0]
	for t := range n {
		for g, p := range past {
			dst = append(dst, pages.Slot(first+g, p+t))
		}
	}
	return dst
}

// Keep records the head's moves; the copies run with the other heads' in one KVCopy
// before the pool is next read or written (flush), not one pair of launches per head.
func (s *storage) Keep(layer, head int, idx []int) {
	h := s.head(layer, head)
	before := s.pages.Len(h)
	moves, err := s.pages.Keep(h, idx)
	check(err)
	s.pending.Add(h, moves)
	s.entries -= int64(before - len(idx))
}

// Drop records the head's moves as Keep does: a streaming head's window is a ring, one
// move a step (cuda.PagedCache.Drop).
func (s *storage) Drop(layer, head, lo, hi int) {
	h := s.head(layer, head)
	moves, err := s.pages.Drop(h, lo, hi)
	check(err)
	s.pending.Add(h, moves)
	s.entries -= int64(hi - lo)
}

// flush runs the pending compactions. It must come before anything that reads the pool or
// hands out blocks: a move's source may sit in a block its head has just given back.
func (s *storage) flush() {
	moves := s.pending.Moves()
	if len(moves) == 0 {
		return
	}
	check(s.d.KVCopy(s.mem.pool, moves, s.workspace(cuda.KVCopyWorkBytes(len(moves), s.shape.HeadDim))))
	s.pending.Reset()
}

func (s *storage) Truncate(layer, head, n int) {
	h := s.head(layer, head)
	before := s.pages.Len(h)
	moves, err := s.pages.Truncate(h, n)
	check(err)
	s.pending.Add(h, moves)
	s.entries -= int64(before - n)
}
