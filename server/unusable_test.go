package server

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvfoot/kvfoot/compute"
	"github.com/kvfoot/kvfoot/cuda"
	"github.com/kvfoot/kvfoot/gpu"
	"github.com/kvfoot/kvfoot/model"
)

// bufCounter is the CPU backend that frees its buffers (compute.Freer) and counts those
// held, as a GPU holds its runner's activations in device memory the collector never frees.
type bufCounter struct {
	compute.Backend
	live atomic.Int64
}

func (b *bufCounter) Alloc(n int) compute.Buf { b.live.Add(1); return b.Backend.Alloc(n) }
func (b *bufCounter) Free(compute.Buf) error  { b.live.Add(-1); return nil }

// perRunner is the buffers one runner of the tiny model holds once it has run: ten
// activation buffers, the final-normed rows and the logits.
const perRunner = 12

var errIllegal = gpu.Fault{Err: &cuda.Error{Op: "cuStreamSynchronize", Code: 700, Name: "CUDA_ERROR_ILLEGAL_ADDRESS"}}

// faultBatch starts full, full+bf16 (whose storage faults on its fifth forward) and streaming
// together on h, batched, and returns their statuses and bodies.
func faultBatch(t *testing.T, h *harness, prompt []int) (status [3]int, body [3]string) {
	resume := h.pause()
	var wg sync.WaitGroup
	for i, spec := range []string{"full", "full+bf16", "streaming:sink=2,window=8"} {
		wg.Go(func() { status[i], body[i], _ = h.postIDs(prompt, spec, 10) })
	}
	waitFor(t, func() bool { return h.s.Stats().Running == 3 })
	resume()
	wg.Wait()
	return status, body
}

