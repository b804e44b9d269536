package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/kvfoot/kvfoot/footprint"
	"github.com/kvfoot/kvfoot/kv"
	"github.com/kvfoot/kvfoot/model"
	"github.com/kvfoot/kvfoot/tokenizer"
)

// The tests run a tiny random-weight model with the built-in model's tokenizer (and
// its Llama 3 chat template) behind a real loopback listener, and talk to it with
// the official OpenAI Go client.

const builtin = "../models/kvfoot-small"

var tinyConfig = model.Config{
	Arch: "LlamaForCausalLM", Hidden: 64, Intermediate: 128, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 16,
	Vocab: 4096, NormEps: 1e-5, MaxPositions: 512, Rope: model.Rope{Theta: 10000, Type: "default", Factor: 1},
	BOS: 4088, EOS: []int{4089},
}

var (
	fixtureOnce sync.Once
	tinyModel   *model.Model
	testTok     *tokenizer.Tokenizer
	fixtureErr  error
)

func fixture(t testing.TB) (*model.Model, *tokenizer.Tokenizer) {
	t.Helper()
	fixtureOnce.Do(func() {
		tinyModel = model.NewRandom(tinyConfig, 7)
		testTok, fixtureErr = tokenizer.Load(builtin)
	})
	if fixtureErr != nil {
		t.Fatal(fixtureErr)
	}
	return tinyModel, testTok
}

const testKey = "test-key"

type harness struct {
	s      *Server
	ts     *httptest.Server
	client openai.Client
	gate   *sync.Mutex // held: the engine waits before its next tick
	t      *testing.T
}

// start serves cfg (model name "tiny", API key testKey unless set) on loopback.
func start(t *testing.T, cfg Config) *harness {
	t.Helper()
	m, _ := fixture(t)
	return startModel(t, m, cfg)
}

// startModel is start with another model (the fixture's tokenizer).
func startModel(t *testing.T, m *model.Model, cfg Config) *harness {
	t.Helper()
	_, tok := fixture(t)
	if cfg.ModelName == "" {
		cfg.ModelName = "tiny"
	}
	if cfg.APIKey == "" {
		cfg.APIKey = testKey
	}
	if cfg.Chunk == 0 {
		cfg.Chunk = 32
	}
	s, err := New(m, tok, cfg)
	if err != nil {
		t.Fatal(err)
	}
	gate := new(sync.Mutex)
	// A test holding gate pauses the engine between ticks: the lock is the wait.
	s.eng.beforeTick = func() { gate.Lock(); gate.Unlock() } //lint:ignore SA2001 nothing to guard
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		ts.CloseClientConnections()
		ts.Close()
		s.Close()
	})
	c := openai.NewClient(option.WithBaseURL(ts.URL+"/v1/"), option.WithAPIKey(cfg.APIKey), option.WithMaxRetries(0))
	return &harness{s: s, ts: ts, client: c, gate: gate, t: t}
}

// reference generates with model.Generate, the library path the server must agree with.
func reference(t *testing.T, prompt []int, policy string, chunk, maxTokens int, stop []int) ([]int, footprint.Report) {
	t.Helper()
	m, _ := fixture(t)
	meter := footprint.NewMeter(m.Config.Layers, m.Config.KVHeads)
	cache, err := kv.New(kv.Shape(m.Shape()), policy, kv.WithObserver(meter))
	if err != nil {
		t.Fatal(err)
	}
	res, err := model.Generate(m, cache, prompt, model.GenerateOptions{MaxTokens: maxTokens, Chunk: chunk, Stop: stop})
	if err != nil {
		t.Fatal(err)
	}
	return res.IDs, meter.Report(false)
}

func kvOf(t *testing.T, raw string) kvUsage {
	t.Helper()
	var u struct {
		KV *kvUsage `json:"kv"`
	}
	if err := json.Unmarshal([]byte(raw), &u); err != nil || u.KV == nil {
		t.Fatalf("usage %s: no kv object (%v)", raw, err)
	}
	return *u.KV
}

func statusOf(t *testing.T, err error) (int, string) {
	t.Helper()
	var ae *openai.Error
	if !errors.As(err, &ae) {
		t.Fatalf("error %v, want an API error", err)
	}
	return ae.StatusCode, ae.Code
}

const prose = "The quick brown fox jumps over the lazy dog, and then it runs back into the forest to sleep."

