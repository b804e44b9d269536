package server

import (
	"log"
	"net/http"

	"github.com/kvfoot/kvfoot/kv"
)

// Device is where the requests' KV caches are kept when not in host memory: a GPU. Package
// server does not import the GPU's package (a CPU-only build links no driver); kvfoot serve
// fills this in. The forward runs wherever the model's backend is (model.SetBackend).
type Device struct {
	Name string // for messages: "cuda:0 (NVIDIA H100 80GB HBM3)"
	// Storage makes a request's cache storage on the device (kv.WithStorage). A storage
	// with a Close method is closed when its request ends, so that the next request finds
	// its memory free.
	Storage kv.StorageMaker
	// Check says, allocating nothing, whether Storage takes a cache of this stored geometry
	// and precision (Storage's arguments): a request whose policy it refuses gets a 400 at
	// admission instead of failing mid-stream. Nil: Storage's own refusals surface when the
	// request starts.
	Check func(s kv.Shape, rep int, p kv.Precision) error
	// Stored is the precision Storage keeps entries of precision p in (a GPU keeps float32
	// entries in bf16): the admission predicts a request's bytes in it. Nil: p.
	Stored func(p kv.Precision) kv.Precision
	// Fault says whether v, a panic inside a forward or an error of Storage, is a failure
	// of the device, and whether the device ran out of memory. Such a request fails with 503
	// (out of memory: retry later) or 500, naming the reason; the others go on.
	Fault func(v any) (fault, outOfMemory bool)
}

// storedFacts are f with the precision the device stores, for the admission's prediction.
func (d *Device) storedFacts(f *kv.Facts) *kv.Facts {
	if d == nil || d.Stored == nil {
		return f
	}
	g := *f
	g.Precision = d.Stored(f.Precision)
	return &g
}

// check is the 400 a request gets when the device cannot hold its policy's cache.
func (d *Device) check(s kv.Shape, f *kv.Facts) *apiError {
	if d == nil || d.Check == nil {
		return nil
	}
	rep := f.StoredHeads / s.KVHeads
	s.KVHeads = f.StoredHeads // the geometry kv.New hands the storage maker
	if err := d.Check(s, rep, f.Precision); err != nil {
		return newError(http.StatusBadRequest, "kv_policy", "kv_policy_unsupported_on_device",
			"kv_policy %q cannot run on this server's device: %v", f.Spec, err)
	}
	return nil
}

// failure is the error a request gets when the engine failed on it with v (a panic value):
// 503 when the device ran out of memory, 500 naming the device's failure or the panic.
func (d *Device) failure(policy string, v any) *apiError {
	if d != nil && d.Fault != nil {
		if fault, oom := d.Fault(v); oom {
			e := newError(http.StatusServiceUnavailable, "kv_policy", "device_out_of_memory",
				"the GPU is out of memory for this request's KV cache; retry later (kv_policy %q: %v)", policy, v)
			e.RetryAfter = 1
			return e
		} else if fault {
			return newError(http.StatusInternalServerError, "kv_policy", "device_error",
				"kv_policy %q: the device %s failed on this request: %v; the server goes on", policy, d.Name, v)
		}
	}
	return panicError(policy, v)
}

// closeStorage frees a request's device storage now (see Device.Storage).
func closeStorage(st kv.Storage) {
	if c, ok := st.(interface{ Close() error }); ok {
		if err := c.Close(); err != nil {
			log.Printf("kvfoot server: freeing a request's KV cache on the device: %v", err)
		}
	}
}
