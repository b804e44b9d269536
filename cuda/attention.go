package cuda

import (
	"errors"
	"fmt"
)

// KVPool is the device memory of a paged KV cache: K and V as [Blocks·64][Dim] bf16 each.
// A PagedCache says which slots belong to which head. Where the device can (vmm.go), K and V
// are growable regions of one reserved range and GrowKVPool maps more memory onto them in place.
type KVPool struct {
	K, V    Buffer
	Blocks  int
	Dim     int
	regions []*region // K's and V's, when they grow in place
}

// NewKVPool allocates a pool of blocks blocks of 64 entries of head dimension dim (64 or 128).
func (d *Device) NewKVPool(blocks, dim int) (KVPool, error) {
	if dim != 64 && dim != 128 {
		return KVPool{}, fmt.Errorf("cuda: KV pool: head dimension %d; the attention kernels take 64 or 128", dim)
	}
	if blocks <= 0 {
		return KVPool{}, fmt.Errorf("cuda: KV pool: %d blocks", blocks)
	}
	bytes := int64(blocks) * BlockEntries * int64(dim) * bf16Bytes
	if d.gran > 0 {
		// K and V each can grow to half of what is free (more takes a copy: GrowKVPool)
		free, _, err := d.MemInfo()
		if err != nil {
			free = d.totalBytes
		}
		regions, err := d.reserveRegions(2, max(free/2, uint64(bytes)), uint64(bytes))
		if err == nil {
			return KVPool{K: Buffer{Ptr: regions[0].base, Bytes: bytes}, V: Buffer{Ptr: regions[1].base, Bytes: bytes},
				Blocks: blocks, Dim: dim, regions: regions}, nil
		}
		var e *Error
		if !errors.As(err, &e) || e.Op != "cuMemAddressReserve" {
			return KVPool{}, fmt.Errorf("KV pool: %w", err)
		}
		// no address range to be had: a pool that grows by copying
	}
	k, err := d.Alloc(bytes)
	if err != nil {
		return KVPool{}, fmt.Errorf("KV pool keys: %w", err)
	}
	v, err := d.Alloc(bytes)
	if err != nil {
		return KVPool{}, errors.Join(fmt.Errorf("KV pool values: %w", err), d.Free(k))
	}
	return KVPool{K: k, V: v, Blocks: blocks, Dim: dim}, nil
}

// FreeKVPool releases a pool's memory.
func (d *Device) FreeKVPool(p KVPool) error {
	if p.regions != nil {
		return d.freeRegions(p.regions)
	}
	if err := d.Free(p.K); err != nil {
		return err
	}
	return d.Free(p.V)
}

// GrowsInPlace says whether the pool grows without a copy.
func (p KVPool) GrowsInPlace() bool { return p.regions != nil }

func (p KVPool) checkSlots(op string, slots []int32) error {
	for i, s := range slots {
		if s >= int32(p.Blocks*BlockEntries) {
			return fmt.Errorf("cuda: %s: slot %d is %d, the pool has %d", op, i, s, p.Blocks*BlockEntries)
		}
	}
	return nil
}

// KVWrite stores rows of k and v ([len(slots)][Dim] bf16; a chunk's [tokens][Hkv][Dim] is such
// rows) at pool slots slots[i] (from PagedCache.Append); a negative slot skips its row.
func (d *Device) KVWrite(p KVPool, k, v Buffer, slots []int32) error {
	if len(slots) == 0 {
		return nil
	}
	if err := p.checkSlots("kv write", slots); err != nil {
		return err
	}
	if err := need("kv write keys", k, len(slots)*p.Dim, bf16Bytes); err != nil {
		return err
	}
	if err := need("kv write values", v, len(slots)*p.Dim, bf16Bytes); err != nil {
		return err
	}
	s, err := d.StageInts(slots)
	if err != nil {
		return err
	}
	return d.launch("kv_write", grid1(len(slots), p.Dim/8), p.K, p.V, k, v, s, int32(p.Dim))
}

// KVRead copies the entries at pool slots slots[i] into rows i of k and v ([len(slots)][Dim]
// bf16): an expanded cache's chunk, gathered from its stored heads for the pre-fill kernel.
func (d *Device) KVRead(p KVPool, k, v Buffer, slots []int32) error {
	if len(slots) == 0 {
		return nil
	}
	for i, s := range slots {
		if s < 0 {
			return fmt.Errorf("cuda: kv read: slot %d is negative", i)
		}
	}
	if err := p.checkSlots("kv read", slots); err != nil {
		return err
	}
	if err := need("kv read keys", k, len(slots)*p.Dim, bf16Bytes); err != nil {
		return err
	}
	if err := need("kv read values", v, len(slots)*p.Dim, bf16Bytes); err != nil {
		return err
	}
	s, err := d.StageInts(slots)
	if err != nil {
		return err
	}
	return d.launch("kv_read", grid1(len(slots), p.Dim/8), k, v, p.K, p.V, s, int32(p.Dim))
}