// TestCompletion: a greedy completion equals model.Generate's, and its usage counts
// the tokens and the KV bytes of full attention by hand.
func TestCompletion(t *testing.T) {
	h := start(t, Config{})
	_, tok := fixture(t)
	ctx := context.Background()
	res, err := h.client.Completions.New(ctx, openai.CompletionNewParams{
		Model:       "tiny",
		Prompt:      openai.CompletionNewParamsPromptUnion{OfString: openai.String(prose)},
		MaxTokens:   openai.Int(12),
		Temperature: openai.Float(0),
	}, option.WithJSONSet("ignore_eos", true))
	if err != nil {
		t.Fatal(err)
	}
	prompt := tok.EncodeWithSpecial(prose)
	ids, _ := reference(t, prompt, "full", 32, 12, nil)
	if got, want := res.Choices[0].Text, tok.DecodeSkipSpecial(ids); got != want {
		t.Errorf("text %q, want %q", got, want)
	}
	if res.Choices[0].FinishReason != "length" || res.Object != "text_completion" {
		t.Errorf("finish %q, object %q", res.Choices[0].FinishReason, res.Object)
	}
	u := res.Usage
	if u.PromptTokens != int64(len(prompt)) || u.CompletionTokens != 12 || u.TotalTokens != int64(len(prompt)+12) {
		t.Errorf("usage %+v, want %d + 12 tokens", u, len(prompt))
	}
	k := kvOf(t, u.RawJSON())
	var extra kvUsage
	if err := json.Unmarshal([]byte(u.JSON.ExtraFields["kv"].Raw()), &extra); err != nil || extra != k {
		t.Errorf("usage.JSON.ExtraFields[kv] = %+v (%v), want %+v", extra, err, k)
	}
	// full attention: the cache ends holding every fed token (the prompt and 11 of
	// the 12 generated) in every (layer, KV head), 2·16 float32 each
	fed := int64(len(prompt) + 11)
	wantBytes := fed * 2 * 2 * 2 * 16 * 4
	if k.Policy != "full" || k.Footprint != 1 || k.Peak != 1 || k.PeakBytes != wantBytes || k.EvictedEntries != 0 || k.ReservedBytes != wantBytes {
		t.Errorf("kv %+v, want policy full, footprint 1, peak 1, %d peak and reserved bytes, 0 evicted", k, wantBytes)
	}
	// token prompts are taken as they are
	res, err = h.client.Completions.New(ctx, openai.CompletionNewParams{
		Model:     "tiny",
		Prompt:    openai.CompletionNewParamsPromptUnion{OfArrayOfTokens: []int64{5, 6, 7}},
		MaxTokens: openai.Int(3), Temperature: openai.Float(0),
	}, option.WithJSONSet("ignore_eos", true))
	if err != nil {
		t.Fatal(err)
	}
	ids, _ = reference(t, []int{5, 6, 7}, "full", 32, 3, nil)
	if got, want := res.Choices[0].Text, tok.DecodeSkipSpecial(ids); got != want || res.Usage.PromptTokens != 3 {
		t.Errorf("token prompt: text %q (%d prompt tokens), want %q (3)", got, res.Usage.PromptTokens, want)
	}
}

// TestChat: the messages go through the model folder's chat template; the answer is
// Generate's on the rendered prompt, and the turn ends at the template's <|eot_id|>.
func TestChat(t *testing.T) {
	h := start(t, Config{})
	_, tok := fixture(t)
	msgs := []tokenizer.Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Name a colour."}}
	res, err := h.client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model:               "tiny",
		Messages:            []openai.ChatCompletionMessageParamUnion{openai.SystemMessage(msgs[0].Content), openai.UserMessage(msgs[1].Content)},
		MaxCompletionTokens: openai.Int(10),
		Temperature:         openai.Float(0),
	})
	if err != nil {
		t.Fatal(err)
	}
	rendered, err := tok.ApplyChatTemplate(msgs, true)
	if err != nil {
		t.Fatal(err)
	}
	eot, _ := tok.TokenID("<|eot_id|>")
	if h.s.turnEnd != eot {
		t.Fatalf("end-of-turn token %d, want <|eot_id|> = %d", h.s.turnEnd, eot)
	}
	prompt := tok.Encode(rendered)
	ids, _ := reference(t, prompt, "full", 32, 10, []int{4089, eot})
	c := res.Choices[0]
	if c.Message.Content != tok.DecodeSkipSpecial(ids) || c.Message.Role != "assistant" || res.Object != "chat.completion" {
		t.Errorf("message %+v, want assistant %q", c.Message, tok.DecodeSkipSpecial(ids))
	}
	if res.Usage.PromptTokens != int64(len(prompt)) || res.Usage.CompletionTokens != int64(len(ids)) {
		t.Errorf("usage %+v, want %d prompt and %d completion tokens", res.Usage, len(prompt), len(ids))
	}
}

