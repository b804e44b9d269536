package server

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// post sends body to path with the Authorization header auth and returns the status
// and the body.
func (h *harness) post(path, auth, body string) (int, string) {
	h.t.Helper()
	req, _ := http.NewRequest("POST", h.ts.URL+path, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

// errorOf is the error object of a response body.
func errorOf(t *testing.T, body string) apiError {
	t.Helper()
	var e struct {
		Error *apiError `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == nil {
		t.Fatalf("body %s: no error object (%v)", body, err)
	}
	return *e.Error
}

// TestErrorParams: an error's param is the JSON field of the request, never a Go
// struct or type, and its message names JSON kinds.
func TestErrorParams(t *testing.T) {
	h := start(t, Config{})
	for _, c := range []struct{ path, body, param string }{
		{"/v1/completions", `{"model":"tiny","prompt":"a","max_tokens":"x"}`, "max_tokens"},
		{"/v1/completions", `{"model":"tiny","prompt":"a","temperature":[1]}`, "temperature"},
		{"/v1/completions", `{"model":"tiny","prompt":"a","kv_policy":7}`, "kv_policy"},
		{"/v1/completions", `{"model":"tiny","prompt":"a","logprobs":true}`, "logprobs"},
		{"/v1/completions", `{"model":"tiny","prompt":"a","stream":true,"stream_options":{"include_usage":1}}`, "stream_options.include_usage"},
		{"/v1/completions", `{"model":"tiny","prompt":"a","stream_options":3}`, "stream_options"},
		{"/v1/chat/completions", `{"model":"tiny","messages":[{"role":3}]}`, "messages.role"},
		{"/v1/chat/completions", `{"model":"tiny","messages":{}}`, "messages"},
		{"/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":"a"}],"max_completion_tokens":1.5}`, "max_completion_tokens"},
		{"/v1/completions", `[]`, ""},
		{"/v1/completions", `"a"`, ""},
	} {
		status, body := h.post(c.path, "Bearer "+testKey, c.body)
		e := errorOf(t, body)
		if status != 400 || e.Param != c.param || strings.Contains(body, "Params") || strings.Contains(body, "server.") ||
			strings.Contains(body, "struct") || strings.Contains(body, "int64") {
			t.Errorf("%s: %d param %q %q, want 400 param %q in JSON terms", c.body, status, e.Param, e.Message, c.param)
		}
	}
}

// TestSeed: seed takes every unsigned 64-bit integer (and negative ones, as their
// two's complement), compared exactly; past 2^64−1 it is refused with its range.
func TestSeed(t *testing.T) {
	h := start(t, Config{})
	text := func(seed string) (int, string) {
		status, body := h.post("/v1/completions", "Bearer "+testKey,
			`{"model":"tiny","prompt":"a","max_tokens":6,"ignore_eos":true,"seed":`+seed+`}`)
		var res completionResponse
		if status == 200 {
			if err := json.Unmarshal([]byte(body), &res); err != nil || len(res.Choices) != 1 {
				t.Fatalf("seed %s: %s", seed, body)
			}
			return status, res.Choices[0].Text
		}
		return status, body
	}
	st, max := text("18446744073709551615")
	st2, minus1 := text("-1")
	if st != 200 || st2 != 200 || max != minus1 {
		t.Errorf("seed 2^64−1: %d %q; seed −1: %d %q; want 200 and the same text (the same 64 bits)", st, max, st2, minus1)
	}
	for _, bad := range []string{"18446744073709551616", "99999999999999999999999", "-9223372036854775809", "1.5", "1e3", `"7"`, "true"} {
		status, body := text(bad)
		e := errorOf(t, body)
		if status != 400 || e.Param != "seed" || !strings.Contains(e.Message, "18446744073709551615") || strings.Contains(e.Message, "not an integer") {
			t.Errorf("seed %s: %d %+v; want 400 naming seed and its range", bad, status, e)
		}
	}
}

// TestBearerScheme: the auth-scheme is case-insensitive (RFC 9110 §11.1); the token
// is not.
func TestBearerScheme(t *testing.T) {
	h := start(t, Config{})
	body := `{"model":"tiny","prompt":"a","max_tokens":1}`
	for auth, want := range map[string]int{
		"Bearer " + testKey: 200, "bearer " + testKey: 200, "BEARER " + testKey: 200, "bEaReR   " + testKey: 200,
		"Bearer " + strings.ToUpper(testKey): 401, "Basic " + testKey: 401, "Bearer" + testKey: 401, testKey: 401, "": 401,
	} {
		if status, b := h.post("/v1/completions", auth, body); status != want {
			t.Errorf("Authorization %q: %d %s, want %d", auth, status, b, want)
		}
	}
}

// TestMasksInMemory: masks files are read once at start: the server writes no
// temporary file, and deleting the masks file later changes nothing; a masks name the
// server did not load is refused with a 422 that names no server path.
func TestMasksInMemory(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	dir := t.TempDir()
	masks := filepath.Join(dir, "m.tsv")
	if err := os.WriteFile(masks, []byte("1\t0\n0\t1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := start(t, Config{Masks: []string{masks}})
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("temporary files %v: want none", left)
	}
	body := `{"model":"tiny","prompt":"` + prose + `","max_tokens":4,"ignore_eos":true,"kv_policy":"headmask:masks=m.tsv,sink=2,window=4"}`
	status, raw := h.post("/v1/completions", "Bearer "+testKey, body)
	if status != 200 {
		t.Fatalf("headmask after its file was deleted: %d %s", status, raw)
	}
	if k := kvOf(t, usageOf(t, raw)); k.EvictedEntries == 0 {
		t.Errorf("kv %+v: want the two streaming heads to evict", k)
	}
	for _, spec := range []string{"headmask:masks=" + masks, "headmask:masks=../m.tsv", "headmask:masks=x.tsv"} {
		status, raw := h.post("/v1/completions", "Bearer "+testKey, `{"model":"tiny","prompt":"a","kv_policy":"`+spec+`"}`)
		if status != 422 || strings.Contains(raw, tmp) || strings.Contains(raw, os.TempDir()) {
			t.Errorf("%s: %d %s; want 422 naming no server path", spec, status, raw)
		}
	}
}

func usageOf(t *testing.T, body string) string {
	t.Helper()
	var r struct {
		Usage json.RawMessage `json:"usage"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatal(err)
	}
	return string(r.Usage)
}
