package cuda

import (
	"errors"
	"fmt"
)

// KIVI storage on the GPU (kv's quant storage, docs/METHODS.md §5.7): a head's older entries are
// quantized rows of a KIVIPool, its recent ones (the float residual) stay bf16 in a KVPool. A
// quantized row holds, in this order: the key's codes, the value's codes (CodeBytes each, codes
// packed little end first within a byte, as kv packs them), the value's minima and scales (one
// float32 each per group of Group channels) and the int32 slot of its key group, whose minima
// and scales (Dim float32 each, one per channel) sit in the pool's group table. Rows move with
// Keep as KV pool entries do; a key group stays where it is while any row refers to it.

// KIVILayout is the shape of a KIVI pool's rows.
type KIVILayout struct{ Dim, Bits, Group int }

// Check says whether the kernels take this layout: head dimension 64 or 128, 2, 4 or 8 bits,
// value groups of whole bytes of codes.
func (l KIVILayout) Check() error {
	if l.Dim != 64 && l.Dim != 128 {
		return fmt.Errorf("cuda: KIVI: head dimension %d; the kernels take 64 or 128", l.Dim)
	}
	if l.Bits != 2 && l.Bits != 4 && l.Bits != 8 {
		return fmt.Errorf("cuda: KIVI: %d bits; the kernels take 2, 4 or 8", l.Bits)
	}
	if l.Group < 1 {
		return fmt.Errorf("cuda: KIVI: group of %d; want at least 1", l.Group)
	}
	if per := 8 / l.Bits; l.Group%per != 0 && l.Group < l.Dim {
		// a value group that splits a byte of codes would need two threads to write one byte
		return fmt.Errorf("cuda: KIVI: value groups of %d channels split bytes of %d-bit codes; use a multiple of %d", l.Group, l.Bits, per)
	}
	return nil
}

// CodeBytes is the bytes of one row's key (or value) codes.
func (l KIVILayout) CodeBytes() int { return (l.Dim*l.Bits + 7) / 8 }

// ValueGroups is the number of value groups (scale and minimum pairs) of a row.
func (l KIVILayout) ValueGroups() int { return (l.Dim + l.Group - 1) / l.Group }

// Offsets of a row's parts, in bytes.
func (l KIVILayout) valueCodes() int { return l.CodeBytes() }
func (l KIVILayout) valueMins() int  { return 2 * l.CodeBytes() }
func (l KIVILayout) valueScales() int {
	return l.valueMins() + 4*l.ValueGroups()
}
func (l KIVILayout) groupRef() int { return l.valueScales() + 4*l.ValueGroups() }

// RowBytes is a quantized row's bytes in the pool, rounded up to 16 so rows copy in 16-byte
// pieces.
func (l KIVILayout) RowBytes() int { return (l.groupRef() + 4 + 15) &^ 15 }

// StoredRowBytes is what a quantized row holds that kv's CPU storage counts too: codes and value
// scales (kv counts neither the group reference nor the padding).
func (l KIVILayout) StoredRowBytes() int { return 2*l.CodeBytes() + 8*l.ValueGroups() }

// GroupBytes is one key group's minima and scales.
func (l KIVILayout) GroupBytes() int { return 8 * l.Dim }

// KIVIPool is the device memory of quantized rows: Blocks·64 rows of Layout.RowBytes and a
// table of Groups key groups.
type KIVIPool struct {
	Layout KIVILayout
	Rows   Buffer
	Blocks int
	Table  Buffer
	Groups int
}

// KIVIKernels are the kernels KIVI storage launches; a device whose PTX lacks them (PTX older
// than kernels/kivi.cu) cannot hold quantized storage.
var KIVIKernels = []string{"kivi_quantize", "kivi_view", "kivi_gather", "kivi_scatter",
	"kivi_decode_d64_g4", "kivi_decode_d64_g8", "kivi_decode_d128_g4", "kivi_decode_d128_g8"}

// HasKernels reports whether every named kernel is loaded.
func (d *Device) HasKernels(names ...string) bool {
	for _, n := range names {
		if _, ok := d.funcs[n]; !ok {
			return false
		}
	}
	return true
}