// TestStreaming: streamed deltas add up to the non-streamed answer of the same seed;
// the last chunk before [DONE] carries the usage with its kv object.
func TestStreaming(t *testing.T) {
	h := start(t, Config{})
	ctx := context.Background()
	params := openai.ChatCompletionNewParams{
		Model:               "tiny",
		Messages:            []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Tell me a story about a fox.")},
		MaxCompletionTokens: openai.Int(20),
		Temperature:         openai.Float(0.9),
		TopP:                openai.Float(0.95),
		Seed:                openai.Int(42),
		StreamOptions:       openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	}
	whole, err := h.client.Chat.Completions.New(ctx, params, option.WithJSONDel("stream_options"), option.WithJSONSet("ignore_eos", true))
	if err != nil {
		t.Fatal(err)
	}
	stream := h.client.Chat.Completions.NewStreaming(ctx, params, option.WithJSONSet("ignore_eos", true))
	var text strings.Builder
	var finish string
	var usageRaw string
	chunks := 0
	for stream.Next() {
		c := stream.Current()
		chunks++
		if len(c.Choices) > 0 {
			text.WriteString(c.Choices[0].Delta.Content)
			if c.Choices[0].FinishReason != "" {
				finish = c.Choices[0].FinishReason
			}
		}
		if c.Usage.TotalTokens > 0 {
			usageRaw = c.Usage.RawJSON()
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if text.String() != whole.Choices[0].Message.Content {
		t.Errorf("streamed %q, whole %q", text.String(), whole.Choices[0].Message.Content)
	}
	if finish != "length" || chunks < 20 {
		t.Errorf("finish %q after %d chunks, want length after ≥ 20", finish, chunks)
	}
	if usageRaw == "" {
		t.Fatal("no usage chunk")
	}
	k := kvOf(t, usageRaw)
	if w := kvOf(t, whole.Usage.RawJSON()); k.PeakBytes != w.PeakBytes || k.Footprint != w.Footprint {
		t.Errorf("streamed kv %+v, whole %+v", k, w)
	}

	// completions stream too, and the raw stream ends with data: [DONE]
	body := `{"model":"tiny","prompt":"Once upon a time","max_tokens":5,"stream":true,"temperature":0,"ignore_eos":true,"stream_options":{"include_usage":true}}`
	events := rawStream(t, h, "/v1/completions", body)
	if n := len(events); n < 8 || events[n-1] != "[DONE]" || !strings.Contains(events[n-2], `"kv":{`) {
		t.Fatalf("completion events %q: want 5 tokens, the finish, the usage, [DONE]", events)
	}
}

// rawStream posts body and returns the data of every server-sent event.
func rawStream(t *testing.T, h *harness, path, body string) []string {
	t.Helper()
	req, _ := http.NewRequest("POST", h.ts.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, ct)
	}
	var events []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			events = append(events, d)
		}
	}
	return events
}

// TestPolicyPerRequest: kv_policy runs the request with its own cache policy; the
// text is Generate's under the same policy and chunk, and the kv object is what
// the meter and the paper's formula give.
func TestPolicyPerRequest(t *testing.T) {
	h := start(t, Config{Policy: "full"})
	_, tok := fixture(t)
	long := strings.Repeat(prose+" ", 4)
	spec := "streaming:sink=4,window=16"
	res, err := h.client.Completions.New(context.Background(), openai.CompletionNewParams{
		Model: "tiny", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String(long)},
		MaxTokens: openai.Int(8), Temperature: openai.Float(0),
	}, option.WithJSONSet("kv_policy", spec), option.WithJSONSet("ignore_eos", true))
	if err != nil {
		t.Fatal(err)
	}
	prompt := tok.EncodeWithSpecial(long)
	ids, rep := reference(t, prompt, spec, 32, 8, nil)
	if got := res.Choices[0].Text; got != tok.DecodeSkipSpecial(ids) {
		t.Errorf("text %q, want %q", got, tok.DecodeSkipSpecial(ids))
	}
	k := kvOf(t, res.Usage.RawJSON())
	an, err := footprint.Analytic(footprint.Params{Prompt: len(prompt), Response: 7, Chunk: 32, Sink: 4, Window: 16, HeadSparsity: 1})
	if err != nil {
		t.Fatal(err)
	}
	// every (layer, KV head) ends with sink+window = 20 of its fed tokens
	fed := int64(len(prompt) + 7)
	if k.Policy != spec || k.EvictedEntries != (fed-20)*4 || k.PeakBytes != rep.PeakBytes ||
		math.Abs(k.Footprint-an.Footprint) > 1e-12 || math.Abs(k.Peak-an.Peak) > 1e-12 {
		t.Errorf("kv %+v; want policy %s, %d evicted, peak bytes %d, footprint %g, peak %g",
			k, spec, (fed-20)*4, rep.PeakBytes, an.Footprint, an.Peak)
	}
	if k.PeakBytes > k.ReservedBytes {
		t.Errorf("peak bytes %d above the reservation %d", k.PeakBytes, k.ReservedBytes)
	}
}

