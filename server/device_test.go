package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/kvfoot/kvfoot/compute"
	"github.com/kvfoot/kvfoot/cuda"
	"github.com/kvfoot/kvfoot/gpu"
	"github.com/kvfoot/kvfoot/kv"
)

// fakeDevice stands in for a GPU: it keeps every cache in bf16 host storage, as the GPU keeps
// its caches in bf16, refuses what the GPU refuses (quantized storage, expanded caches), and
// counts the storages it makes and closes. A cache whose spec asks for bf16 explicitly
// panics with fault in the Append of layer 1 (mid-forward, after layer 0 of the whole batch)
// of its forward faultAt (1: the first pre-fill chunk).
type fakeDevice struct {
	mu           sync.Mutex
	made, closed int
	fault        gpu.Fault
	faultAt      int
	makeErr      error // Storage's error, when set
}

var (
	errOOM = gpu.Fault{Err: fmt.Errorf("the KV cache needs 4 more blocks: %w",
		&cuda.Error{Op: "cuMemAlloc", Code: 2, Name: "CUDA_ERROR_OUT_OF_MEMORY"})}
	errLaunch = gpu.Fault{Err: &cuda.Error{Op: "cuLaunchKernel", Code: 719, Name: "CUDA_ERROR_LAUNCH_FAILED"}}
)

func (d *fakeDevice) device() *Device {
	return &Device{
		Name: "fake:0",
		Storage: func(s kv.Shape, rep int, p kv.Precision) (kv.Storage, error) {
			if err := d.check(s, rep, p); err != nil {
				return nil, err
			}
			d.mu.Lock()
			makeErr := d.makeErr
			d.mu.Unlock()
			if makeErr != nil {
				return nil, makeErr
			}
			st, err := kv.HostStorage(s, rep, kv.Precision{Name: "bf16"})
			if err != nil {
				return nil, err
			}
			d.mu.Lock()
			d.made++
			d.mu.Unlock()
			f := &fakeStorage{Storage: st, d: d}
			if p.Name == "bf16" {
				f.faultAt = d.faultAt
			}
			return f, nil
		},
		Check:  d.check,
		Stored: gpu.StoredPrecision,
		Fault:  gpu.Classify,
	}
}

func (d *fakeDevice) check(s kv.Shape, rep int, p kv.Precision) error {
	switch {
	case p.Name == "quant":
		return errors.New("fake:0 stores KV entries in bf16; \"quant\" storage is CPU-only for now")
	case rep != 1:
		return errors.New("fake:0: caches expanded to every query head (gqa=expand) are CPU-only for now")
	}
	return nil
}

func (d *fakeDevice) counts() (made, closed int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.made, d.closed
}

// settled waits until every storage made is closed and nothing runs: a request's answer
// can reach its client just before the engine releases it.
func (d *fakeDevice) settled(t *testing.T, h *harness) (made, closed int) {
	t.Helper()
	waitFor(t, func() bool {
		made, closed := d.counts()
		return made == closed && h.s.Stats().Running == 0
	})
	return d.counts()
}

type fakeStorage struct {
	kv.Storage
	d                 *fakeDevice
	faultAt, forwards int // faultAt 0: never
	closed            bool
}

func (f *fakeStorage) Append(layer int, k, v compute.Buf, n int) {
	if f.closed {
		panic("fakeStorage: used after Close")
	}
	if layer == 1 {
		f.forwards++
		if f.forwards == f.faultAt {
			panic(f.d.fault)
		}
	}
	f.Storage.Append(layer, k, v, n)
}

func (f *fakeStorage) Close() error {
	f.d.mu.Lock()
	defer f.d.mu.Unlock()
	if !f.closed {
		f.closed = true
		f.d.closed++
	}
	return nil
}

