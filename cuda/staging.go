package cuda

import (
	"errors"
	"fmt"
	"unsafe"
)

// staging is a pinned host arena mirrored by a device arena. Small lists that kernels read
// (token ids, cache slots, block tables, positions) are copied into it and sent with
// asynchronous copies in the stream's order, so a forward pass queues its kernels without
// waiting for the GPU; space is reused only once the stream has been waited for (Sync,
// Download), when every staged copy has landed. In graph mode a captured copy reads the arena
// when its segment's graph runs, which is launched at the latest by that wait: the rule holds.
type staging struct {
	host unsafe.Pointer // pinned, cuMemAllocHost
	dev  Buffer
	used int64
}

const stagingMin = 8 << 20

func (s *staging) free(a *driver) error {
	var errs []error
	if s.host != nil {
		errs = append(errs, a.check("cuMemFreeHost", a.cuMemFreeHost(s.host)))
	}
	if s.dev.Ptr != 0 {
		errs = append(errs, a.check("cuMemFree", a.cuMemFree(s.dev.Ptr)))
	}
	*s = staging{}
	return errors.Join(errs...)
}

// reserve returns the offset of bytes of arena space, waiting for the stream (and growing the
// arena) when it is full.
func (d *Device) reserve(bytes int64) (int64, error) {
	size := (bytes + 255) &^ 255 // keep every list 256-byte aligned
	s := &d.stg
	if s.used+size <= s.dev.Bytes {
		off := s.used
		s.used += size
		return off, nil
	}
	if err := d.Sync(); err != nil { // resets used; launches a segment under capture first
		return 0, err
	}
	if size > s.dev.Bytes {
		grown := max(size, 2*s.dev.Bytes, stagingMin)
		err := d.do(func() error {
			a := d.api
			if err := s.free(a); err != nil {
				return err
			}
			if err := a.check("cuMemAllocHost", a.cuMemAllocHost(&s.host, uint64(grown))); err != nil {
				s.host = nil
				return fmt.Errorf("staging %d bytes of pinned host memory: %w", grown, err)
			}
			if err := a.check("cuMemAlloc", a.cuMemAlloc(&s.dev.Ptr, uint64(grown))); err != nil {
				return errors.Join(fmt.Errorf("staging %d bytes of device memory: %w", grown, err), s.free(a))
			}
			s.dev.Bytes = grown
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	s.used = size
	return 0, nil
}

// send copies v into the arena at off and queues its copy to device address dst.
func (d *Device) send(v []int32, off int64, dst uint64) error {
	n := len(v) * i32Bytes
	return d.do(func() error {
		if err := d.capture(nodeCopy, 0); err != nil {
			return err
		}
		src := unsafe.Add(d.stg.host, off)
		copy(unsafe.Slice((*int32)(src), len(v)), v)
		if err := d.api.check("cuMemcpyHtoDAsync", d.api.cuMemcpyHtoDAsync(dst, src, uint64(n), d.stream)); err != nil {
			return d.abortSegment(err)
		}
		return nil
	})
}

// StageInts sends v to the device in the stream's order and returns where it lands: valid for
// the kernels queued before the next Sync or Download.
func (d *Device) StageInts(v []int32) (Buffer, error) {
	if len(v) == 0 {
		return Buffer{}, errors.New("cuda: staging an empty list")
	}
	n := int64(len(v)) * i32Bytes
	off, err := d.reserve(n)
	if err != nil {
		return Buffer{}, err
	}
	b := Buffer{Ptr: d.stg.dev.Ptr + uint64(off), Bytes: n}
	return b, d.send(v, off, b.Ptr)
}

// UploadInts copies v to the start of dst in the stream's order, after the queued work and
// before the work queued next, without waiting for the GPU.
func (d *Device) UploadInts(dst Buffer, v []int32) error {
	n := int64(len(v)) * i32Bytes
	if n > dst.Bytes {
		return fmt.Errorf("cuda: upload %d bytes into a %d-byte buffer", n, dst.Bytes)
	}
	if n == 0 {
		return nil
	}
	off, err := d.reserve(n)
	if err != nil {
		return err
	}
	return d.send(v, off, dst.Ptr)
}