// TestStopAndLogprobs: a stop string cuts the text before it; logprobs are the
// log-softmax of the model's logits, computed here with a plain Runner.
func TestStopAndLogprobs(t *testing.T) {
	h := start(t, Config{})
	m, tok := fixture(t)
	ctx := context.Background()
	prompt := tok.EncodeWithSpecial(prose)
	ids, _ := reference(t, prompt, "full", 32, 24, nil)
	full := tok.DecodeSkipSpecial(ids)
	stop := ""
	for i := 4; i+3 <= len(full) && stop == ""; i++ {
		if s := full[i : i+3]; strings.TrimSpace(s) == s && !strings.Contains(full[:i], s) {
			stop = s
		}
	}
	if stop == "" {
		t.Fatalf("no stop string in %q", full)
	}
	res, err := h.client.Completions.New(ctx, openai.CompletionNewParams{
		Model: "tiny", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String(prose)},
		MaxTokens: openai.Int(24), Temperature: openai.Float(0),
		Stop: openai.CompletionNewParamsStopUnion{OfStringArray: []string{"never appears", stop}},
	}, option.WithJSONSet("ignore_eos", true))
	if err != nil {
		t.Fatal(err)
	}
	want, _, _ := strings.Cut(full, stop)
	if c := res.Choices[0]; c.Text != want || c.FinishReason != "stop" {
		t.Errorf("text %q (%s), want %q (stop) before %q", c.Text, c.FinishReason, want, stop)
	}

	chat, err := h.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model: "tiny", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hi")},
		MaxCompletionTokens: openai.Int(3), Temperature: openai.Float(0),
		Logprobs: openai.Bool(true), TopLogprobs: openai.Int(3),
	}, option.WithJSONSet("ignore_eos", true))
	if err != nil {
		t.Fatal(err)
	}
	rendered, _ := tok.ApplyChatTemplate([]tokenizer.Message{{Role: "user", Content: "Hi"}}, true)
	cache, _ := kv.New(kv.Shape(m.Shape()), "full")
	logits, err := model.NewRunner(m, 64).Prefill(cache, tok.Encode(rendered), model.PrefillOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mx, best := math.Inf(-1), 0
	for i, v := range logits {
		if float64(v) > mx {
			mx, best = float64(v), i
		}
	}
	var sum float64
	for _, v := range logits {
		sum += math.Exp(float64(v) - mx)
	}
	lp := chat.Choices[0].Logprobs.Content
	if len(lp) != 3 {
		t.Fatalf("%d logprobs, want 3", len(lp))
	}
	first := lp[0]
	if want := -math.Log(sum); math.Abs(first.Logprob-want) > 1e-5 || first.Token != tok.Decode([]int{best}) {
		t.Errorf("first token %q logprob %g, want %q %g", first.Token, first.Logprob, tok.Decode([]int{best}), want)
	}
	if len(first.TopLogprobs) != 3 || first.TopLogprobs[0].Logprob != first.Logprob ||
		first.TopLogprobs[1].Logprob > first.TopLogprobs[0].Logprob || first.TopLogprobs[2].Logprob > first.TopLogprobs[1].Logprob {
		t.Errorf("top logprobs %+v: want 3, the chosen (greedy) token first, descending", first.TopLogprobs)
	}
}

