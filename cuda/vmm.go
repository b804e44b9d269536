package cuda

import (
	"errors"
	"fmt"
	"os"
)

// Memory that grows in place (the driver's virtual memory management): a KV pool reserves an
// address range once and maps physical memory onto its start as it grows, so its pointers never
// change, nothing is copied, and the old and the new pool are never held at once; a pool that
// grew by copying could use only about half of the free memory. It is on with $KVFOOT_VMM=1
// (off by default until it has run on a GPU); without it, or where the driver or device lacks
// it or no address range can be reserved, pools grow by copying, as before.

const (
	attrVirtualMemoryManagement = 102 // CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED
	memAllocationTypePinned     = 1   // CU_MEM_ALLOCATION_TYPE_PINNED
	memLocationTypeDevice       = 1   // CU_MEM_LOCATION_TYPE_DEVICE
	memAccessReadWrite          = 3   // CU_MEM_ACCESS_FLAGS_PROT_READWRITE
	granularityMinimum          = 0   // CU_MEM_ALLOC_GRANULARITY_MINIMUM
	vmmEnv                      = "KVFOOT_VMM"
)

// vmmAPI is the driver's virtual memory entry points; nil functions and vmmMissing set when the
// driver lacks one.
type vmmAPI struct {
	cuMemAddressReserve           func(ptr *uint64, size, alignment, addr, flags uint64) cuResult
	cuMemAddressFree              func(ptr, size uint64) cuResult
	cuMemCreate                   func(handle *uint64, size uint64, prop *memAllocProp, flags uint64) cuResult
	cuMemRelease                  func(handle uint64) cuResult
	cuMemMap                      func(ptr, size, offset, handle, flags uint64) cuResult
	cuMemUnmap                    func(ptr, size uint64) cuResult
	cuMemSetAccess                func(ptr, size uint64, desc *memAccessDesc, count uint64) cuResult
	cuMemGetAllocationGranularity func(gran *uint64, prop *memAllocProp, option int32) cuResult
	vmmMissing                    string
}

// memAllocProp is CUmemAllocationProp (32 bytes).
type memAllocProp struct {
	typ, handleTypes int32
	locType, locID   int32
	win32            uintptr
	compression      uint8
	rdma             uint8
	usage            uint16
	reserved         [4]uint8
}

// memAccessDesc is CUmemAccessDesc (12 bytes).
type memAccessDesc struct{ locType, locID, flags int32 }

func bindVMMAPI(lib uintptr, v *vmmAPI) {
	if missing := bindOptional(lib, []optionalBind{
		{&v.cuMemAddressReserve, "cuMemAddressReserve"},
		{&v.cuMemAddressFree, "cuMemAddressFree"},
		{&v.cuMemCreate, "cuMemCreate"},
		{&v.cuMemRelease, "cuMemRelease"},
		{&v.cuMemMap, "cuMemMap"},
		{&v.cuMemUnmap, "cuMemUnmap"},
		{&v.cuMemSetAccess, "cuMemSetAccess"},
		{&v.cuMemGetAllocationGranularity, "cuMemGetAllocationGranularity"},
	}); missing != "" {
		*v = vmmAPI{vmmMissing: missing}
	}
}

// setupVMM sets d.gran, the granularity of mapped memory, when pools can grow in place
// (0 otherwise, with d.vmmNote saying why).
func (d *Device) setupVMM() error {
	switch v := os.Getenv(vmmEnv); v {
	case "1":
	case "", "0": // the default until a GPU has run it: written without one
		d.vmmNote = "growing in place is off ($" + vmmEnv + "=1 turns it on)"
		return nil
	default:
		return fmt.Errorf("$%s=%q: want 0 or 1", vmmEnv, v)
	}
	a := d.api
	if a.vmmMissing != "" {
		d.vmmNote = "off: the driver has no " + a.vmmMissing
		return nil
	}
	var ok int32
	if err := a.check("cuDeviceGetAttribute", a.cuDeviceGetAttribute(&ok, attrVirtualMemoryManagement, d.dev)); err != nil || ok == 0 {
		d.vmmNote = "off: the device does not support virtual memory management"
		return nil
	}
	prop := d.allocProp()
	var gran uint64
	if err := a.check("cuMemGetAllocationGranularity", a.cuMemGetAllocationGranularity(&gran, &prop, granularityMinimum)); err != nil {
		return err
	}
	if gran == 0 {
		return errors.New("cuda: the driver gives an allocation granularity of 0")
	}
	d.gran = gran
	return nil
}

func (d *Device) allocProp() memAllocProp {
	return memAllocProp{typ: memAllocationTypePinned, locType: memLocationTypeDevice, locID: d.dev}
}

