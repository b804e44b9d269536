package loadgen

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kvfoot/kvfoot/model"
	"github.com/kvfoot/kvfoot/server"
	"github.com/kvfoot/kvfoot/tokenizer"
)

// TestLoadgenURL: the address kvfoot serve prints, and its root, each with or
// without a trailing slash, lead to the completions endpoint; others are refused.
func TestLoadgenURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:8080/v1":      "http://127.0.0.1:8080/v1/completions",
		"http://127.0.0.1:8080/v1/":     "http://127.0.0.1:8080/v1/completions",
		"http://127.0.0.1:8080":         "http://127.0.0.1:8080/v1/completions",
		"http://127.0.0.1:8080/":        "http://127.0.0.1:8080/v1/completions",
		" https://example.com/kv/v1/ ":  "https://example.com/kv/v1/completions",
		"http://[::1]:8080/v1":          "http://[::1]:8080/v1/completions",
		"127.0.0.1:8080":                "",
		"ftp://127.0.0.1/v1":            "",
		"http:///v1":                    "",
		"http://127.0.0.1:8080/v1?x=1":  "",
		"http://127.0.0.1:8080/v1#frag": "",
	} {
		got, err := CompletionsURL(in)
		if got != want || (err != nil) != (want == "") {
			t.Errorf("CompletionsURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// TestLoadgenRun: a load test against kvfoot's server (a tiny random-weight model) runs
// every request to its last token and reports full attention's KV usage, computed
// here by hand; a request the server refuses is counted as an error with its message.
func TestLoadgenRun(t *testing.T) {
	cfg := model.Config{
		Arch: "LlamaForCausalLM", Hidden: 64, Intermediate: 128, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 16,
		Vocab: 4096, NormEps: 1e-5, MaxPositions: 512, Rope: model.Rope{Theta: 10000, Type: "default", Factor: 1},
		BOS: 4088, EOS: []int{4089},
	}
	tok, err := tokenizer.Load("../models/kvfoot-small")
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.New(model.NewRandom(cfg, 3), tok, server.Config{ModelName: "tiny", APIKey: "k", Chunk: 16})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	defer s.Close()
	defer ts.Close()
	const prompt, maxTokens = 20, 5
	o := Options{URL: ts.URL + "/v1/", APIKey: "k", Model: "tiny", Concurrency: 3, Requests: 7, PromptTokens: prompt, MaxTokens: maxTokens}
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	// the cache ends holding the prompt and all generated tokens but the last, in 2
	// layers × 2 KV heads, a key and a value of 16 float32 each
	peak := int64(prompt+maxTokens-1) * 2 * 2 * 2 * 16 * 4
	if res.Requests != 7 || res.Errors != 0 || res.Tokens != 7*maxTokens || res.KVPeakBytes != peak || res.Footprint != 1 ||
		res.TTFTp50 <= 0 || res.ITLp50 <= 0 {
		t.Errorf("result %+v: want 7 requests of %d tokens, no errors, KV peak %d bytes, footprint 1, latencies", res, maxTokens, peak)
	}
	o.Model = "other"
	res, err = Run(context.Background(), o)
	if err != nil || res.Errors != 7 || !strings.Contains(res.FirstError, "404") || !strings.Contains(res.FirstError, "other") {
		t.Errorf("unknown model: %+v, %v; want 7 errors, the first the server's 404", res, err)
	}
	if _, err := Run(context.Background(), Options{URL: "localhost:1", Concurrency: 1, Requests: 1, PromptTokens: 1, MaxTokens: 1}); err == nil {
		t.Error("a URL without scheme: no error")
	}
}