// TestErrors: every refusal has OpenAI's error shape and its status, and none harms
// the requests that follow.
func TestErrors(t *testing.T) {
	dir := t.TempDir()
	masks := filepath.Join(dir, "m.tsv")
	if err := os.WriteFile(masks, []byte("1 0\n0 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := start(t, Config{KVBudget: 200 << 10, MaxBodyBytes: 4096, Masks: []string{masks}})
	cases := []struct {
		name, path, key, body string
		status                int
		code                  string
	}{
		{"bad JSON", "/v1/completions", testKey, `{"model":`, 400, "invalid_value"},
		{"wrong type", "/v1/completions", testKey, `{"model":"tiny","prompt":"a","max_tokens":"many"}`, 400, "invalid_value"},
		{"no model", "/v1/completions", testKey, `{"prompt":"a"}`, 400, "invalid_value"},
		{"n=2", "/v1/chat/completions", testKey, `{"model":"tiny","messages":[{"role":"user","content":"a"}],"n":2}`, 400, "invalid_value"},
		{"temperature", "/v1/completions", testKey, `{"model":"tiny","prompt":"a","temperature":3}`, 400, "invalid_value"},
		{"five stops", "/v1/completions", testKey, `{"model":"tiny","prompt":"a","stop":["a","b","c","d","e"]}`, 400, "invalid_value"},
		{"usage without stream", "/v1/completions", testKey, `{"model":"tiny","prompt":"a","stream_options":{"include_usage":true}}`, 400, "invalid_value"},
		{"no messages", "/v1/chat/completions", testKey, `{"model":"tiny","messages":[]}`, 400, "invalid_value"},
		{"image part", "/v1/chat/completions", testKey, `{"model":"tiny","messages":[{"role":"user","content":[{"type":"image_url"}]}]}`, 400, "invalid_value"},
		{"token outside vocab", "/v1/completions", testKey, `{"model":"tiny","prompt":[1,99999]}`, 400, "invalid_value"},
		{"max_tokens 0", "/v1/completions", testKey, `{"model":"tiny","prompt":"a","max_tokens":0}`, 400, "invalid_value"},
		{"no key", "/v1/completions", "", `{"model":"tiny","prompt":"a"}`, 401, "invalid_api_key"},
		{"wrong key", "/v1/models", "test-kez", ``, 401, "invalid_api_key"},
		{"metrics need the key", "/metrics", "", ``, 401, "invalid_api_key"},
		{"unknown model", "/v1/completions", testKey, `{"model":"gpt-9","prompt":"a"}`, 404, "model_not_found"},
		{"unknown route", "/v1/embeddings", testKey, `{}`, 404, "unknown_url"},
		{"body too large", "/v1/completions", testKey, `{"model":"tiny","prompt":"` + strings.Repeat("a", 5000) + `"}`, 413, "request_too_large"},
		{"bad policy", "/v1/completions", testKey, `{"model":"tiny","prompt":"a","kv_policy":"streaming:sink=x"}`, 422, "invalid_kv_policy"},
		{"masks path", "/v1/completions", testKey, `{"model":"tiny","prompt":"a","kv_policy":"headmask:masks=` + masks + `"}`, 422, "unknown_masks"},
		{"masks escape", "/v1/completions", testKey, `{"model":"tiny","prompt":"a","kv_policy":"headmask:masks=../m.tsv"}`, 422, "unknown_masks"},
		{"prompt over context", "/v1/completions", testKey, `{"model":"tiny","prompt":[` + strings.TrimSuffix(strings.Repeat("1,", 512), ",") + `]}`, 422, "context_length_exceeded"},
		{"max_tokens over context", "/v1/completions", testKey, `{"model":"tiny","prompt":"a","max_tokens":600}`, 400, "invalid_value"},
		{"prompt+max_tokens over context", "/v1/completions", testKey, `{"model":"tiny","prompt":[` + strings.TrimSuffix(strings.Repeat("1,", 500), ",") + `],"max_tokens":20}`, 422, "context_length_exceeded"},
		{"over the whole budget", "/v1/completions", testKey, `{"model":"tiny","prompt":"a","max_tokens":500}`, 422, "kv_budget_exceeded"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			method := "POST"
			if c.body == "" {
				method = "GET"
			}
			req, _ := http.NewRequest(method, h.ts.URL+c.path, strings.NewReader(c.body))
			if c.key != "" {
				req.Header.Set("Authorization", "Bearer "+c.key)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Error *apiError `json:"error"`
			}
			raw, _ := io.ReadAll(resp.Body)
			if err := json.Unmarshal(raw, &body); err != nil || body.Error == nil || body.Error.Message == "" || body.Error.Type == "" {
				t.Fatalf("body %s: want {\"error\": {message, type, ...}}", raw)
			}
			if resp.StatusCode != c.status || body.Error.Code != c.code {
				t.Errorf("status %d code %q (%s), want %d %q", resp.StatusCode, body.Error.Code, body.Error.Message, c.status, c.code)
			}
		})
	}
	// the official client sees the same errors
	ctx := context.Background()
	prompt := openai.CompletionNewParamsPromptUnion{OfString: openai.String("a")}
	wrongKey := openai.NewClient(option.WithBaseURL(h.ts.URL+"/v1/"), option.WithAPIKey("nope"), option.WithMaxRetries(0))
	for _, c := range []struct {
		name   string
		call   func() error
		status int
		code   string
	}{
		{"n=2", func() error {
			_, err := h.client.Completions.New(ctx, openai.CompletionNewParams{Model: "tiny", Prompt: prompt, N: openai.Int(2)})
			return err
		}, 400, "invalid_value"},
		{"wrong key", func() error { _, err := wrongKey.Models.List(ctx); return err }, 401, "invalid_api_key"},
		{"unknown model", func() error {
			_, err := h.client.Completions.New(ctx, openai.CompletionNewParams{Model: "gpt-9", Prompt: prompt})
			return err
		}, 404, "model_not_found"},
		{"body too large", func() error {
			_, err := h.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "tiny",
				Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(strings.Repeat("a", 5000))}})
			return err
		}, 413, "request_too_large"},
		{"bad policy", func() error {
			_, err := h.client.Completions.New(ctx, openai.CompletionNewParams{Model: "tiny", Prompt: prompt},
				option.WithJSONSet("kv_policy", "nonsense"))
			return err
		}, 422, "invalid_kv_policy"},
	} {
		if st, code := statusOf(t, c.call()); st != c.status || code != c.code {
			t.Errorf("client, %s: %d %q, want %d %q", c.name, st, code, c.status, c.code)
		}
	}
	// a masks file the server loaded, by name, works; so do all requests after the errors
	res, err := h.client.Completions.New(context.Background(), openai.CompletionNewParams{
		Model: "tiny", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String(prose)}, MaxTokens: openai.Int(4),
	}, option.WithJSONSet("kv_policy", "headmask:masks=m.tsv,sink=2,window=4"), option.WithJSONSet("ignore_eos", true))
	if err != nil {
		t.Fatal(err)
	}
	if k := kvOf(t, res.Usage.RawJSON()); k.EvictedEntries == 0 || k.PeakBytes > k.ReservedBytes {
		t.Errorf("headmask kv %+v: want evictions by the two streaming heads, peak ≤ reserved", k)
	}
}

