package server

import (
	"fmt"
	"log"
	"net/http"
	"time"

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
	// Healthy says, after a request failed with a device fault, whether the device can still
	// run: an error (a sticky CUDA error such as an illegal address, after which every call
	// fails) makes the server refuse every request and /healthz answer 503, naming it, until
	// it is restarted. It is called on the engine's goroutine only. Nil: always healthy.
	Healthy func() error
	// StepTimeout is how long one engine step (a batch's forward, or a request's cache being
	// made) may run on the device before the server takes the device for hung (a kernel that
	// never ends blocks its caller for good): every request then fails with 503
	// device_unusable, and /healthz says so, until the server is restarted. 0: 5 minutes;
	// negative: never.
	StepTimeout time.Duration
}

// stepTimeout is d's StepTimeout with its default, or 0 for none.
func (d *Device) stepTimeout() time.Duration {
	switch {
	case d == nil || d.StepTimeout < 0:
		return 0
	case d.StepTimeout == 0:
		return 5 * time.Minute
	}
	return d.StepTimeout
}

func (d *Device) hungError(since time.Duration) *apiError {
	return newError(http.StatusServiceUnavailable, "", "device_unusable",
		"the device %s has run one step for %v without finishing: it hangs; this server cannot run requests until it is restarted", d.Name, since.Round(time.Millisecond))
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

// unusable is the 503 every request gets once Healthy found the device broken (err), or nil
// while it is healthy or v was no device fault.
func (d *Device) unusable(v any) (e *apiError) {
	if d == nil || d.Fault == nil || d.Healthy == nil {
		return nil
	}
	if fault, _ := d.Fault(v); !fault {
		return nil
	}
	defer func() {
		if r := recover(); r != nil { // a query that panics says as much about the device
			e = d.unusableError(fmt.Errorf("the health query panicked: %v", r))
		}
	}()
	if err := d.Healthy(); err != nil {
		return d.unusableError(err)
	}
	return nil
}

func (d *Device) unusableError(err error) *apiError {
	return newError(http.StatusServiceUnavailable, "", "device_unusable",
		"the device %s is unusable after a failure (%v); this server cannot run requests until it is restarted", d.Name, err)
}

// closeStorage frees a request's device storage now (see Device.Storage).
func closeStorage(st kv.Storage) {
	if c, ok := st.(interface{ Close() error }); ok {
		if err := c.Close(); err != nil {
			log.Printf("kvfoot server: freeing a request's KV cache on the device: %v", err)
		}
	}
}
