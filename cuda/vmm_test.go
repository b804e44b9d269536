package cuda

import (
	"errors"
	"strings"
	"testing"
)

// fakeVMM is the driver's virtual memory on the CPU: reserved ranges, physical allocations and
// their mappings, with the rules the driver enforces (a mapping inside a reservation, on a free
// range; unmapping what was mapped; releasing a handle once).
type fakeVMM struct {
	t        *testing.T
	gran     uint64
	next     uint64
	reserved map[uint64]uint64 // base → size
	handles  map[uint64]uint64 // live handle → size
	mapped   map[uint64]uint64 // address → size
	access   map[uint64]uint64 // address → size given read-write access
	failCall string            // this entry point's failAt-th call from now fails with out of memory (2)
	failAt   int
	noVA     bool   // reservations fail
	copies   int    // device-to-device copies
	allocs   int    // cuMemAlloc calls
	frees    int    // cuMemFree calls
	syncs    int    // stream synchronisations
	unmapped []int  // syncs seen by each unmap
	next0    uint64 // cuMemAlloc's last pointer
	memFree  uint64 // the largest allocation cuMemAlloc makes; 0: any
}

func (f *fakeVMM) fail(name string) bool {
	if f.failCall != name {
		return false
	}
	f.failAt--
	if f.failAt == 0 {
		f.failCall = ""
		return true
	}
	return false
}

func newVMMDevice(t *testing.T) (*Device, *fakeVMM) {
	f := &fakeVMM{t: t, gran: 2 << 20, next: 1 << 40, reserved: map[uint64]uint64{}, handles: map[uint64]uint64{},
		mapped: map[uint64]uint64{}, access: map[uint64]uint64{}}
	a := &driver{}
	a.cuGetErrorName = func(cuResult, **byte) cuResult { return 1 }
	a.cuCtxSetCurrent = func(uintptr) cuResult { return 0 }
	a.cuMemGetInfo = func(free, total *uint64) cuResult { *free, *total = 1<<30, 1<<30; return 0 }
	a.cuDeviceGetAttribute = func(v *int32, attr, _ int32) cuResult {
		if attr != attrVirtualMemoryManagement {
			t.Errorf("attribute %d asked", attr)
		}
		*v = 1
		return 0
	}
	a.cuMemGetAllocationGranularity = func(g *uint64, p *memAllocProp, _ int32) cuResult {
		if p.typ != memAllocationTypePinned || p.locType != memLocationTypeDevice {
			t.Errorf("granularity of allocation properties %+v", *p)
		}
		*g = f.gran
		return 0
	}
	a.cuMemAddressReserve = func(p *uint64, size, _, _, _ uint64) cuResult {
		if f.noVA {
			return 2
		}
		if size%f.gran != 0 {
			t.Errorf("reserve %d bytes: not whole granules", size)
		}
		*p = f.next
		f.reserved[f.next] = size
		f.next += size + f.gran
		return 0
	}
	a.cuMemAddressFree = func(p, size uint64) cuResult {
		if f.reserved[p] != size {
			t.Errorf("free range %#x of %d bytes; reserved: %v", p, size, f.reserved)
			return 1
		}
		delete(f.reserved, p)
		return 0
	}
	a.cuMemCreate = func(h *uint64, size uint64, _ *memAllocProp, _ uint64) cuResult {
		if f.fail("cuMemCreate") {
			return 2
		}
		if size%f.gran != 0 {
			t.Errorf("create %d bytes: not whole granules", size)
		}
		f.next++
		*h = f.next
		f.handles[*h] = size
		return 0
	}
	a.cuMemRelease = func(h uint64) cuResult {
		if _, ok := f.handles[h]; !ok {
			t.Errorf("release of handle %d, not live", h)
			return 1
		}
		delete(f.handles, h)
		return 0
	}
	a.cuMemMap = func(p, size, _, h, _ uint64) cuResult {
		if f.fail("cuMemMap") {
			return 2
		}
		if f.handles[h] != size {
			t.Errorf("map %d bytes of handle %d (%d bytes)", size, h, f.handles[h])
		}
		inside := false
		for b, s := range f.reserved {
			inside = inside || (p >= b && p+size <= b+s)
		}
		for q, s := range f.mapped {
			if p < q+s && q < p+size {
				t.Errorf("map [%#x, +%d) over the mapping [%#x, +%d)", p, size, q, s)
			}
		}
		if !inside {
			t.Errorf("map [%#x, +%d) outside every reserved range", p, size)
		}
		f.mapped[p] = size
		return 0
	}
	a.cuMemUnmap = func(p, size uint64) cuResult {
		f.unmapped = append(f.unmapped, f.syncs)
		if f.mapped[p] != size {
			t.Errorf("unmap [%#x, +%d): not a mapping", p, size)
			return 1
		}
		delete(f.mapped, p)
		delete(f.access, p)
		return 0
	}
	a.cuMemSetAccess = func(p, size uint64, d *memAccessDesc, n uint64) cuResult {
		if n != 1 || d.flags != memAccessReadWrite || d.locType != memLocationTypeDevice || f.mapped[p] != size {
			t.Errorf("access to [%#x, +%d): %+v (%d), mapped %d", p, size, *d, n, f.mapped[p])
		}
		f.access[p] = size
		return 0
	}
	a.cuMemAlloc = func(p *uint64, size uint64) cuResult {
		if f.memFree > 0 && size > f.memFree {
			return 2
		}
		f.allocs++
		f.next0 += 0x100000
		*p = f.next0
		return 0
	}
	a.cuMemFree = func(uint64) cuResult { f.frees++; return 0 }
	a.cuStreamSynchronize = func(uintptr) cuResult { f.syncs++; return 0 }
	a.cuMemcpyDtoDAsync = func(uint64, uint64, uint64, uintptr) cuResult { f.copies++; return 0 }
	d := &Device{api: a, name: "fake GPU", totalBytes: 1 << 30}
	d.initGraphs(false)
	return d, f
}

