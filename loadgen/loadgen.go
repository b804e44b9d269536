// Package loadgen load-tests an OpenAI-compatible server (kvfoot serve, or any
// other): streaming completions at a fixed concurrency, with tokens/s, time to first
// token, inter-token latency and the KV usage that kvfoot reports.
package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Options describe a load test of an OpenAI-compatible server: Requests
// streaming completions, Concurrency of them in flight at a time, each a prompt of
// PromptTokens token ids and MaxTokens generated tokens (ignore_eos, so every request
// generates all of them), greedy.
type Options struct {
	// URL is the server's address as kvfoot serve prints it, http://HOST:PORT/v1, with
	// or without /v1 and a trailing slash.
	URL          string
	APIKey       string
	Model        string
	Policy       string // kv_policy of every request ("": the server's default)
	Concurrency  int
	Requests     int
	PromptTokens int
	MaxTokens    int
	Seed         int // varies the prompts
}

// Result is what a load test measured. Latencies are in seconds: TTFT from
// sending a request to its first streamed text, inter-token latency between
// consecutive text chunks of a stream.
type Result struct {
	Concurrency     int     `json:"concurrency"`
	Requests        int     `json:"requests"`
	Errors          int     `json:"errors"`
	Seconds         float64 `json:"seconds"`
	Tokens          int     `json:"completion_tokens"`
	TokensPerSecond float64 `json:"tokens_per_second"` // completion tokens
	// AllPerSecond counts prompt and completion tokens.
	AllPerSecond float64 `json:"all_tokens_per_second"`
	TTFTp50      float64 `json:"ttft_p50"`
	TTFTp99      float64 `json:"ttft_p99"`
	ITLp50       float64 `json:"itl_p50"`
	ITLp99       float64 `json:"itl_p99"`
	KVPeakBytes  int64   `json:"kv_peak_bytes"` // the largest request's
	Footprint    float64 `json:"footprint"`     // mean over requests
	FirstError   string  `json:"first_error,omitempty"`
}

// Run runs a load test.
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Concurrency < 1 || o.Requests < 1 || o.PromptTokens < 1 || o.MaxTokens < 1 {
		return Result{}, fmt.Errorf("load: concurrency %d, requests %d, prompt %d, max tokens %d: want all ≥ 1",
			o.Concurrency, o.Requests, o.PromptTokens, o.MaxTokens)
	}
	endpoint, err := CompletionsURL(o.URL)
	if err != nil {
		return Result{}, err
	}
	type result struct {
		ttft, footprint float64
		gaps            []float64
		tokens          int
		peak            int64
		err             error
	}
	results := make([]result, o.Requests)
	next := make(chan int)
	var wg sync.WaitGroup
	client := &http.Client{}
	start := time.Now()
	for range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				r := &results[i]
				r.ttft, r.gaps, r.tokens, r.peak, r.footprint, r.err = o.one(ctx, client, endpoint, i)
			}
		}()
	}
	for i := range o.Requests {
		next <- i
	}
	close(next)
	wg.Wait()
	res := Result{Concurrency: o.Concurrency, Requests: o.Requests, Seconds: time.Since(start).Seconds()}
	var ttft, gaps []float64
	for _, r := range results {
		if r.err != nil {
			res.Errors++
			if res.FirstError == "" {
				res.FirstError = r.err.Error()
			}
			continue
		}
		res.Tokens += r.tokens
		ttft = append(ttft, r.ttft)
		gaps = append(gaps, r.gaps...)
		res.KVPeakBytes = max(res.KVPeakBytes, r.peak)
		res.Footprint += r.footprint
	}
	if ok := o.Requests - res.Errors; ok > 0 {
		res.Footprint /= float64(ok)
	}
	res.TokensPerSecond = float64(res.Tokens) / res.Seconds
	res.AllPerSecond = float64(res.Tokens+(o.Requests-res.Errors)*o.PromptTokens) / res.Seconds
	res.TTFTp50, res.TTFTp99 = quantile(ttft, 0.5), quantile(ttft, 0.99)
	res.ITLp50, res.ITLp99 = quantile(gaps, 0.5), quantile(gaps, 0.99)
	return res, nil
}