// postIDs sends a completion of prompt ids under spec and returns the status and body.
func (h *harness) postIDs(prompt []int, spec string, maxTokens int) (int, string, http.Header) {
	b, _ := json.Marshal(map[string]any{"model": "tiny", "prompt": prompt, "max_tokens": maxTokens, "temperature": 0,
		"ignore_eos": true, "kv_policy": spec})
	req, _ := http.NewRequest("POST", h.ts.URL+"/v1/completions", strings.NewReader(string(b)))
	req.Header.Set("Authorization", "Bearer "+testKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Error(err)
		return 0, "", nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw), resp.Header
}

// A policy the device cannot hold is refused at admission with a 400 that names the spec and
// the device's reason, before any storage is made; so is such a default policy, at start.
func TestDeviceRefusal(t *testing.T) {
	d := &fakeDevice{}
	h := start(t, Config{Device: d.device()})
	_, tok := fixture(t)
	prompt := tok.EncodeWithSpecial(prose)
	for _, c := range []struct{ spec, reason string }{
		{"full+quant:bits=4", "storage is CPU-only"},
		{"snapkv:sparsity=0.5", "gqa=expand"},
	} {
		status, body, _ := h.postIDs(prompt, c.spec, 4)
		if status != 400 || !strings.Contains(body, "kv_policy_unsupported_on_device") || !strings.Contains(body, c.spec) || !strings.Contains(body, c.reason) {
			t.Errorf("%s: %d %s; want 400 kv_policy_unsupported_on_device naming the spec and %q", c.spec, status, body, c.reason)
		}
	}
	if made, _ := d.counts(); made != 0 {
		t.Errorf("%d storages made for refused requests, want 0", made)
	}
	if status, body, _ := h.postIDs(prompt, "snapkv:sparsity=0.5,gqa=mean", 4); status != 200 {
		t.Errorf("snapkv with gqa=mean: %d %s", status, body)
	}
	m, tk := fixture(t)
	if _, err := New(m, tk, Config{Policy: "full+quant:bits=8", Device: d.device()}); err == nil || !strings.Contains(err.Error(), "default policy") || !strings.Contains(err.Error(), "quant") {
		t.Errorf("a default policy the device refuses: %v", err)
	}
}

// On a device, a request reserves the bytes the device stores (bf16: 2·2·HeadDim per entry,
// not the CPU's float32), holds that many at its peak, and takes device storage only once
// it starts: a queued request holds none. Every storage is closed when its request ends.
func TestDeviceAdmission(t *testing.T) {
	d := &fakeDevice{}
	h := start(t, Config{Device: d.device(), MaxConcurrent: 1})
	_, tok := fixture(t)
	prompt := tok.EncodeWithSpecial(prose)
	const n = 6
	resume := h.pause()
	answers := make([]string, 2)
	var wg sync.WaitGroup
	for i := range answers {
		wg.Go(func() {
			status, body, _ := h.postIDs(prompt, "full", n)
			if status != 200 {
				t.Errorf("request %d: %d %s", i, status, body)
			}
			answers[i] = body
		})
	}
	waitFor(t, func() bool { st := h.s.Stats(); return st.Running == 1 && st.Queued == 1 })
	waitFor(t, func() bool { made, _ := d.counts(); return made == 1 })
	if made, _ := d.counts(); made != 1 {
		t.Errorf("%d storages made with one request running and one queued, want 1", made)
	}
	resume()
	wg.Wait()
	// tiny: 2 layers × 2 KV heads of dimension 16; every head holds the prompt and n−1
	// generated tokens, each a bf16 key and value of 16 dims
	want := int64(2*2*(len(prompt)+n-1)) * 2 * 2 * 16
	ids, rep := reference(t, prompt, "full+bf16", 32, n, nil)
	for i, body := range answers {
		var res completionResponse
		if err := json.Unmarshal([]byte(body), &res); err != nil || len(res.Choices) != 1 {
			t.Fatalf("request %d: %s", i, body)
		}
		k := res.Usage.KV
		if k.ReservedBytes != want || k.PeakBytes != want || k.PeakBytes != rep.PeakBytes || res.Choices[0].Text != tok.DecodeSkipSpecial(ids) {
			t.Errorf("request %d: %q, reserved %d and peak %d bytes; want %q, %d and %d (the meter's %d)",
				i, res.Choices[0].Text, k.ReservedBytes, k.PeakBytes, tok.DecodeSkipSpecial(ids), want, want, rep.PeakBytes)
		}
	}
	if made, closed := d.settled(t, h); made != 2 || closed != 2 {
		t.Errorf("%d storages made, %d closed; want 2 and 2", made, closed)
	}
}