// KVCopyWorkBytes is the workspace KVCopy needs for moves moves of head dimension dim.
func KVCopyWorkBytes(moves, dim int) int64 { return 2 * int64(moves) * int64(dim) * bf16Bytes }

// KVCopy performs PagedCache.Keep's moves on the pool: it gathers every source entry into work
// (KVCopyWorkBytes), then writes them to their destinations, so a destination may be another
// move's source.
func (d *Device) KVCopy(p KVPool, moves []Move, work Buffer) error {
	if len(moves) == 0 {
		return nil
	}
	idx := make([]int32, 2*len(moves))
	for i, m := range moves {
		if m.Src < 0 || m.Dst < 0 {
			return fmt.Errorf("cuda: kv copy: move %d has a negative slot", i)
		}
		idx[i], idx[len(moves)+i] = m.Src, m.Dst
	}
	if err := p.checkSlots("kv copy", idx); err != nil {
		return err
	}
	if err := need("kv copy workspace", work, int(KVCopyWorkBytes(len(moves), p.Dim)), 1); err != nil {
		return err
	}
	s, err := d.StageInts(idx)
	if err != nil {
		return err
	}
	half := int64(len(moves)) * int64(p.Dim) * bf16Bytes
	k, v := Buffer{Ptr: work.Ptr, Bytes: half}, Buffer{Ptr: work.Ptr + uint64(half), Bytes: half}
	dst := Buffer{Ptr: s.Ptr + uint64(len(moves))*i32Bytes, Bytes: int64(len(moves)) * i32Bytes}
	if err := d.launch("kv_read", grid1(len(moves), p.Dim/8), k, v, p.K, p.V, s, int32(p.Dim)); err != nil {
		return err
	}
	return d.launch("kv_write", grid1(len(moves), p.Dim/8), p.K, p.V, k, v, dst, int32(p.Dim))
}

// GrowKVPool returns a pool of blocks more blocks holding p's entries at the same slots: p
// itself with more memory mapped when it grows in place within its reserved range, else a
// copy, p freed. On failure p is unchanged. PagedCache.Grow records the new blocks.
func (d *Device) GrowKVPool(p KVPool, blocks int) (KVPool, error) {
	if blocks <= 0 {
		return KVPool{}, fmt.Errorf("cuda: grow KV pool by %d blocks", blocks)
	}
	bytes := int64(p.Blocks+blocks) * BlockEntries * int64(p.Dim) * bf16Bytes
	if p.regions != nil && uint64(bytes) <= p.regions[0].reserved {
		for i, what := range []string{"keys", "values"} {
			if err := d.growRegion(p.regions[i], uint64(bytes)); err != nil {
				return KVPool{}, fmt.Errorf("KV pool %s: %w", what, err) // p stays usable as it was
			}
		}
		p.K.Bytes, p.V.Bytes, p.Blocks = bytes, bytes, p.Blocks+blocks
		return p, nil
	}
	q, err := d.NewKVPool(p.Blocks+blocks, p.Dim)
	if err != nil {
		return KVPool{}, err
	}
	if err := errors.Join(d.Copy(q.K, p.K), d.Copy(q.V, p.V)); err != nil {
		return KVPool{}, errors.Join(err, d.FreeKVPool(q))
	}
	return q, d.FreeKVPool(p)
}

// AttentionHeads describes one layer's heads for the attention kernels: hq query heads over
// hkv KV heads (hq divisible by hkv; query head j reads KV head j/(hq/hkv)), their block
// tables and lengths on the device as PagedCache.Tables gives them (int32 [hkv][maxBlocks]
// and [hkv]), and the softmax scale (1/sqrt(dim) for Llama).
type AttentionHeads struct {
	HQ, HKV   int
	Tables    Buffer
	Lens      Buffer
	MaxBlocks int
	Scale     float32
}

func (a AttentionHeads) check(op string, p KVPool) error {
	if a.HQ <= 0 || a.HKV <= 0 || a.HQ%a.HKV != 0 {
		return fmt.Errorf("cuda: %s: %d query heads over %d KV heads: must be positive and divisible", op, a.HQ, a.HKV)
	}
	if a.MaxBlocks <= 0 {
		return fmt.Errorf("cuda: %s: maxBlocks = %d", op, a.MaxBlocks)
	}
	if err := need(op+" block tables", a.Tables, a.HKV*a.MaxBlocks, i32Bytes); err != nil {
		return err
	}
	if err := need(op+" lengths", a.Lens, a.HKV, i32Bytes); err != nil {
		return err
	}
	if p.Dim != 64 && p.Dim != 128 {
		return fmt.Errorf("cuda: %s: head dimension %d", op, p.Dim)
	}
	return nil
}