// TestQueueFullAndDrain: past the queue a request gets 429 with Retry-After; while
// draining, new requests get 503 and the running one finishes.
func TestQueueFullAndDrain(t *testing.T) {
	h := start(t, Config{MaxConcurrent: 1, MaxQueue: 1})
	ctx := context.Background()
	long := func() *openaiStream {
		return h.stream(ctx, openai.CompletionNewParams{
			Model: "tiny", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String(prose)}, MaxTokens: openai.Int(400)})
	}
	first := long()
	first.next(t)
	resume := h.pause() // the first request runs and cannot finish
	second := make(chan error, 1)
	go func() {
		_, err := h.client.Completions.New(ctx, openai.CompletionNewParams{
			Model: "tiny", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("a")}, MaxTokens: openai.Int(2)},
			option.WithJSONSet("ignore_eos", true))
		second <- err
	}()
	waitFor(t, func() bool { return h.s.Stats().Queued == 1 })
	_, err := h.client.Completions.New(ctx, openai.CompletionNewParams{
		Model: "tiny", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("a")}})
	var ae *openai.Error
	if !errors.As(err, &ae) || ae.StatusCode != 429 || ae.Code != "queue_full" || ae.Response.Header.Get("Retry-After") == "" {
		t.Errorf("third request: %v; want 429 queue_full with Retry-After", err)
	}

	drained := make(chan error, 1)
	go func() {
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		drained <- h.s.Drain(dctx)
	}()
	if st, code := statusOf(t, <-second); st != 503 || code != "server_draining" {
		t.Errorf("queued request on drain: %d %q, want 503 server_draining", st, code)
	}
	_, err = h.client.Completions.New(ctx, openai.CompletionNewParams{
		Model: "tiny", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("a")}})
	if st, _ := statusOf(t, err); st != 503 {
		t.Errorf("new request while draining: %d, want 503", st)
	}
	if hr, err := http.Get(h.ts.URL + "/healthz"); err != nil || hr.StatusCode != 503 {
		t.Errorf("healthz while draining: %v, want 503", err)
	}
	resume()
	n := first.drain(t)
	if first.finish != "length" || n == 0 {
		t.Errorf("the running request ended with %q after %d more chunks; want it to finish (length)", first.finish, n)
	}
	if err := <-drained; err != nil {
		t.Errorf("drain: %v", err)
	}
}

// TestDrainDeadline: requests still running at the drain deadline are cut with an
// error event.
func TestDrainDeadline(t *testing.T) {
	h := start(t, Config{})
	st := h.stream(context.Background(), openai.CompletionNewParams{
		Model: "tiny", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String(prose)}, MaxTokens: openai.Int(480)})
	st.next(t)
	resume := h.pause()
	dctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	drained := make(chan error, 1)
	go func() { drained <- h.s.Drain(dctx) }()
	<-dctx.Done()
	resume()
	if err := <-drained; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("drain: %v, want the deadline", err)
	}
	st.drain(t)
	if st.err == nil || !strings.Contains(st.err.Error(), "shut down") {
		t.Errorf("cut stream ended with %v, want a shutdown error event", st.err)
	}
}