// NewKIVIPool allocates a pool of blocks blocks of 64 quantized rows and groups key groups.
func (d *Device) NewKIVIPool(l KIVILayout, blocks, groups int) (KIVIPool, error) {
	if err := l.Check(); err != nil {
		return KIVIPool{}, err
	}
	if blocks <= 0 || groups <= 0 {
		return KIVIPool{}, fmt.Errorf("cuda: KIVI pool of %d blocks and %d groups: both must be positive", blocks, groups)
	}
	rows, err := d.Alloc(int64(blocks) * BlockEntries * int64(l.RowBytes()))
	if err != nil {
		return KIVIPool{}, fmt.Errorf("KIVI rows: %w", err)
	}
	table, err := d.Alloc(int64(groups) * int64(l.GroupBytes()))
	if err != nil {
		return KIVIPool{}, errors.Join(fmt.Errorf("KIVI key groups: %w", err), d.Free(rows))
	}
	return KIVIPool{Layout: l, Rows: rows, Blocks: blocks, Table: table, Groups: groups}, nil
}

// FreeKIVIPool releases a pool's memory.
func (d *Device) FreeKIVIPool(p KIVIPool) error { return errors.Join(d.Free(p.Rows), d.Free(p.Table)) }

// GrowKIVIPool returns a pool of blocks more blocks and groups more groups holding p's rows and
// groups at the same slots, and frees p; on failure p is unchanged.
func (d *Device) GrowKIVIPool(p KIVIPool, blocks, groups int) (KIVIPool, error) {
	if blocks < 0 || groups < 0 {
		return KIVIPool{}, fmt.Errorf("cuda: grow KIVI pool by %d blocks and %d groups", blocks, groups)
	}
	q, err := d.NewKIVIPool(p.Layout, p.Blocks+blocks, p.Groups+groups)
	if err != nil {
		return KIVIPool{}, err
	}
	if err := errors.Join(d.Copy(q.Rows, p.Rows), d.Copy(q.Table, p.Table)); err != nil {
		return KIVIPool{}, errors.Join(err, d.FreeKIVIPool(q))
	}
	return q, d.FreeKIVIPool(p)
}

// KIVIJob quantizes Layout.Group residual entries of one head into one key group: the keys and
// values at KV pool slots Src (in entry order) become the quantized rows Dst, their key group's
// minima and scales go to group slot Group.
type KIVIJob struct {
	Group    int32
	Src, Dst []int32
}

// KIVIQuantize runs jobs: keys per channel over each job's entries, values per entry over groups
// of channels, asymmetric min-max codes rounded to nearest even, as kv's quant storage does.
func (d *Device) KIVIQuantize(p KIVIPool, kv KVPool, jobs []KIVIJob) error {
	if len(jobs) == 0 {
		return nil
	}
	if kv.Dim != p.Layout.Dim {
		return fmt.Errorf("cuda: KIVI quantize: KV pool of dimension %d, KIVI rows of %d", kv.Dim, p.Layout.Dim)
	}
	g := p.Layout.Group
	idx := make([]int32, 0, len(jobs)*(1+2*g))
	for i, j := range jobs {
		if len(j.Src) != g || len(j.Dst) != g {
			return fmt.Errorf("cuda: KIVI quantize: job %d has %d sources and %d destinations, want %d", i, len(j.Src), len(j.Dst), g)
		}
		if j.Group < 0 || int(j.Group) >= p.Groups {
			return fmt.Errorf("cuda: KIVI quantize: job %d: group slot %d of %d", i, j.Group, p.Groups)
		}
		if err := kv.checkSlots("KIVI quantize", j.Src); err != nil {
			return err
		}
		if err := p.checkRows("KIVI quantize", j.Dst); err != nil {
			return err
		}
		idx = append(append(append(idx, j.Group), j.Src...), j.Dst...)
	}
	s, err := d.StageInts(idx)
	if err != nil {
		return err
	}
	l := p.Layout
	return d.launch("kivi_quantize", grid1(len(jobs), 128), p.Rows, p.Table, kv.K, kv.V, s,
		int32(l.Dim), int32(l.Bits), int32(l.Group), int32(l.RowBytes()))
}