// quantile is the q-quantile of xs (nearest rank), 0 for none.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	i := int(q*float64(len(xs))+0.5) - 1
	return xs[min(max(i, 0), len(xs)-1)]
}

// CompletionsURL is the completions endpoint of a server address: the URL that kvfoot
// serve prints (http://HOST:PORT/v1), or its root, each with or without a trailing
// slash.
func CompletionsURL(base string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(base))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("URL %q: want the server's address as kvfoot serve prints it, e.g. http://127.0.0.1:8080/v1", base)
	}
	p := strings.TrimRight(u.Path, "/")
	p = strings.TrimSuffix(p, "/v1")
	u.Path = p + "/v1/completions"
	return u.String(), nil
}

// apiError is the error object of an OpenAI-style response.
type apiError struct {
	Message string `json:"message"`
}

// chunk is one streamed event: text, usage with kvfoot's kv object, or an error.
type chunk struct {
	Choices []struct {
		Text string `json:"text"`
	} `json:"choices"`
	Usage *struct {
		CompletionTokens int `json:"completion_tokens"`
		KV               *struct {
			PeakBytes int64   `json:"peak_bytes"`
			Footprint float64 `json:"footprint"`
		} `json:"kv"`
	} `json:"usage"`
	Error *apiError `json:"error"`
}

// one sends request i and reads its stream.
func (o Options) one(ctx context.Context, client *http.Client, endpoint string, i int) (ttft float64, gaps []float64, tokens int, peak int64, fp float64, err error) {
	prompt := make([]int, o.PromptTokens)
	x := uint32(o.Seed*1_000_003 + i*7919 + 1)
	for k := range prompt {
		x = x*1664525 + 1013904223
		prompt[k] = int(x>>24) % 256 // byte tokens: in any byte-level vocabulary
	}
	body := map[string]any{
		"model": o.Model, "prompt": prompt, "max_tokens": o.MaxTokens, "temperature": 0, "ignore_eos": true,
		"stream": true, "stream_options": map[string]bool{"include_usage": true},
	}
	if o.Policy != "" {
		body["kv_policy"] = o.Policy
	}
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, "POST", endpoint, bytes.NewReader(b))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", "application/json")
	if o.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+o.APIKey)
	}
	sent := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error apiError `json:"error"`
		}
		json.NewDecoder(resp.Body).Decode(&e)
		err = fmt.Errorf("status %d: %s", resp.StatusCode, e.Error.Message)
		return
	}
	var last time.Time
	done := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if data == "[DONE]" {
			done = true
			break
		}
		var c chunk
		if err = json.Unmarshal([]byte(data), &c); err != nil {
			return
		}
		if c.Error != nil {
			err = fmt.Errorf("request %d: error event: %s", i, c.Error.Message)
			return
		}
		now := time.Now()
		if len(c.Choices) > 0 && c.Choices[0].Text != "" {
			if last.IsZero() {
				ttft = now.Sub(sent).Seconds()
			} else {
				gaps = append(gaps, now.Sub(last).Seconds())
			}
			last = now
		}
		if u := c.Usage; u != nil {
			tokens = u.CompletionTokens
			if u.KV != nil {
				peak, fp = u.KV.PeakBytes, u.KV.Footprint
			}
		}
	}
	switch {
	case sc.Err() != nil:
		err = sc.Err()
	case !done:
		err = fmt.Errorf("request %d: the stream ended without [DONE] (an error event?)", i)
	case tokens != o.MaxTokens:
		err = fmt.Errorf("request %d: %d tokens, want %d", i, tokens, o.MaxTokens)
	}
	return
}