// A pool that grows in place keeps its pointers, copies nothing, maps whole granules onto the
// ends of its K and V regions and gives everything back when freed; a failed growth leaves the
// pool usable as it was; past its reserved range, or without one, it grows by copying.
func TestKVPoolGrowsInPlace(t *testing.T) {
	t.Setenv(vmmEnv, "1")
	d, f := newVMMDevice(t)
	if err := d.setupVMM(); err != nil || d.gran != f.gran {
		t.Fatalf("setup: %v, granularity %d", err, d.gran)
	}
	if in, how := d.GrowsInPlace(); !in || !strings.Contains(how, "in place") {
		t.Fatalf("GrowsInPlace %v %q", in, how)
	}
	const block = BlockEntries * 128 * 2 // one block of K (or V) at head dim 128: 16 KiB
	p, err := d.NewKVPool(10, 128)
	if err != nil {
		t.Fatal(err)
	}
	if !p.GrowsInPlace() || p.K.Bytes != 10*block || p.V.Bytes != 10*block || p.V.Ptr-p.K.Ptr != 512<<20 {
		t.Fatalf("pool %+v: want K and V of 10 blocks, half a GiB apart", p)
	}
	if len(f.reserved) != 1 || len(f.mapped) != 2 || len(f.access) != 2 {
		t.Fatalf("after the first pool: %d ranges, %d mappings, %d with access; want 1, 2, 2", len(f.reserved), len(f.mapped), len(f.access))
	}
	k, v := p.K.Ptr, p.V.Ptr
	q, err := d.GrowKVPool(p, 200) // 210 blocks: 3.3 MiB, a second granule each
	if err != nil {
		t.Fatal(err)
	}
	if q.K.Ptr != k || q.V.Ptr != v || q.Blocks != 210 || q.K.Bytes != 210*block || f.copies != 0 {
		t.Fatalf("grown pool %+v after %d copies: want the same pointers, 210 blocks, no copy", q, f.copies)
	}
	if f.mapped[k+f.gran] != f.gran || f.mapped[v+f.gran] != f.gran {
		t.Fatalf("mappings %v: want a granule after each region's first", f.mapped)
	}
	r, err := d.GrowKVPool(q, 10) // 220 blocks: still within 4 MiB, nothing mapped
	if err != nil || len(f.mapped) != 4 || r.Blocks != 220 {
		t.Fatalf("growth within the mapped memory: %v, %d mappings, %d blocks", err, len(f.mapped), r.Blocks)
	}
	live := len(f.handles)
	f.failCall, f.failAt = "cuMemMap", 1 // K's mapping fails
	if _, err := d.GrowKVPool(r, 1000); err == nil || !strings.Contains(err.Error(), "KV pool keys") {
		t.Fatalf("a failed map: %v", err)
	}
	if len(f.handles) != live || len(f.mapped) != 4 {
		t.Fatalf("a failed map left %d handles and %d mappings, had %d and 4", len(f.handles), len(f.mapped), live)
	}
	f.failCall, f.failAt = "cuMemCreate", 2 // K grows, V cannot
	_, err = d.GrowKVPool(r, 1000)
	if err == nil || !strings.Contains(err.Error(), "KV pool values") || !strings.Contains(err.Error(), "1024 MiB free of 1024 MiB") {
		t.Fatalf("out of memory: %v", err)
	}
	if _, err := d.GrowKVPool(r, 1); err != nil || r.K.Ptr != k {
		t.Fatalf("the pool after a failed growth: %v", err)
	}
	f.unmapped = nil
	syncs := f.syncs
	big, err := d.GrowKVPool(r, 40000) // 631 MiB: past the half GiB each reserved, so a copy
	if err != nil || f.copies != 2 || big.K.Ptr == k || !big.GrowsInPlace() || len(f.reserved) != 1 {
		t.Fatalf("growth past the reserved range: %v, %d copies, %d ranges", err, f.copies, len(f.reserved))
	}
	if len(f.unmapped) == 0 || f.unmapped[0] == syncs {
		t.Fatalf("the old pool's regions unmapped after %v syncs, %d before the copy: want a sync between", f.unmapped, syncs)
	}
	r = big
	f.unmapped = nil
	syncs = f.syncs
	if err := d.FreeKVPool(r); err != nil {
		t.Fatal(err)
	}
	for _, s := range f.unmapped {
		if s == syncs {
			t.Fatal("a region was unmapped before the stream was synchronised")
		}
	}
	if len(f.reserved)+len(f.handles)+len(f.mapped)+len(f.access) != 0 {
		t.Fatalf("after free: ranges %v, handles %v, mappings %v", f.reserved, f.handles, f.mapped)
	}

	f.noVA = true // no address range: a pool that copies
	p, err = d.NewKVPool(10, 64)
	if err != nil || p.GrowsInPlace() || f.allocs != 2 {
		t.Fatalf("without address space: %v, in place %v, %d allocations", err, p.GrowsInPlace(), f.allocs)
	}
	if _, err := d.GrowKVPool(p, 10); err != nil || f.copies != 4 {
		t.Fatalf("growth by copy: %v, %d copies", err, f.copies)
	}
}