// GrowsInPlace says whether KV pools grow without a copy (virtual memory management), and in
// words how pools grow.
func (d *Device) GrowsInPlace() (bool, string) {
	if d.gran > 0 {
		return true, fmt.Sprintf("in place (mapped in %d MiB granules)", d.gran>>20)
	}
	return false, "by copying, " + d.vmmNote
}

// region is an address range with physical memory mapped onto its start.
type region struct {
	base, reserved, mapped uint64
	maps                   []mapping
}

// mapping is one physical allocation mapped at base+off.
type mapping struct{ handle, off, size uint64 }

func (d *Device) roundUp(n uint64) uint64 { return (n + d.gran - 1) / d.gran * d.gran }

// reserveRegions reserves one address range for count regions of up to each bytes (rounded up to
// the granularity) and maps first bytes onto each. The range is freed with the last region
// (freeRegions).
func (d *Device) reserveRegions(count int, each, first uint64) ([]*region, error) {
	each = d.roundUp(each)
	var base uint64
	err := d.eager(func() error {
		return d.api.check("cuMemAddressReserve", d.api.cuMemAddressReserve(&base, each*uint64(count), 0, 0, 0))
	})
	if err != nil {
		return nil, err
	}
	regions := make([]*region, count)
	for i := range regions {
		regions[i] = &region{base: base + uint64(i)*each, reserved: each}
	}
	for _, s := range regions {
		if err := d.growRegion(s, first); err != nil {
			return nil, errors.Join(err, d.freeRegions(regions))
		}
	}
	return regions, nil
}

// growRegion maps physical memory onto s until at least bytes are mapped. On failure s is as it
// was.
func (d *Device) growRegion(s *region, bytes uint64) error {
	if bytes <= s.mapped {
		return nil
	}
	size := d.roundUp(bytes) - s.mapped
	if s.mapped+size > s.reserved {
		return fmt.Errorf("cuda: a growable buffer of %d MiB would pass its reserved %d MiB", (s.mapped+size)>>20, s.reserved>>20)
	}
	return d.eager(func() error {
		a := d.api
		prop := d.allocProp()
		var h uint64
		r := a.cuMemCreate(&h, size, &prop, 0)
		if outOfMemory(r) && d.cache.bytes > 0 { // the buffers kept for reuse may be what is missing
			if err := d.cache.release(a); err != nil {
				return err
			}
			r = a.cuMemCreate(&h, size, &prop, 0)
		}
		if err := a.check("cuMemCreate", r); err != nil {
			var free, total uint64
			if a.cuMemGetInfo(&free, &total) == 0 {
				return fmt.Errorf("allocate %d MiB on %s (%d MiB free of %d MiB): %w", size>>20, d.name, free>>20, total>>20, err)
			}
			return err
		}
		at := s.base + s.mapped
		if err := a.check("cuMemMap", a.cuMemMap(at, size, 0, h, 0)); err != nil {
			return errors.Join(err, a.check("cuMemRelease", a.cuMemRelease(h)))
		}
		desc := memAccessDesc{locType: memLocationTypeDevice, locID: d.dev, flags: memAccessReadWrite}
		if err := a.check("cuMemSetAccess", a.cuMemSetAccess(at, size, &desc, 1)); err != nil {
			return errors.Join(err, a.check("cuMemUnmap", a.cuMemUnmap(at, size)), a.check("cuMemRelease", a.cuMemRelease(h)))
		}
		s.maps = append(s.maps, mapping{handle: h, off: s.mapped, size: size})
		s.mapped += size
		return nil
	})
}

// freeRegions unmaps and releases what reserveRegions' regions mapped and frees their range.
func (d *Device) freeRegions(regions []*region) error {
	if len(regions) == 0 {
		return nil
	}
	return d.eager(func() error {
		a := d.api
		// unlike cuMemFree, unmapping does not wait for the queued work that may still read
		// the memory (a copy out of a pool that outgrew its range, GrowKVPool)
		errs := []error{a.check("cuStreamSynchronize", a.cuStreamSynchronize(d.stream))}
		for _, s := range regions {
			for _, m := range s.maps {
				errs = append(errs, a.check("cuMemUnmap", a.cuMemUnmap(s.base+m.off, m.size)),
					a.check("cuMemRelease", a.cuMemRelease(m.handle)))
			}
			s.maps, s.mapped = nil, 0
		}
		last := regions[len(regions)-1]
		errs = append(errs, a.check("cuMemAddressFree", a.cuMemAddressFree(regions[0].base, last.base+last.reserved-regions[0].base)))
		return errors.Join(errs...)
	})
}
