//go:build !nocuda

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvfoot/kvfoot/gpu"
)

const builtinModel = "../../models/kvfoot-small"

// serveAt runs kvfoot serve with args in this process until the test ends and returns its
// base URL.
func serveAt(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrc, done := make(chan string, 1), make(chan error, 1)
	go func() {
		done <- serve(ctx, append([]string{"--addr", "127.0.0.1:0"}, args...), func(a string) { addrc <- a })
	}()
	select {
	case a := <-addrc:
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve %v: %v", args, err)
			}
		})
		return "http://" + a
	case err := <-done:
		cancel()
		t.Fatalf("serve %v: %v", args, err)
		return ""
	}
}

// completion posts a greedy completion and returns the status and the decoded body.
func completion(t *testing.T, base, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(base+"/v1/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	return resp.StatusCode, out
}

// --device on kvfoot serve: a bad name is refused naming the flag; without a usable GPU,
// cuda exits with status 1 and a clear error, and auto says on stderr that it runs on the
// CPU, then serves.
func TestServeDevice(t *testing.T) {
	for _, bad := range []string{"gpu", "cuda:x"} {
		err := serve(context.Background(), []string{"--model", builtinModel, "--device", bad}, func(string) {})
		if err == nil || !strings.Contains(err.Error(), "--device") {
			t.Errorf("--device %s: %v, want an error naming --device", bad, err)
		}
	}
	if g, err := gpu.Open("cuda"); err == nil {
		g.Close()
		t.Skip("a GPU is present: the refusal and the fallback without one cannot be seen here")
	}
	cmd, stderr := kvfootProcess(t, t.TempDir(), "serve", "--model", builtinModel, "--addr", "127.0.0.1:0", "--device", "cuda")
	msg, _ := io.ReadAll(stderr)
	err := cmd.Wait()
	if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(msg), "--device: device cuda:") {
		t.Errorf("serve --device cuda without a GPU: %v, stderr %q; want status 1 and an error naming --device", err, msg)
	}

	_, stderr = kvfootProcess(t, t.TempDir(), "serve", "--model", builtinModel, "--addr", "127.0.0.1:0", "--device", "auto", "--threads", "1")
	first, _ := stderr.ReadString('\n')
	second, _ := stderr.ReadString('\n')
	go io.Copy(io.Discard, stderr)
	_, base, ok := strings.Cut(strings.TrimSpace(second), "listening on ")
	if !strings.HasPrefix(first, "device: cpu (no usable GPU: ") || !ok {
		t.Fatalf("serve --device auto without a GPU said %q then %q; want the CPU named, then the address", first, second)
	}
	status, out := completion(t, strings.TrimSuffix(base, "/v1"), `{"model":"kvfoot-small","prompt":"package main","max_tokens":2,"temperature":0}`)
	if status != 200 {
		t.Errorf("serve --device auto: %d %v", status, out)
	}
}

