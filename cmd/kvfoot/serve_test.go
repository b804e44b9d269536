package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
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

func TestServeBadFlags(t *testing.T) {
	for _, c := range []struct{ args, want string }{
		{"--kv-budget lots", "--kv-budget"},
		{"--policy nonsense", "default policy"},
		{"--masks /nonexistent/m.tsv", "masks"},
		{"--addr 127.0.0.1:notaport", "--addr"},
	} {
		args := append([]string{"--model", "../../models/kvfoot-small"}, strings.Fields(c.args)...)
		err := serve(context.Background(), args, func(string) {})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %q", c.args, err, c.want)
		}
	}
}