func get(t *testing.T, h *harness, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", h.ts.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+testKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

// A device fault that leaves the device usable (out of memory: Healthy answers nil) fails its
// request alone; the batch buffers of the forward it broke are freed, not leaked: once every
// request is done the server holds one runner's buffers, as before the fault.
func TestDeviceFaultFreesBatchBuffers(t *testing.T) {
	_, tok := fixture(t)
	prompt := tok.EncodeWithSpecial(prose)
	m := model.NewRandom(tinyConfig, 7)
	bufs := &bufCounter{Backend: compute.CPU}
	m.SetBackend(bufs)
	d := &fakeDevice{fault: errOOM, faultAt: 5}
	dev := d.device()
	var checks atomic.Int32
	dev.Healthy = func() error { checks.Add(1); return nil }
	h := startModel(t, m, Config{Device: dev, MaxConcurrent: 4})
	status, body := faultBatch(t, h, prompt)
	if status != [3]int{200, 503, 200} {
		t.Fatalf("statuses %v, want 200, 503 (out of memory), 200:\n%s", status, strings.Join(body[:], "\n"))
	}
	if status, body, _ := h.postIDs(prompt, "full", 4); status != 200 {
		t.Errorf("after the fault: %d %s", status, body)
	}
	d.settled(t, h)
	if n := bufs.live.Load(); n != perRunner {
		t.Errorf("%d batch buffers held after the fault and the next request, want one runner's %d", n, perRunner)
	}
	if checks.Load() == 0 {
		t.Error("the device's health was never asked after its fault")
	}
	if code, body := get(t, h, "/healthz"); code != 200 || !strings.Contains(body, `"status":"ok"`) {
		t.Errorf("/healthz after a fault the device survives: %d %s", code, body)
	}
}

// A sticky device error (Healthy fails after the fault) makes the device unusable for good:
// the faulting request fails with 500 naming the fault, the requests batched with it with 503
// device_unusable, /healthz answers 503 naming the fault, every new request gets that 503
// without any storage being made, and the server goes on answering; every storage and the
// batch buffers are freed.
func TestDeviceUnusable(t *testing.T) {
	_, tok := fixture(t)
	prompt := tok.EncodeWithSpecial(prose)
	m := model.NewRandom(tinyConfig, 7)
	bufs := &bufCounter{Backend: compute.CPU}
	m.SetBackend(bufs)
	d := &fakeDevice{fault: errIllegal, faultAt: 5}
	dev := d.device()
	var checks atomic.Int32
	dev.Healthy = func() error {
		checks.Add(1)
		return errors.New("cuStreamSynchronize: CUDA_ERROR_ILLEGAL_ADDRESS")
	}
	h := startModel(t, m, Config{Device: dev, MaxConcurrent: 4})
	if code, body := get(t, h, "/healthz"); code != 200 {
		t.Fatalf("/healthz before any fault: %d %s", code, body)
	}
	if checks.Load() != 0 {
		t.Error("the device's health was asked with no fault")
	}
	status, body := faultBatch(t, h, prompt)
	if status[1] != 500 || !strings.Contains(body[1], "device_error") || !strings.Contains(body[1], "CUDA_ERROR_ILLEGAL_ADDRESS") {
		t.Errorf("the faulting request: %d %s; want 500 device_error naming the fault", status[1], body[1])
	}
	unusable := func(status int, body string) bool {
		return status == 503 && strings.Contains(body, "device_unusable") && strings.Contains(body, "fake:0") &&
			strings.Contains(body, "CUDA_ERROR_ILLEGAL_ADDRESS") && strings.Contains(body, "restarted")
	}
	for _, i := range []int{0, 2} {
		if !unusable(status[i], body[i]) {
			t.Errorf("request %d beside the fault: %d %s; want 503 device_unusable naming the device and the fault", i, status[i], body[i])
		}
	}
	made, _ := d.settled(t, h)
	code, hb := get(t, h, "/healthz")
	var health map[string]any
	if err := json.Unmarshal([]byte(hb), &health); err != nil || code != 503 || health["status"] != "device_unusable" ||
		!strings.Contains(health["error"].(string), "CUDA_ERROR_ILLEGAL_ADDRESS") {
		t.Errorf("/healthz on an unusable device: %d %s; want 503, status device_unusable and the fault", code, hb)
	}
	for _, spec := range []string{"full", "streaming:sink=2,window=8"} {
		if status, body, header := h.postIDs(prompt, spec, 4); !unusable(status, body) || header.Get("Retry-After") != "" {
			t.Errorf("a new %s request: %d %s; want 503 device_unusable without Retry-After (only a restart helps)", spec, status, body)
		}
	}
	if now, _ := d.counts(); now != made {
		t.Errorf("%d storages made for requests refused on an unusable device, want 0", now-made)
	}
	if code, _ := get(t, h, "/v1/models"); code != 200 {
		t.Errorf("/v1/models on an unusable device: %d, want 200 (the server goes on answering)", code)
	}
	if made, closed := d.counts(); made != closed {
		t.Errorf("%d storages made, %d closed", made, closed)
	}
	if n := bufs.live.Load(); n != 0 {
		t.Errorf("%d batch buffers held on an unusable device, want 0", n)
	}
	if st := h.s.Stats(); st.Running != 0 || st.KVBytesReserved != 0 || st.KVBytesInUse != 0 {
		t.Errorf("on an unusable device: %+v, want nothing running, reserved or held", st)
	}
}

// A step that never ends (a hung GPU kernel blocks the engine's goroutine for good; here the
// engine is held before its tick) makes the watchdog fail the running request, the queued
// one and every later one with 503 device_unusable, and /healthz answer 503, naming the hang.
func TestDeviceHangFailsRequests(t *testing.T) {
	_, tok := fixture(t)
	prompt := tok.EncodeWithSpecial(prose)
	dev := (&fakeDevice{}).device()
	dev.StepTimeout = 2 * time.Second
	h := startModel(t, model.NewRandom(tinyConfig, 7), Config{Device: dev, MaxConcurrent: 1})
	if status, body, _ := h.postIDs(prompt, "full", 2); status != 200 {
		t.Fatalf("before the hang: status %d: %s", status, body)
	}
	resume := h.pause()
	var wg sync.WaitGroup
	var status [2]int
	var body [2]string
	wg.Go(func() { status[0], body[0], _ = h.postIDs(prompt, "full", 4) })
	waitFor(t, func() bool { return h.s.Stats().Running == 1 })
	wg.Go(func() { status[1], body[1], _ = h.postIDs(prompt, "full", 4) })
	waitFor(t, func() bool { return h.s.Stats().Queued == 1 || h.s.eng.unusable.Load() != nil })
	wg.Wait()
	for i, what := range []string{"the running request", "the queued request"} {
		if status[i] != 503 || !strings.Contains(body[i], "device_unusable") || !strings.Contains(body[i], "hangs") {
			t.Errorf("%s: status %d, want 503 device_unusable naming the hang: %s", what, status[i], body[i])
		}
	}
	if st, b := get(t, h, "/healthz"); st != 503 || !strings.Contains(b, "hangs") {
		t.Errorf("/healthz: %d %s, want 503 naming the hang", st, b)
	}
	if st, b, _ := h.postIDs(prompt, "full", 2); st != 503 || !strings.Contains(b, "device_unusable") {
		t.Errorf("a later request: %d %s, want 503 device_unusable", st, b)
	}
	resume() // the step returns after all: the engine fails what it held, and stays refused
	waitFor(t, func() bool { return h.s.Stats().Running == 0 })
	if st, _ := get(t, h, "/healthz"); st != 503 {
		t.Errorf("/healthz after the step returned: %d, want 503 (the device is not trusted again)", st)
	}
}