// kvfoot serve --device cuda on the built-in model: of 8 concurrent greedy completions, every
// one that differs from the CPU server's first does at a near-tie of the CPU's; the default budget is the GPU's, and the KV bytes held stayed within it; a policy
// the GPU cannot hold is refused with 400.
func TestServeGPU(t *testing.T) {
	g, err := gpu.Open("cuda")
	if err != nil {
		t.Skipf("no usable GPU: %v", err)
	}
	g.Close()
	masks := "--masks=" + builtinModel + "/masks/prulong/masks_soft.tsv"
	cpu := serveAt(t, "--model", builtinModel, "--device", "cpu", masks)
	cuda := serveAt(t, "--model", builtinModel, "--device", "cuda", masks)
	prompts := []string{
		"package main\n\nimport \"fmt\"\n\nfunc main() {", "The history of the printing press", "def fibonacci(n):",
		"SELECT name, count(*) FROM", "Once upon a time, in a small village", "#include <stdio.h>\n\nint main(void) {",
		"The three laws of thermodynamics are", "func (s *Server) Close() error {",
	}
	policies := []string{"full", "headmask:masks=masks_soft.tsv,sparsity=0.5,sink=4,window=32"}
	type result struct {
		tokens []string
		top    []map[string]float64
	}
	run := func(base string) [][]result {
		out := make([][]result, len(policies))
		for p, policy := range policies {
			out[p] = make([]result, len(prompts))
			var wg sync.WaitGroup
			for i, prompt := range prompts {
				wg.Go(func() {
					b, _ := json.Marshal(map[string]any{"model": "kvfoot-small", "prompt": prompt, "max_tokens": 24, "temperature": 0,
						"ignore_eos": true, "logprobs": 5, "kv_policy": policy})
					status, body := completion(t, base, string(b))
					var r struct {
						Choices []struct {
							Logprobs struct {
								Tokens      []string             `json:"tokens"`
								TopLogprobs []map[string]float64 `json:"top_logprobs"`
							} `json:"logprobs"`
						} `json:"choices"`
					}
					raw, _ := json.Marshal(body)
					if err := json.Unmarshal(raw, &r); status != 200 || err != nil || len(r.Choices) != 1 {
						t.Errorf("%s, %s, prompt %d: %d %v", base, policy, i, status, body)
						return
					}
					out[p][i] = result{r.Choices[0].Logprobs.Tokens, r.Choices[0].Logprobs.TopLogprobs}
				})
			}
			wg.Wait()
		}
		return out
	}
	want, got := run(cpu), run(cuda)
	for p, policy := range policies {
		same := 0
		for i := range prompts {
			w, g := want[p][i], got[p][i]
			k := 0
			for k < len(w.tokens) && k < len(g.tokens) && w.tokens[k] == g.tokens[k] {
				k++
			}
			if k == len(w.tokens) && k == len(g.tokens) {
				same++
				continue
			}
			if k >= len(w.tokens) || k >= len(g.tokens) {
				t.Errorf("%s, prompt %d: %d tokens on the CPU, %d on the GPU", policy, i, len(w.tokens), len(g.tokens))
				continue
			}
			// where they part, the GPU's choice is one of the CPU's best within a small margin.
			// Five candidates (the API's most): at a flat step the GPU's pick can be the
			// CPU's fourth (H100, 2026-12-07: "1" 0.191 nats behind "39", with "87" and
			// "2" between), which three would have called infinitely far.
			gap := math.Inf(1)
			if lp, ok := w.top[k][g.tokens[k]]; ok {
				gap = w.top[k][w.tokens[k]] - lp
			}
			t.Logf("%s, prompt %d: parts at token %d, %q on the CPU, %q on the GPU (a gap of %.3f nats on the CPU)", policy, i, k, w.tokens[k], g.tokens[k], gap)
			if gap > 0.25 {
				t.Errorf("%s, prompt %d: token %d is %q on the CPU and %q on the GPU, %.3f nats apart on the CPU: not a near-tie", policy, i, k, w.tokens[k], g.tokens[k], gap)
			}
		}
		// On the H100, 3 of these 8 (English prompts, where the built-in model's next-token
		// distribution is flat) were equal over 24 tokens, every other parting at a gap of
		// 0.05-0.18 nats: bf16 activations move logits by about 1%, so the count alone says
		// little; the near-tie check above is the test.
		t.Logf("%s: %d of %d completions equal the CPU's", policy, same, len(prompts))
	}
	// KIVI storage the GPU cannot hold: CPU-only without kivi.cu's PTX, and value groups that
	// split bytes of codes with it
	status, out := completion(t, cuda, `{"model":"kvfoot-small","prompt":"a","max_tokens":2,"kv_policy":"full+quant:bits=2,group=6"}`)
	if msg := fmt.Sprint(out); status != 400 || !strings.Contains(msg, "CPU-only") && !strings.Contains(msg, "split bytes") {
		t.Errorf("quantized storage the GPU cannot hold: %d %v; want 400 saying why", status, out)
	}
	var health struct {
		Budget int64 `json:"kv_budget_bytes"`
		InUse  int64 `json:"kv_bytes_in_use"`
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		resp, err := http.Get(cuda + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(resp.Body).Decode(&health)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if health.InUse == 0 || time.Now().After(deadline) {
			break
		}
	}
	peak := metricOf(t, cuda, "kvfoot_kv_bytes_peak")
	if health.Budget < 1<<30 || health.InUse != 0 || peak <= 0 || peak > float64(health.Budget) {
		t.Errorf("budget %d bytes, %d in use after the requests, peak %g: want a budget of GiBs from the GPU's free memory, none held, a peak within it",
			health.Budget, health.InUse, peak)
	}
}

// metricOf reads one sample of a server's /metrics.
func metricOf(t *testing.T, base, name string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	t.Fatalf("%s: no %s", base, name)
	return 0
}