// TestPrefillInterleaved: a long prompt is pre-filled a chunk per tick while a
// running stream keeps decoding a token every tick.
func TestPrefillInterleaved(t *testing.T) {
	h := start(t, Config{Chunk: 32})
	type tick struct{ aTokens, bPos int }
	var mu sync.Mutex
	var ticks []tick // one per tick, written by the engine's goroutine
	const long = 300
	// The engine holds itself at the first tick after stream a's first token, so that
	// a cannot finish before b arrives however fast the ticks are.
	holding, release := make(chan struct{}), make(chan struct{})
	var releaseOnce sync.Once
	let := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(let) // a failing test must not leave the engine held, or shutdown waits forever
	held := false  // the engine goroutine's own
	h.s.eng.beforeTick = func() {
		for _, j := range h.s.eng.running {
			if !held && j.n > 0 {
				held = true
				close(holding)
				<-release
			}
		}
		var tk tick
		for _, j := range h.s.eng.running {
			if len(j.prompt) == long {
				tk.bPos = j.cache.Pos()
			} else {
				tk.aTokens = j.n
			}
		}
		mu.Lock()
		ticks = append(ticks, tk)
		mu.Unlock()
	}
	// Opening a's stream returns with its first text, which may need more than one
	// token, so it is opened aside while the engine holds.
	opened := make(chan *openaiStream, 1)
	go func() {
		opened <- h.stream(context.Background(), openai.CompletionNewParams{
			Model: "tiny", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("a")}, MaxTokens: openai.Int(100)})
	}()
	<-holding // a has its first token
	ids := make([]int64, long)
	for i := range ids {
		ids[i] = int64(i % 250)
	}
	b := make(chan error, 1)
	go func() {
		_, err := h.client.Completions.New(context.Background(), openai.CompletionNewParams{
			Model: "tiny", Prompt: openai.CompletionNewParamsPromptUnion{OfArrayOfTokens: ids}, MaxTokens: openai.Int(1)})
		b <- err
	}()
	waitFor(t, func() bool { return h.s.Stats().Running == 2 })
	let()
	if err := <-b; err != nil {
		t.Fatal(err)
	}
	a := <-opened
	a.drain(t)
	mu.Lock()
	defer mu.Unlock()
	first, last := -1, -1
	for i, tk := range ticks {
		if tk.bPos > 0 && tk.bPos < long {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	// 300 tokens in chunks of 32: the ticks before the last chunk see 32, 64, …, 288
	if first < 0 || last-first != 8 || ticks[last].aTokens-ticks[first].aTokens != last-first {
		t.Errorf("ticks %v: want 9 ticks of the long pre-fill, each with a decode step of the running stream", ticks[max(first, 0):last+1])
	}
}

// TestCancelFreesCache: a client that goes away mid-stream ends its request, and its
// cache's bytes are freed at once.
func TestCancelFreesCache(t *testing.T) {
	h := start(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	st := h.stream(ctx, openai.CompletionNewParams{
		Model: "tiny", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String(prose)}, MaxTokens: openai.Int(480)})
	st.next(t)
	st.next(t)
	resume := h.pause()
	if s := h.s.Stats(); s.Running != 1 || s.KVBytesInUse == 0 || s.KVBytesReserved == 0 {
		t.Fatalf("stats %+v while streaming: want one running request holding KV bytes", s)
	}
	cancel()
	resume()
	waitFor(t, func() bool {
		s := h.s.Stats()
		return s.Running == 0 && s.KVBytesInUse == 0 && s.KVBytesReserved == 0
	})
	// the server serves on
	if _, err := h.client.Completions.New(context.Background(), openai.CompletionNewParams{
		Model: "tiny", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("a")}, MaxTokens: openai.Int(2)}); err != nil {
		t.Fatal(err)
	}
	if got := metric(t, h, `kvfoot_requests_total{code="499",endpoint="/v1/completions"}`); got != "1" {
		t.Errorf("499 requests %q, want 1", got)
	}
}

// TestLoad: 64 concurrent streaming requests (full and streaming policies, a budget
// that fits only some at once) all complete, with no error, under the budget, and
// their decode steps were batched.
func TestLoad(t *testing.T) {
	const n, maxTokens = 64, 48
	_, tok := fixture(t)
	prompt := tok.EncodeWithSpecial(prose)
	// full attention's peak is (prompt + 47) tokens × 2 layers × 2 KV heads × 128 bytes
	full := int64(len(prompt)+maxTokens-1) * 512
	budget := 8 * full
	h := start(t, Config{KVBudget: budget, MaxConcurrent: 64, MaxQueue: 64})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	resume := h.pause() // until every request is in: admitted up to the budget, the rest queued
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			policy := "full"
			if i%2 == 1 {
				policy = "streaming:sink=4,window=8"
			}
			s := h.client.Completions.NewStreaming(ctx, openai.CompletionNewParams{
				Model: "tiny", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String(prose)},
				MaxTokens: openai.Int(maxTokens), Seed: openai.Int(int64(i)),
				StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
			}, option.WithJSONSet("kv_policy", policy), option.WithJSONSet("ignore_eos", true))
			finish, tokens := "", int64(0)
			var k kvUsage
			for s.Next() {
				c := s.Current()
				if len(c.Choices) > 0 && c.Choices[0].FinishReason != "" {
					finish = string(c.Choices[0].FinishReason)
				}
				if c.Usage.TotalTokens > 0 {
					tokens = c.Usage.CompletionTokens
					k = kvOf(t, c.Usage.RawJSON())
				}
			}
			switch {
			case s.Err() != nil:
				errs <- fmt.Errorf("request %d: %v", i, s.Err())
			case finish != "length" || tokens != maxTokens:
				errs <- fmt.Errorf("request %d: finish %q, %d tokens; want length, %d", i, finish, tokens, maxTokens)
			case k.Policy != policy || k.PeakBytes > k.ReservedBytes:
				errs <- fmt.Errorf("request %d: kv %+v under %s: want its policy, peak ≤ reserved", i, k, policy)
			}
		}()
	}
	waitFor(t, func() bool { s := h.s.Stats(); return s.Running+s.Queued == n })
	if s := h.s.Stats(); s.Queued == 0 || s.KVBytesReserved > budget {
		t.Errorf("stats %+v with all %d requests in: want some queued and at most %d bytes reserved", s, n, budget)
	}
	resume()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	s := h.s.Stats()
	if s.KVBytesPeak == 0 || s.KVBytesPeak > budget || s.Running != 0 || s.KVBytesInUse != 0 {
		t.Errorf("stats %+v: want a peak in (0, %d] and nothing left running", s, budget)
	}
	if seqs, _ := histogram(t, h, "kvfoot_batch_sequences"); seqs < 2 {
		t.Errorf("%.2f sequences per forward on average: want batching", seqs)
	}
}