func (p KIVIPool) checkRows(op string, rows []int32) error {
	for i, r := range rows {
		if r < 0 || r >= int32(p.Blocks*BlockEntries) {
			return fmt.Errorf("cuda: %s: row %d is %d, the KIVI pool has %d", op, i, r, p.Blocks*BlockEntries)
		}
	}
	return nil
}

// ViewSource names where an entry of a KIVI head is: quantized row r is r, KV pool slot s of the
// residual is -1-s; ViewSkip leaves its destination row alone.
func ViewSource(quantized bool, slot int32) int32 {
	if quantized {
		return slot
	}
	return -1 - slot
}

// ViewSkip marks a row of KIVIView's output that no entry fills (a block's tail).
const ViewSkip = int32(-1 << 31)

// KIVIView writes row i of k and v ([len(src)][Dim] bf16) from entry src[i] (ViewSource): a
// quantized row dequantized (code·scale + minimum, rounded to bf16) or a residual entry copied.
// The bf16 rows feed the existing attention and score kernels.
func (d *Device) KIVIView(k, v Buffer, p KIVIPool, kv KVPool, src []int32) error {
	if len(src) == 0 {
		return nil
	}
	if kv.Dim != p.Layout.Dim {
		return fmt.Errorf("cuda: KIVI view: KV pool of dimension %d, KIVI rows of %d", kv.Dim, p.Layout.Dim)
	}
	for i, s := range src {
		switch {
		case s == ViewSkip:
		case s >= 0 && s >= int32(p.Blocks*BlockEntries):
			return fmt.Errorf("cuda: KIVI view: entry %d is row %d, the KIVI pool has %d", i, s, p.Blocks*BlockEntries)
		case s < 0 && -1-s >= int32(kv.Blocks*BlockEntries):
			return fmt.Errorf("cuda: KIVI view: entry %d is slot %d, the KV pool has %d", i, -1-s, kv.Blocks*BlockEntries)
		}
	}
	for _, b := range []struct {
		what string
		b    Buffer
	}{{"keys", k}, {"values", v}} {
		if err := need("KIVI view "+b.what, b.b, len(src)*p.Layout.Dim, bf16Bytes); err != nil {
			return err
		}
	}
	s, err := d.StageInts(src)
	if err != nil {
		return err
	}
	l := p.Layout
	return d.launch("kivi_view", grid1(len(src), l.Dim), k, v, p.Rows, p.Table, kv.K, kv.V, s,
		int32(l.Dim), int32(l.Bits), int32(l.Group), int32(l.RowBytes()))
}

// KIVICopyWorkBytes is the workspace KIVICopy needs for moves moves.
func KIVICopyWorkBytes(l KIVILayout, moves int) int64 { return int64(moves) * int64(l.RowBytes()) }

// KIVICopy performs a PagedCache's moves on the pool's rows: it gathers every source row into
// work, then writes them to their destinations, so a destination may be another move's source.
func (d *Device) KIVICopy(p KIVIPool, moves []Move, work Buffer) error {
	if len(moves) == 0 {
		return nil
	}
	idx := make([]int32, 2*len(moves))
	for i, m := range moves {
		idx[i], idx[len(moves)+i] = m.Src, m.Dst
	}
	if err := p.checkRows("KIVI copy", idx); err != nil {
		return err
	}
	if err := need("KIVI copy workspace", work, int(KIVICopyWorkBytes(p.Layout, len(moves))), 1); err != nil {
		return err
	}
	s, err := d.StageInts(idx)
	if err != nil {
		return err
	}
	dst := Buffer{Ptr: s.Ptr + uint64(len(moves))*i32Bytes, Bytes: int64(len(moves)) * i32Bytes}
	pieces := int32(p.Layout.RowBytes() / 16)
	if err := d.launch("kivi_gather", grid1(len(moves), 32), work, p.Rows, s, pieces); err != nil {
		return err
	}
	return d.launch("kivi_scatter", grid1(len(moves), 32), p.Rows, work, dst, pieces)
}

