package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// soakBodies are the requests a soak cycles through: both endpoints, streamed and
// not, several policies, and requests the server refuses.
var soakBodies = []struct{ path, body string }{
	{"/v1/completions", `{"model":"tiny","prompt":"a b c","max_tokens":2,"ignore_eos":true}`},
	{"/v1/completions", `{"model":"tiny","prompt":"a b c d e f g","max_tokens":3,"ignore_eos":true,"stream":true,"kv_policy":"streaming:sink=1,window=2"}`},
	{"/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":2,"ignore_eos":true,"kv_policy":"snapkv:sparsity=0.5,window=2+quant:bits=4,group=8,residual=8"}`},
	{"/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":2,"stream":true,"logprobs":true,"top_logprobs":2}`},
	{"/v1/completions", `{"model":"tiny","prompt":"a","kv_policy":"nonsense"}`},
	{"/v1/completions", `{"model":"tiny","prompt":`},
}

// soak sends n requests, conc at a time, and cancels every seventh mid-way.
func soak(t *testing.T, h *harness, n, conc int) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc}}
	defer client.CloseIdleConnections()
	next := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	for range conc {
		wg.Go(func() {
			for i := range next {
				b := soakBodies[i%len(soakBodies)]
				ctx, cancel := context.WithCancel(context.Background())
				req, _ := http.NewRequestWithContext(ctx, "POST", h.ts.URL+b.path, strings.NewReader(b.body))
				req.Header.Set("Authorization", "Bearer "+testKey)
				resp, err := client.Do(req)
				status := 0
				if err == nil {
					status = resp.StatusCode
					if i%7 == 0 {
						cancel()
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				cancel()
				mu.Lock()
				statuses[status]++
				mu.Unlock()
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if statuses[0] > 0 || statuses[500] > 0 || statuses[200] == 0 {
		t.Errorf("statuses %v: want no transport errors, no 500s", statuses)
	}
}

// heapAndGoroutines settles the server and returns the heap in use after a GC and
// the number of goroutines.
func heapAndGoroutines(h *harness) (uint64, int) {
	waitIdle := time.Now().Add(10 * time.Second)
	for h.s.Stats().Running > 0 && time.Now().Before(waitIdle) {
		time.Sleep(10 * time.Millisecond)
	}
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse, runtime.NumGoroutine()
}

// TestSoak: six thousand requests over loopback (some refused, some cut by their
// client) leave nothing running or reserved, and the heap in use and the goroutines
// where a warm-up left them, within a generous margin.
func TestSoak(t *testing.T) {
	h := start(t, Config{MaxConcurrent: 8, MaxQueue: 64})
	soak(t, h, 300, 8) // warm-up: buffers, pools, connections
	heap0, g0 := heapAndGoroutines(h)
	const n = 6000
	soak(t, h, n, 8)
	heap1, g1 := heapAndGoroutines(h)
	st := h.s.Stats()
	if st.Running != 0 || st.Queued != 0 || st.KVBytesReserved != 0 || st.KVBytesInUse != 0 {
		t.Errorf("after the soak: %+v, want nothing running, queued, reserved or held", st)
	}
	// a request's cache, meter and job are several KiB: n of them leaked are well
	// over the margin
	const margin = 8 << 20
	if heap1 > heap0+margin {
		t.Errorf("heap in use %s after %d requests, %s before: grew more than %s", mib(heap1), n, mib(heap0), mib(margin))
	}
	if g1 > g0+8 {
		t.Errorf("%d goroutines after %d requests, %d before", g1, n, g0)
	}
	t.Logf("heap in use %s → %s, goroutines %d → %d", mib(heap0), mib(heap1), g0, g1)
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