// A device fault mid-forward (in layer 1, after layer 0 of the whole batch was fed) fails
// its own request with 503 when the device ran out of memory and 500 otherwise, naming the
// reason; the two requests batched with it finish with exactly the text and KV usage of a
// run on their own; every storage is closed, every reservation returned, and the server
// serves the next request.
func TestDeviceFault(t *testing.T) {
	_, tok := fixture(t)
	prompt := tok.EncodeWithSpecial(prose)
	const n = 10
	for _, c := range []struct {
		fault              gpu.Fault
		status             int
		code, message, why string
	}{
		{errOOM, 503, "device_out_of_memory", "the GPU is out of memory for this request's KV cache; retry later", "CUDA_ERROR_OUT_OF_MEMORY"},
		{errLaunch, 500, "device_error", "the device fake:0 failed on this request", "CUDA_ERROR_LAUNCH_FAILED"},
	} {
		d := &fakeDevice{fault: c.fault, faultAt: 5} // the pre-fill, then the fourth decode step
		h := start(t, Config{Device: d.device(), MaxConcurrent: 4})
		type answer struct {
			status int
			body   string
			header http.Header
		}
		specs := []string{"full", "full+bf16", "streaming:sink=2,window=8"}
		answers := make([]answer, len(specs))
		resume := h.pause() // the three start together and decode in one batch
		var wg sync.WaitGroup
		for i, spec := range specs {
			wg.Go(func() {
				a := &answers[i]
				a.status, a.body, a.header = h.postIDs(prompt, spec, n)
			})
		}
		waitFor(t, func() bool { return h.s.Stats().Running == 3 })
		resume()
		wg.Wait()
		if a := answers[1]; a.status != c.status || !strings.Contains(a.body, c.code) || !strings.Contains(a.body, c.message) ||
			!strings.Contains(a.body, c.why) || !strings.Contains(a.body, "full+bf16") {
			t.Errorf("the faulting request: %d %s; want %d %s saying %q and naming %s and the spec", a.status, a.body, c.status, c.code, c.message, c.why)
		}
		if c.status == 503 && answers[1].header.Get("Retry-After") == "" {
			t.Errorf("503 without Retry-After")
		}
		for _, i := range []int{0, 2} {
			ref := specs[i] // the device stores float32 caches in bf16
			if !strings.Contains(ref, "+") {
				ref += "+bf16"
			}
			ids, rep := reference(t, prompt, ref, 32, n, nil)
			var res completionResponse
			if err := json.Unmarshal([]byte(answers[i].body), &res); err != nil || answers[i].status != 200 || len(res.Choices) != 1 {
				t.Errorf("%s beside the fault: %d %s", specs[i], answers[i].status, answers[i].body)
				continue
			}
			k := res.Usage.KV
			if res.Choices[0].Text != tok.DecodeSkipSpecial(ids) || k.Footprint != rep.Footprint || k.Peak != rep.Peak || k.PeakBytes != rep.PeakBytes {
				t.Errorf("%s beside the fault: %q %+v, want %q and the meter's %+v", specs[i], res.Choices[0].Text, *k, tok.DecodeSkipSpecial(ids), rep)
			}
		}
		// three first storages, and the batch's three built again after the fault
		if made, closed := d.settled(t, h); made != 6 || closed != 6 {
			t.Errorf("%d storages made, %d closed; want 6 and 6", made, closed)
		}
		if st := h.s.Stats(); st.Running != 0 || st.KVBytesReserved != 0 || st.KVBytesInUse != 0 || st.KVBytesPeak > h.s.cfg.KVBudget {
			t.Errorf("after the fault: %+v, want nothing running, reserved or held, and a peak within the budget", st)
		}
		if status, body, _ := h.postIDs(prompt, "full", 2); status != 200 {
			t.Errorf("after the fault: %d %s", status, body)
		}
		if got := metric(t, h, fmt.Sprintf(`kvfoot_requests_total{code="%d",endpoint="/v1/completions"}`, c.status)); got != "1" {
			t.Errorf("%ds counted: %s, want 1", c.status, got)
		}
		if got := metric(t, h, "kvfoot_kv_bytes_in_use"); got != "0" {
			t.Errorf("KV bytes in use after every request: %s, want 0", got)
		}
	}
}

