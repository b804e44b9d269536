package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServe: `kvfoot serve` on the built-in model answers a completion with its KV
// usage, enforces the key from $KVFOOT_API_KEY, and returns cleanly on SIGTERM (here:
// its context) once drained.
func TestServe(t *testing.T) {
	t.Setenv("KVFOOT_API_KEY", "k")
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, []string{"--model", "../../models/kvfoot-small", "--addr", "127.0.0.1:0", "--kv-budget", "64MiB",
			"--policy", "streaming:sink=4,window=16", "--drain-timeout", "10s"}, func(a string) { addrc <- a })
	}()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-done:
		t.Fatal(err)
	}
	post := func(key string) *http.Response {
		req, _ := http.NewRequest("POST", "http://"+addr+"/v1/completions",
			strings.NewReader(`{"model":"kvfoot-small","prompt":"package main\n\nfunc","max_tokens":4,"temperature":0}`))
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := post("k")
	var out struct {
		Choices []struct {
			Text string `json:"text"`
		} `json:"choices"`
		Usage struct {
			CompletionTokens int `json:"completion_tokens"`
			KV               struct {
				Policy string `json:"policy"`
			} `json:"kv"`
		} `json:"usage"`
	}
	err := json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || len(out.Choices) != 1 || out.Usage.KV.Policy != "streaming:sink=4,window=16" {
		t.Errorf("status %d, %+v (%v): want a completion under the --policy", resp.StatusCode, out, err)
	}
	if resp := post(""); resp.StatusCode != 401 {
		t.Errorf("no key: status %d, want 401", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not return after SIGTERM")
	}
}

// kvfoot serve --random serves a preset's shape with random weights under the preset's name,
// with the built-in model's tokenizer: a completion of token ids comes back, every token one
// the tokenizer decodes.
func TestServeRandom(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	addrc, done := make(chan string, 1), make(chan error, 1)
	go func() {
		done <- serve(ctx, []string{"--random", "smollm2-135m", "--addr", "127.0.0.1:0", "--threads", "1"}, func(a string) { addrc <- a })
	}()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-done:
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+addr+"/v1/completions", "application/json",
		strings.NewReader(`{"model":"smollm2-135m","prompt":[1,2,3,4],"max_tokens":4,"temperature":0,"ignore_eos":true,"logprobs":0}`))
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Model   string `json:"model"`
		Choices []struct {
			Logprobs struct {
				Tokens []string `json:"tokens"`
			} `json:"logprobs"`
		} `json:"choices"`
		Usage struct {
			CompletionTokens int `json:"completion_tokens"`
		} `json:"usage"`
	}
	err = json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || out.Model != "smollm2-135m" || out.Usage.CompletionTokens != 4 || len(out.Choices) != 1 {
		t.Fatalf("status %d, %+v (%v): want 4 tokens from smollm2-135m", resp.StatusCode, out, err)
	}
	// greedy tokens are the tokenizer's (49152 − 4096 of the preset's ids are not): each has text
	for i, tok := range out.Choices[0].Logprobs.Tokens {
		if tok == "" {
			t.Errorf("token %d of %q has no text: an id past the tokenizer's vocabulary", i, out.Choices[0].Logprobs.Tokens)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve after SIGTERM: %v", err)
	}
}

func TestServeBadFlags(t *testing.T) {
	for _, c := range []struct{ args, want string }{
		{"--kv-budget lots", "--kv-budget"},
		{"--policy nonsense", "default policy"},
		{"--masks /nonexistent/m.tsv", "masks"},
		{"--addr 127.0.0.1:notaport", "--addr"},
		{"--threads -1", "--threads"},
		{"--threads 100000", "--threads"},
		{"--read-timeout 0s", "--read-timeout"},
		{"--write-timeout -1s", "--write-timeout"},
		{"--idle-timeout 0s", "--idle-timeout"},
		{"--drain-timeout 0s", "--drain-timeout"},
		{"--max-conns 0", "--max-conns"},
		{"--random llama-9z", "--random"},
	} {
		args := append([]string{"--model", "../../models/kvfoot-small"}, strings.Fields(c.args)...)
		err := serve(context.Background(), args, func(string) {})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %q", c.args, err, c.want)
		}
	}
}

// TestServeSignals runs the kvfoot binary: on SIGTERM a running stream finishes while
// new requests get 503, and the process exits 0; on SIGINT with a drain timeout the
// stream cannot meet, the stream is cut with an error event and the process exits 1.
func TestServeSignals(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the kvfoot binary")
	}
	bin := filepath.Join(t.TempDir(), "kvfoot")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, c := range []struct {
		sig       syscall.Signal
		drain     string
		maxTokens int
		code      int
	}{{syscall.SIGTERM, "60s", 24, 0}, {syscall.SIGINT, "100ms", 4000, 1}} {
		cmd := exec.Command(bin, "serve", "--model", "../../models/kvfoot-small", "--addr", "127.0.0.1:0", "--drain-timeout", c.drain)
		stderr, _ := cmd.StderrPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stderr)
		base := ""
		for base == "" && sc.Scan() {
			_, base, _ = strings.Cut(sc.Text(), "listening on ")
		}
		go io.Copy(io.Discard, stderr)
		if base == "" {
			cmd.Process.Kill()
			t.Fatalf("%v: serve printed no address", c.sig)
		}
		post := func(body string) *http.Response {
			resp, err := http.Post(base+"/completions", "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			return resp
		}
		stream := post(fmt.Sprintf(`{"model":"kvfoot-small","prompt":"package main","max_tokens":%d,"ignore_eos":true,"stream":true}`, c.maxTokens))
		br := bufio.NewReader(stream.Body)
		if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "data: ") {
			t.Fatalf("%v: first stream line %q, %v", c.sig, line, err)
		}
		cmd.Process.Signal(c.sig)
		if c.code == 0 {
			// the signal is handled asynchronously: once /healthz says draining, a new
			// request is refused
			for i := 0; ; i++ {
				h, err := http.Get(base[:len(base)-len("/v1")] + "/healthz")
				if err == nil && h.StatusCode == 503 {
					break
				}
				if i == 500 {
					t.Fatalf("%v: /healthz never said draining (%v, %v)", c.sig, h, err)
				}
				time.Sleep(10 * time.Millisecond)
			}
			if r := post(`{"model":"kvfoot-small","prompt":"a","max_tokens":1}`); r.StatusCode != 503 {
				t.Errorf("%v: a request while draining: %d, want 503", c.sig, r.StatusCode)
			}
		}
		rest, _ := io.ReadAll(br)
		stream.Body.Close()
		finished := strings.HasSuffix(string(rest), "data: [DONE]\n\n") && !strings.Contains(string(rest), `"error"`)
		if finished != (c.code == 0) {
			t.Errorf("%v, drain timeout %s: the stream ended %q; want it finished: %v", c.sig, c.drain, rest[max(0, len(rest)-200):], c.code == 0)
		}
		err := cmd.Wait()
		var ee *exec.ExitError
		if (err == nil && c.code != 0) || (err != nil && (!errors.As(err, &ee) || ee.ExitCode() != c.code)) {
			t.Errorf("%v: serve exited with %v, want status %d", c.sig, err, c.code)
		}
	}
}
