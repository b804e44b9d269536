package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

var (
	fuzzOnce   sync.Once
	fuzzServer *Server
)

// fuzzHandler is one server for every fuzz input: a short context and few tokens, so
// that an input asking for much is refused or cheap.
func fuzzHandler(t *testing.T) http.Handler {
	fuzzOnce.Do(func() {
		m, tok := fixture(t)
		s, err := New(m, tok, Config{ModelName: "tiny", Context: 96, MaxTokens: 4, Chunk: 16, MaxQueue: 4})
		if err != nil {
			t.Fatal(err)
		}
		fuzzServer = s
	})
	return fuzzServer.Handler()
}

// fuzzBodies are valid requests and hostile ones.
var fuzzBodies = []string{
	`{"model":"tiny","prompt":"Once upon a time","max_tokens":3}`,
	`{"model":"tiny","prompt":[1,2,3],"max_tokens":2,"stream":true,"stream_options":{"include_usage":true}}`,
	`{"model":"tiny","prompt":"a","max_tokens":2,"kv_policy":"snapkv:sparsity=0.5,window=4+quant:bits=2","logprobs":5}`,
	`{"model":"tiny","prompt":"a","kv_policy":"headmask:masks=../../etc/passwd"}`,
	`{"model":"tiny","prompt":"a","kv_policy":"streaming:sink=0,window=0","temperature":2,"top_p":0,"seed":-1}`,
	`{"model":"tiny","prompt":"a","stop":["a","b","c","d","e"],"max_tokens":-1}`,
	`{"model":"tiny","prompt":[[4095,0]],"max_tokens":4,"seed":18446744073709551615,"ignore_eos":true}`,
	`{"model":"tiny","prompt":[-1, 99999999999]}`,
	`{"model":"tiny","prompt":"` + strings.Repeat("x ", 200) + `"}`,
	`{"model":"tiny","prompt":"\ud800\udfff\u0000","echo":true}`,
	`{"model":"tiny","prompt":null,"max_tokens":1e308}`,
	`{"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_completion_tokens":2,"logprobs":true,"top_logprobs":20}`,
	`{"model":"tiny","messages":[{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url"}]}]}`,
	`{"model":"tiny","messages":[{"role":"system"},{"role":"assistant","content":"{% for x in range(99999999) %}"}],"stream":true}`,
	`{"model":"tiny","messages":[],"tools":[{}],"response_format":{"type":"json"}}`,
	`{"model":"tiny","messages":[{"role":"user","content":"a"}],"kv_policy":"h2o:heavy=1,recent=1+bf16","n":2}`,
	`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`,
	`{"model":"tiny","model":"other"}`,
	`{"seed":1e999,"temperature":"NaN"}`,
	``,
	`nul`,
}

// fuzzBody posts body to path and checks that the handler answers with a status of
// its classes and a body of the right form, and never panics (a panic the middleware
// caught is a 500 internal_error or engine_panic: a failure here).
func fuzzBody(t *testing.T, path string, body []byte) {
	h := fuzzHandler(t)
	req := httptest.NewRequest("POST", path, bytes.NewReader(body))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	got := w.Body.String()
	switch c := w.Code; {
	case c >= 200 && c < 300:
		if strings.HasPrefix(w.Header().Get("Content-Type"), "text/event-stream") {
			if !strings.HasSuffix(got, "data: [DONE]\n\n") {
				t.Fatalf("%q: stream %q does not end with [DONE]", body, got)
			}
			if strings.Contains(got, `"engine_panic"`) || strings.Contains(got, `"internal_error"`) {
				t.Fatalf("%q: a panic in the stream: %s", body, got)
			}
			return
		}
		if !json.Valid([]byte(got)) {
			t.Fatalf("%q: %d with a body that is not JSON: %q", body, c, got)
		}
	case c >= 400 && c < 600:
		var e struct {
			Error *apiError `json:"error"`
		}
		if err := json.Unmarshal([]byte(got), &e); err != nil || e.Error == nil || e.Error.Message == "" {
			t.Fatalf("%q: %d without an error object: %q", body, c, got)
		}
		if e.Error.Code == "engine_panic" || e.Error.Code == "internal_error" {
			t.Fatalf("%q: a panic: %s", body, got)
		}
	default:
		t.Fatalf("%q: status %d", body, c)
	}
}

func FuzzCompletions(f *testing.F) {
	for _, b := range fuzzBodies {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) { fuzzBody(t, "/v1/completions", body) })
}

func FuzzChat(f *testing.F) {
	for _, b := range fuzzBodies {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) { fuzzBody(t, "/v1/chat/completions", body) })
}