// pause holds the engine before its next tick until resume is called, so that a
// test can look at a request while it runs. A test that fails while paused is
// resumed on cleanup, or the server's shutdown would wait for the engine forever.
func (h *harness) pause() (resume func()) {
	h.gate.Lock()
	var once sync.Once
	resume = func() { once.Do(h.gate.Unlock) }
	h.t.Cleanup(resume)
	return resume
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not reached in 10 s")
}

// metric returns the value of one sample line of /metrics.
func metric(t *testing.T, h *harness, name string) string {
	t.Helper()
	for _, line := range strings.Split(scrape(t, h), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}

// histogram returns a histogram's mean and count.
func histogram(t *testing.T, h *harness, name string) (mean, count float64) {
	t.Helper()
	var sum float64
	fmt.Sscan(metric(t, h, name+"_sum"), &sum)
	fmt.Sscan(metric(t, h, name+"_count"), &count)
	if count == 0 {
		return 0, 0
	}
	return sum / count, count
}

func scrape(t *testing.T, h *harness) string {
	t.Helper()
	req, _ := http.NewRequest("GET", h.ts.URL+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+testKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// openaiStream reads a completion stream chunk by chunk.
type openaiStream struct {
	next   func(t *testing.T)
	drain  func(t *testing.T) int
	finish string
	err    error
}

func (h *harness) stream(ctx context.Context, p openai.CompletionNewParams) *openaiStream {
	s := h.client.Completions.NewStreaming(ctx, p, option.WithJSONSet("ignore_eos", true))
	o := &openaiStream{}
	o.next = func(t *testing.T) {
		t.Helper()
		if !s.Next() {
			t.Fatalf("stream ended early: %v", s.Err())
		}
	}
	o.drain = func(t *testing.T) int {
		n := 0
		for s.Next() {
			n++
			if c := s.Current(); len(c.Choices) > 0 && c.Choices[0].FinishReason != "" {
				o.finish = string(c.Choices[0].FinishReason)
			}
		}
		o.err = s.Err()
		return n
	}
	return o
}

// TestModelsHealthMetrics: /v1/models lists the model, /healthz answers without a key,
// /metrics speaks Prometheus text.
func TestModelsHealthMetrics(t *testing.T) {
	h := start(t, Config{})
	page, err := h.client.Models.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Data) != 1 || page.Data[0].ID != "tiny" {
		t.Errorf("models %+v, want [tiny]", page.Data)
	}
	if m, err := h.client.Models.Get(context.Background(), "tiny"); err != nil || m.ID != "tiny" {
		t.Errorf("model tiny: %v %v", m, err)
	}
	if _, err := h.client.Models.Get(context.Background(), "other"); err == nil {
		t.Error("model other: no error")
	} else if st, _ := statusOf(t, err); st != 404 {
		t.Errorf("model other: %d, want 404", st)
	}
	resp, err := http.Get(h.ts.URL + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	text := scrape(t, h)
	for _, name := range []string{"kvfoot_requests_total", "kvfoot_kv_budget_bytes 2.147483648e+09", "kvfoot_kv_bytes_in_use 0",
		"kvfoot_time_to_first_token_seconds_bucket", "kvfoot_inter_token_latency_seconds_bucket", "kvfoot_queue_length 0",
		"kvfoot_kv_evicted_entries_total", "kvfoot_prompt_tokens_total", "kvfoot_completion_tokens_total"} {
		if !strings.Contains(text, name) {
			t.Errorf("/metrics has no %q", name)
		}
	}
}

// TestCut: text is held back exactly while it may be the start of a stop string.
func TestCut(t *testing.T) {
	j := &job{stops: []string{"END", "xy"}}
	steps := []struct{ in, out string }{{"ab", "ab"}, {"cE", "c"}, {"N", ""}, {"x", "EN"}, {"z", "xz"}, {"qE", "q"}}
	for _, s := range steps {
		if out, hit := j.cut(s.in); out != s.out || hit {
			t.Fatalf("cut(%q) = %q, %v; want %q", s.in, out, hit, s.out)
		}
	}
	if out, hit := j.cut("ND tail"); out != "" || !hit {
		t.Errorf("cut(ND tail) = %q, %v; want the stop", out, hit)
	}
}