// A stream whose request fails before its first token (its pre-fill ran the device out of
// memory) is answered with the 503 itself, Retry-After included, not a 200 and an error
// event; one that fails later ends its stream with an error event.
func TestDeviceFaultStream(t *testing.T) {
	_, tok := fixture(t)
	prompt := tok.EncodeWithSpecial(prose)
	for _, c := range []struct {
		faultAt int
		status  int
	}{{1, 503}, {4, 200}} {
		d := &fakeDevice{fault: errOOM, faultAt: c.faultAt}
		h := start(t, Config{Device: d.device()})
		b, _ := json.Marshal(map[string]any{"model": "tiny", "prompt": prompt, "max_tokens": 8, "temperature": 0,
			"ignore_eos": true, "kv_policy": "full+bf16", "stream": true})
		req, _ := http.NewRequest("POST", h.ts.URL+"/v1/completions", strings.NewReader(string(b)))
		req.Header.Set("Authorization", "Bearer "+testKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body := string(raw)
		oom := strings.Contains(body, "device_out_of_memory")
		switch {
		case c.status == 503 && (resp.StatusCode != 503 || !oom || resp.Header.Get("Retry-After") == "" || strings.HasPrefix(body, "data:")):
			t.Errorf("a fault in the pre-fill: %d %s; want a plain 503 with Retry-After", resp.StatusCode, body)
		case c.status == 200 && (resp.StatusCode != 200 || !oom || !strings.HasPrefix(body, "data:") || !strings.HasSuffix(body, "data: [DONE]\n\n")):
			t.Errorf("a fault after the first tokens: %d %s; want a stream ending in an error event", resp.StatusCode, body)
		}
		d.settled(t, h)
	}
}

// A cache the device has no memory for when its request starts (Storage's error, not a panic)
// fails that request with 503; the server goes on.
func TestDeviceStorageOutOfMemory(t *testing.T) {
	d := &fakeDevice{makeErr: fmt.Errorf("fake:0: KV cache: %w", errOOM.Err)}
	h := start(t, Config{Device: d.device()})
	_, tok := fixture(t)
	status, body, header := h.postIDs(tok.EncodeWithSpecial(prose), "full", 4)
	if status != 503 || !strings.Contains(body, "device_out_of_memory") || !strings.Contains(body, "CUDA_ERROR_OUT_OF_MEMORY") || header.Get("Retry-After") == "" {
		t.Errorf("no memory for the cache: %d %s; want 503 device_out_of_memory with Retry-After", status, body)
	}
	d.mu.Lock()
	d.makeErr = nil
	d.mu.Unlock()
	if status, body, _ := h.postIDs(tok.EncodeWithSpecial(prose), "full", 4); status != 200 {
		t.Errorf("once memory is free: %d %s", status, body)
	}
	if made, closed := d.settled(t, h); made != 1 || closed != 1 || h.s.Stats().KVBytesReserved != 0 {
		t.Errorf("after the requests: %d storages made, %d closed, %+v; want 1, 1 and nothing reserved", made, closed, h.s.Stats())
	}
}
