package cuda

import "errors"

// bufCache keeps a handle's freed buffers for reuse by size. cuMemFree waits for the work of
// every stream in the context, and a study's workers are streams of one context: a worker
// freeing its samples' caches and activations would stall all the others. A buffer from the
// cache is reused on the stream that freed it, after the work queued before its Free, so no
// wait is needed. An allocation the GPU cannot satisfy first gives the cache's buffers back.
type bufCache struct {
	bySize map[int64][]uint64
	bytes  int64 // held
	limit  int64 // the most it holds; 0: none
}

// take returns a cached buffer of exactly bytes, if there is one.
func (c *bufCache) take(bytes int64) (uint64, bool) {
	l := c.bySize[bytes]
	if len(l) == 0 {
		return 0, false
	}
	p := l[len(l)-1]
	c.bySize[bytes] = l[:len(l)-1]
	c.bytes -= bytes
	return p, true
}

// put keeps b for reuse, or says that it does not fit.
func (c *bufCache) put(b Buffer) bool {
	if c.bytes+b.Bytes > c.limit {
		return false
	}
	if c.bySize == nil {
		c.bySize = map[int64][]uint64{}
	}
	c.bySize[b.Bytes] = append(c.bySize[b.Bytes], b.Ptr)
	c.bytes += b.Bytes
	return true
}

// release frees every cached buffer.
func (c *bufCache) release(a *driver) error {
	var errs []error
	for size, l := range c.bySize {
		for _, p := range l {
			errs = append(errs, a.check("cuMemFree", a.cuMemFree(p)))
		}
		delete(c.bySize, size)
	}
	c.bytes = 0
	return errors.Join(errs...)
}

// outOfMemory says whether r is CUDA_ERROR_OUT_OF_MEMORY.
func outOfMemory(r cuResult) bool { return r == 2 }