// optionalModules are the kernel modules whose PTX may be missing: the Go side checks for their
// kernels (HasKernels) and refuses what needs them, so a tree whose PTX has not been regenerated
// since their source was added still builds and runs everything else.
var optionalModules = map[string]bool{"kivi": true}

// KIVIHeads describes one layer's KIVI heads for KIVIDecode: per KV head the block tables of its
// quantized rows (in the KIVI pool) and of its residual (in the KV pool), as PagedCache.Tables
// gives them ([HKV][MaxRowBlocks] and [HKV][MaxResBlocks] int32), and Lens [2][HKV]: each head's
// rows, then its residual entries.
type KIVIHeads struct {
	HQ, HKV                    int
	RowTables, ResTables, Lens Buffer
	MaxRowBlocks, MaxResBlocks int
	Scale                      float32
}

// KIVIDecode is DecodeAttention over KIVI heads, the quantized rows dequantized in the kernel
// (float32, not rounded to bf16) and the residual read as bf16: out ([HQ][Dim] bf16) for one
// token's queries q ([HQ][Dim]). Up to 8 query heads per KV head; work holds
// DecodeWorkspaceBytes.
func (d *Device) KIVIDecode(out, q Buffer, p KIVIPool, kvp KVPool, a KIVIHeads, sp DecodeSplit, work Buffer) error {
	l := p.Layout
	if kvp.Dim != l.Dim {
		return fmt.Errorf("cuda: KIVI decode: KV pool of dimension %d, KIVI rows of %d", kvp.Dim, l.Dim)
	}
	if a.HQ <= 0 || a.HKV <= 0 || a.HQ%a.HKV != 0 || a.HQ/a.HKV > 8 {
		return fmt.Errorf("cuda: KIVI decode: %d query heads over %d KV heads: must be positive, divisible, at most 8 a KV head", a.HQ, a.HKV)
	}
	if a.MaxRowBlocks <= 0 || a.MaxResBlocks <= 0 || sp.Splits <= 0 || sp.Per <= 0 {
		return fmt.Errorf("cuda: KIVI decode: %d and %d blocks a head, %d splits of %d", a.MaxRowBlocks, a.MaxResBlocks, sp.Splits, sp.Per)
	}
	if err := needAll("KIVI decode",
		use{"row tables", a.RowTables, a.HKV * a.MaxRowBlocks, i32Bytes}, use{"residual tables", a.ResTables, a.HKV * a.MaxResBlocks, i32Bytes},
		use{"lengths", a.Lens, 2 * a.HKV, i32Bytes}, use{"queries", q, a.HQ * l.Dim, bf16Bytes}, use{"output", out, a.HQ * l.Dim, bf16Bytes},
		use{"workspace", work, int(DecodeWorkspaceBytes(a.HQ, l.Dim, sp.Splits)), 1}); err != nil {
		return err
	}
	po := Buffer{Ptr: work.Ptr, Bytes: int64(a.HQ*sp.Splits*l.Dim) * f32Bytes}
	pml := Buffer{Ptr: work.Ptr + uint64(po.Bytes), Bytes: int64(a.HQ*sp.Splits*2) * f32Bytes}
	maxG := 8
	if a.HQ/a.HKV <= 4 {
		maxG = 4
	}
	kernel := fmt.Sprintf("kivi_decode_d%d_g%d", l.Dim, maxG)
	if err := d.launch(kernel, grid2(sp.Splits, a.HKV, 128), po, pml, q, p.Rows, p.Table, kvp.K, kvp.V, a.RowTables, a.ResTables,
		a.Lens, int32(a.MaxRowBlocks), int32(a.MaxResBlocks), int32(sp.Per), int32(a.HQ), int32(a.HKV), softmaxScaleLog2(a.Scale),
		int32(l.Bits), int32(l.Group), int32(l.RowBytes())); err != nil {
		return err
	}
	return d.launch("attn_merge", grid1(a.HQ, l.Dim), out, po, pml, int32(sp.Splits), int32(l.Dim))
}