func TestVMMChoice(t *testing.T) {
	d, _ := newVMMDevice(t)
	t.Setenv(vmmEnv, "0")
	if err := d.setupVMM(); err != nil || d.gran != 0 {
		t.Fatalf("$KVFOOT_VMM=0: %v, granularity %d", err, d.gran)
	}
	if in, how := d.GrowsInPlace(); in || !strings.Contains(how, "KVFOOT_VMM=1") {
		t.Fatalf("GrowsInPlace %v %q", in, how)
	}
	t.Setenv(vmmEnv, "yes")
	if err := d.setupVMM(); err == nil || !strings.Contains(err.Error(), `"yes"`) {
		t.Fatalf("$KVFOOT_VMM=yes: %v", err)
	}
	d.api.vmmMissing = "cuMemMap"
	t.Setenv(vmmEnv, "1")
	if err := d.setupVMM(); err != nil || d.gran != 0 {
		t.Fatalf("a driver without cuMemMap: %v, granularity %d", err, d.gran)
	}
	if _, how := d.GrowsInPlace(); !strings.Contains(how, "cuMemMap") {
		t.Fatalf("GrowsInPlace says %q", how)
	}
}

// Freed buffers wait in the handle's cache for an allocation of their size, without a driver
// call (cuMemFree would wait for every worker's stream); past the cache's limit they go back
// to the driver; an allocation that fails for memory gets the cache's buffers freed and is
// tried again; MemInfo counts what the cache holds; Close frees it.
func TestBufferCache(t *testing.T) {
	d, f := newVMMDevice(t)
	d.cache.limit = 1 << 20
	a, err := d.Alloc(512 << 10)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := d.Alloc(256 << 10)
	if err := errors.Join(d.Free(a), d.Free(b)); err != nil || f.frees != 0 || d.cache.bytes != 768<<10 {
		t.Fatalf("free into the cache: %v, %d driver frees, %d bytes cached", err, f.frees, d.cache.bytes)
	}
	if free, _, _ := d.MemInfo(); free != 1<<30+768<<10 {
		t.Errorf("MemInfo's free %d: want the driver's 1 GiB and the cache's 768 KiB", free)
	}
	c, _ := d.Alloc(256 << 10)
	if c.Ptr != b.Ptr || f.allocs != 2 {
		t.Fatalf("an allocation of a cached size: %#x after %d driver allocations, want %#x after 2", c.Ptr, f.allocs, b.Ptr)
	}
	big, _ := d.Alloc(600 << 10)
	if err := d.Free(big); err != nil || f.frees != 1 {
		t.Fatalf("a buffer past the cache's limit: %v, %d driver frees, want 1", err, f.frees)
	}
	f.memFree = 1 << 20 // a 2 MiB allocation fails until the cache's 512 KiB are given back... and fails still
	if _, err := d.Alloc(2 << 20); err == nil || d.cache.bytes != 0 || f.frees != 2 {
		t.Fatalf("out of memory: %v, %d bytes still cached, %d driver frees", err, d.cache.bytes, f.frees)
	}
	f.memFree = 0
	if err := d.Free(c); err != nil || d.cache.bytes != 256<<10 {
		t.Fatal(err)
	}
	if err := d.cache.release(d.api); err != nil || f.frees != 3 || d.cache.bytes != 0 {
		t.Fatalf("release: %v, %d driver frees", err, f.frees)
	}
}