// PrefillAttention writes out ([n][HQ][Dim] bf16) for a chunk of n queries q ([n][HQ][Dim]):
// query i of head j attends to its KV head's cached entries and to the chunk's own keys and
// values kc, vc ([n][HKV][Dim]) 0..i. The cache holds the entries before the chunk (append the
// chunk afterwards, or only what the policy keeps of it). out may be q.
func (d *Device) PrefillAttention(out, q, kc, vc Buffer, p KVPool, a AttentionHeads, n int) error {
	if err := a.check("prefill attention", p); err != nil {
		return err
	}
	if n <= 0 {
		return fmt.Errorf("cuda: prefill attention: chunk of %d queries", n)
	}
	qs, ks := n*a.HQ*p.Dim, n*a.HKV*p.Dim
	if err := needAll("prefill attention", use{"queries", q, qs, bf16Bytes}, use{"output", out, qs, bf16Bytes},
		use{"chunk keys", kc, ks, bf16Bytes}, use{"chunk values", vc, ks, bf16Bytes}); err != nil {
		return err
	}
	// A block takes 128 (position, query head) rows of one KV head's G query heads.
	rows := n * (a.HQ / a.HKV)
	dims := grid2((rows+127)/128, a.HKV, 128)
	dims.shared = uint32(prefillSharedBytes(p.Dim))
	return d.launch(fmt.Sprintf("attn_prefill_d%d", p.Dim), dims, out, q, kc, vc, p.K, p.V, a.Tables, a.Lens,
		int32(a.MaxBlocks), int32(n), int32(a.HQ), int32(a.HKV), softmaxScaleLog2(a.Scale))
}

// DecodeWorkspaceBytes is the workspace DecodeAttention needs for hq heads and splits splits.
func DecodeWorkspaceBytes(hq, dim, splits int) int64 {
	return int64(hq) * int64(splits) * int64(dim+2) * f32Bytes
}

// DecodeSplit is how decode attention cuts the heads' entries: Per entries a split, Splits
// splits a head (enough for the longest; a shorter head's last splits are empty).
type DecodeSplit struct{ Splits, Per int }

// DecodeSplits cuts total entries over all heads, the longest head holding longest, into about
// four blocks of work per multiprocessor, splits no shorter than one pool block. The same
// length a split for every head spreads the work by entries: a layer whose heads are mostly
// short (streaming heads beside a few full ones) still fills the GPU.
func (d *Device) DecodeSplits(total, longest int) DecodeSplit {
	per := (total + 4*d.sms - 1) / (4 * d.sms)
	per = max(BlockEntries, (per+BlockEntries-1)/BlockEntries*BlockEntries)
	return DecodeSplit{Splits: max(1, (longest+per-1)/per), Per: per}
}

// DecodeAttention writes out ([HQ][Dim] bf16) for one token's queries q ([HQ][Dim]) over each
// KV head's cached entries (append the token's own key and value first). Each head's entries
// are cut into sp.Splits parts of sp.Per computed in parallel and merged (split-K; the last
// part takes what is left); work holds the partial results (DecodeWorkspaceBytes). Up to 8
// query heads per KV head.
func (d *Device) DecodeAttention(out, q Buffer, p KVPool, a AttentionHeads, sp DecodeSplit, work Buffer) error {
	splits := sp.Splits
	if err := a.check("decode attention", p); err != nil {
		return err
	}
	g := a.HQ / a.HKV
	if g > 8 {
		return fmt.Errorf("cuda: decode attention: %d query heads per KV head; the kernel takes up to 8", g)
	}
	if splits <= 0 || sp.Per <= 0 {
		return fmt.Errorf("cuda: decode attention: %d splits of %d entries", splits, sp.Per)
	}
	if err := need("decode attention queries", q, a.HQ*p.Dim, bf16Bytes); err != nil {
		return err
	}
	if err := need("decode attention output", out, a.HQ*p.Dim, bf16Bytes); err != nil {
		return err
	}
	if err := need("decode attention workspace", work, int(DecodeWorkspaceBytes(a.HQ, p.Dim, splits)), 1); err != nil {
		return err
	}
	po := Buffer{Ptr: work.Ptr, Bytes: int64(a.HQ*splits*p.Dim) * f32Bytes}
	pml := Buffer{Ptr: work.Ptr + uint64(po.Bytes), Bytes: int64(a.HQ*splits*2) * f32Bytes}
	maxG := 8 // the kernel's register arrays hold 4 or 8 query heads
	if g <= 4 {
		maxG = 4
	}
	kernel := fmt.Sprintf("attn_decode_d%d_g%d", p.Dim, maxG)
	if err := d.launch(kernel, grid2(splits, a.HKV, 128), po, pml, q, p.K, p.V, a.Tables, a.Lens,
		int32(a.MaxBlocks), int32(sp.Per), int32(a.HQ), int32(a.HKV), softmaxScaleLog2(a.Scale)); err != nil {
		return err
	}
	return d.launch("attn_merge", grid1(a.HQ, p.Dim), out, po, pml, int32(splits), int32(p.Dim))
}
