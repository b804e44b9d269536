// Package server is kvfoot's OpenAI-compatible HTTP API: /v1/models,
// /v1/completions and /v1/chat/completions (streamed as server-sent events or not),
// /healthz and /metrics. Every request runs with its own KV cache under its own
// policy (the kv_policy extension field, default Config.Policy); the decode steps of
// all running requests go through one batched forward per tick, with pre-fill chunks
// of new requests interleaved; requests are admitted by their predicted KV peak
// against a memory budget; and every response's usage carries the request's
// measured KV footprint.
package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kvfoot/kvfoot/footprint"
	"github.com/kvfoot/kvfoot/kv"
	"github.com/kvfoot/kvfoot/model"
	"github.com/kvfoot/kvfoot/tokenizer"
)

// Config sets up a Server. Zero fields take the defaults in their comments.
type Config struct {
	ModelName string // the model id clients name; "kvfoot"
	Policy    string // KV cache policy spec of requests without kv_policy; "full"
	// KVBudget is the KV memory, in bytes, that the running requests' predicted
	// peaks may reserve in all; 2 GiB.
	KVBudget int64
	// APIKey, when set, is the Bearer token every /v1 and /metrics request must carry.
	APIKey        string
	MaxConcurrent int   // requests running at once; 64
	MaxQueue      int   // requests waiting for admission; 256
	Chunk         int   // pre-fill chunk, in tokens; 512
	Context       int   // longest prompt plus completion; the config's max_position_embeddings
	MaxTokens     int   // most tokens one request may generate; Context
	MaxBodyBytes  int64 // largest request body; 4 MiB
	// ReadTimeout bounds the reading of a request, headers and body, so that a slow
	// client cannot hold a connection; 30 s.
	ReadTimeout time.Duration
	// WriteTimeout bounds each write of a response: a stream's chunks each get their
	// own, so that a long stream is not cut, but a client that stops reading is; 30 s.
	WriteTimeout time.Duration
	IdleTimeout  time.Duration // a keep-alive connection idle this long is closed; 2 min
	MaxConns     int           // open connections; more wait to be accepted; 1024
	// Masks are headmask masks files (TSV) that a kv_policy may name, by their base
	// name only (masks=NAME): they are read into memory at start, and no file is read
	// after it.
	Masks []string
	// Device, when set, keeps every request's KV cache on a device (a GPU) instead of in
	// host memory; KVBudget is then device memory.
	Device *Device
}

// Server serves one model. Create it with New, answer requests with Serve (or mount
// Handler), and end it with Drain (or Close).
type Server struct {
	cfg     Config
	m       *model.Model
	tok     *tokenizer.Tokenizer
	shape   kv.Shape
	eos     []int // stop ids of every request
	turnEnd int   // the chat template's end-of-turn token, or -1
	masksFS memFS
	masks   map[string]struct{} // the masks files' base names
	met     *metrics
	adm     *admission
	eng     *engine
	created int64
	keyHash [32]byte
	closing sync.Once
	hsMu    sync.Mutex
	hs      []*http.Server // of Serve
	closed  bool           // Drain or Close has stopped the HTTP servers
}

// New checks cfg, loads the masks files and starts the engine.
func New(m *model.Model, tok *tokenizer.Tokenizer, cfg Config) (*Server, error) {
	c := &m.Config
	def := func(x *int, v int) {
		if *x == 0 {
			*x = v
		}
	}
	if cfg.ModelName == "" {
		cfg.ModelName = "kvfoot"
	}
	if cfg.Policy == "" {
		cfg.Policy = "full"
	}
	if cfg.KVBudget == 0 {
		cfg.KVBudget = 2 << 30
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 4 << 20
	}
	durDef := func(x *time.Duration, v time.Duration) {
		if *x == 0 {
			*x = v
		}
	}
	durDef(&cfg.ReadTimeout, 30*time.Second)
	durDef(&cfg.WriteTimeout, 30*time.Second)
	durDef(&cfg.IdleTimeout, 2*time.Minute)
	def(&cfg.MaxConns, 1024)
	def(&cfg.MaxConcurrent, 64)
	def(&cfg.MaxQueue, 256)
	def(&cfg.Chunk, 512)
	def(&cfg.Context, c.MaxPositions)
	def(&cfg.MaxTokens, cfg.Context)
	switch {
	case cfg.KVBudget < 0:
		return nil, fmt.Errorf("server: KV budget %d bytes, want > 0", cfg.KVBudget)
	case cfg.MaxConcurrent < 1 || cfg.MaxQueue < 0 || cfg.Chunk < 1:
		return nil, fmt.Errorf("server: max concurrent %d, max queue %d, chunk %d: want ≥ 1, ≥ 0, ≥ 1", cfg.MaxConcurrent, cfg.MaxQueue, cfg.Chunk)
	case cfg.Context < 2:
		return nil, fmt.Errorf("server: context %d tokens (the model config has no max_position_embeddings?): want ≥ 2", cfg.Context)
	case cfg.MaxTokens < 1 || cfg.MaxBodyBytes < 1:
		return nil, fmt.Errorf("server: max tokens %d, max body %d: want ≥ 1", cfg.MaxTokens, cfg.MaxBodyBytes)
	case cfg.ReadTimeout < 0 || cfg.WriteTimeout < 0 || cfg.IdleTimeout < 0:
		return nil, fmt.Errorf("server: read timeout %v, write timeout %v, idle timeout %v: want > 0", cfg.ReadTimeout, cfg.WriteTimeout, cfg.IdleTimeout)
	case cfg.MaxConns < 1:
		return nil, fmt.Errorf("server: max connections %d: want ≥ 1", cfg.MaxConns)
	case tok.VocabSize() > c.Vocab:
		return nil, fmt.Errorf("server: the tokenizer has %d tokens, the model's vocabulary %d", tok.VocabSize(), c.Vocab)
	}
	s := &Server{cfg: cfg, m: m, tok: tok, shape: kv.Shape(m.Shape()), met: newMetrics(), created: time.Now().Unix(), turnEnd: -1}
	s.keyHash = sha256.Sum256([]byte(cfg.APIKey))
	s.eos = slices.Clone(c.EOS)
	if id := tok.EOS(); id >= 0 && !slices.Contains(s.eos, id) {
		s.eos = append(s.eos, id)
	}
	s.turnEnd = turnEndToken(tok)
	if err := s.loadMasks(); err != nil {
		return nil, err
	}
	if _, err := s.policy(cfg.Policy); err != nil {
		return nil, fmt.Errorf("server: default policy: %s", err.Message)
	}
	s.met.kvBudget.Set(float64(cfg.KVBudget))
	s.adm = newAdmission(cfg.KVBudget, cfg.MaxConcurrent, cfg.MaxQueue, func(reserved int64, running, queued int) {
		s.met.kvReserved.Set(float64(reserved))
		s.met.running.Set(float64(running))
		s.met.queued.Set(float64(queued))
	})
	s.eng = newEngine(m, tok, cfg.Chunk, cfg.MaxConcurrent, s.adm, s.met)
	s.eng.newCache, s.eng.newMeter, s.eng.failure = s.newCache, s.newMeter, s.failure
	if t := cfg.Device.stepTimeout(); t > 0 {
		go s.watch(t)
	}
	return s, nil
}

// watch takes the device for hung once a step has run longer than timeout: the engine's
// goroutine is then blocked in a call that may never return, so the requests it holds, the
// ones queued for admission and every later one fail here instead (503 device_unusable), and
// /healthz answers 503, so that whoever runs the server restarts it.
func (s *Server) watch(timeout time.Duration) {
	tick := time.NewTicker(min(timeout/8, time.Second))
	defer tick.Stop()
	for {
		select {
		case <-s.eng.quit:
			return
		case <-tick.C:
		}
		since := s.eng.busySince.Load()
		if since == 0 {
			continue
		}
		if d := time.Since(time.Unix(0, since)); d > timeout {
			u := s.cfg.Device.hungError(d)
			if s.eng.unusable.CompareAndSwap(nil, u) {
				log.Printf("kvfoot server: %s", u.Message)
				close(s.eng.hung)
				s.adm.turnAway(u)
			}
			return
		}
	}
}

// failure is the error of a request the engine failed on with v (a panic value, or an
// error of the device's storage); after a device fault it asks the device whether it can
// still run, and if not, marks the server's device unusable for good.
func (s *Server) failure(policy string, v any) *apiError {
	e := s.cfg.Device.failure(policy, v)
	if u := s.cfg.Device.unusable(v); u != nil && s.eng.unusable.CompareAndSwap(nil, u) {
		log.Printf("kvfoot server: %s", u.Message)
	}
	return e
}

// turnEndToken finds the special token the chat template closes an assistant turn
// with (<|eot_id|>, <|im_end|>, </s>, ...): the first token after the content.
func turnEndToken(tok *tokenizer.Tokenizer) int {
	const mark = "KVFOOT_MARK"
	out, err := tok.ApplyChatTemplate([]tokenizer.Message{{Role: "user", Content: "hi"}, {Role: "assistant", Content: mark}}, false)
	if err != nil {
		return -1
	}
	_, after, ok := strings.Cut(out, mark)
	if !ok {
		return -1
	}
	if ids := tok.Encode(after); len(ids) > 0 && tok.IsSpecial(ids[0]) {
		return ids[0]
	}
	return -1
}

// loadMasks reads every masks file into memory under its base name: the only files
// headmask reads from, so that nothing on disk can change or break them later.
func (s *Server) loadMasks() error {
	s.masks, s.masksFS = map[string]struct{}{}, memFS{}
	for _, f := range s.cfg.Masks {
		name := filepath.Base(f)
		if _, dup := s.masks[name]; dup {
			return fmt.Errorf("server: masks %s: two masks files are named %s", f, name)
		}
		data, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("server: masks: %w", err)
		}
		s.masksFS[name] = data
		if _, err := kv.New(s.shape, "headmask:masks="+name, kv.WithFS(s.masksFS)); err != nil {
			return fmt.Errorf("server: masks %s: %w", f, err)
		}
		s.masks[name] = struct{}{}
	}
	return nil
}

// memFS holds files in memory by name.
type memFS map[string][]byte

func (m memFS) Open(name string) (fs.File, error) {
	data, ok := m[name]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return memFile{bytes.NewReader(data)}, nil
}

type memFile struct{ *bytes.Reader }

func (memFile) Stat() (fs.FileInfo, error) { return nil, errors.ErrUnsupported }
func (memFile) Close() error               { return nil }

// policy checks spec for a request and returns its facts: every file it names (a
// headmask masks file) is one the server loaded, the grammar takes it, and the device, if
// any, can hold its cache.
func (s *Server) policy(spec string) (*kv.Facts, *apiError) {
	files, err := kv.Files(spec)
	if err != nil {
		return nil, unprocessable("kv_policy", "invalid_kv_policy", "kv_policy: %v", err)
	}
	for _, f := range files {
		if _, loaded := s.masks[f.Name]; loaded {
			continue
		}
		loaded := "none"
		if len(s.masks) > 0 {
			loaded = strings.Join(slices.Sorted(maps.Keys(s.masks)), ", ")
		}
		return nil, unprocessable("kv_policy", "unknown_masks",
			"kv_policy %q: %s=%s is not a masks file this server loaded (loaded: %s); a policy names loaded files by name, never by path",
			spec, f.Key, f.Name, loaded)
	}
	facts, err := kv.Describe(s.shape, spec, kv.WithFS(s.masksFS))
	if err != nil {
		return nil, unprocessable("kv_policy", "invalid_kv_policy", "kv_policy: %v", err)
	}
	if e := s.cfg.Device.check(s.shape, facts); e != nil {
		return nil, e
	}
	return facts, nil
}

// newCache builds a cache for spec, which policy has checked, when its request starts
// (on a device, a queued request holds no device memory). store is the device storage
// the cache holds, which the engine closes when the request ends; nil on the host.
func (s *Server) newCache(spec string, obs kv.Observer) (c *kv.Cache, store kv.Storage, e *apiError) {
	// a storage made before kv.New failed or panicked is no request's: free it now
	defer func() {
		if c == nil && store != nil {
			closeStorage(store)
			store = nil
		}
	}()
	opts := []kv.Option{kv.WithFS(s.masksFS)}
	if obs != nil {
		opts = append(opts, kv.WithObserver(obs))
	}
	if d := s.cfg.Device; d != nil {
		opts = append(opts, kv.WithStorage(func(sh kv.Shape, rep int, p kv.Precision) (kv.Storage, error) {
			st, err := d.Storage(sh, rep, p)
			store = st
			return st, err
		}))
	}
	c, err := kv.New(s.shape, spec, opts...)
	if err != nil {
		if d := s.cfg.Device; d != nil && d.Fault != nil {
			if fault, _ := d.Fault(err); fault {
				return nil, store, s.failure(spec, err)
			}
		}
		return nil, store, unprocessable("kv_policy", "invalid_kv_policy", "kv_policy: %v", err)
	}
	return c, store, nil
}

// Handler returns the HTTP API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	route := func(path, method string, h http.HandlerFunc, auth bool) {
		var hh http.Handler = s.only(method, h)
		if auth {
			hh = s.auth(hh)
		}
		mux.Handle(path, s.counted(path, hh))
	}
	route("/healthz", http.MethodGet, s.healthz, false)
	route("/metrics", http.MethodGet, promhttp.HandlerFor(s.met.reg, promhttp.HandlerOpts{}).ServeHTTP, true)
	route("/v1/models", http.MethodGet, s.listModels, true)
	route("/v1/models/{id}", http.MethodGet, s.getModel, true)
	route("/v1/completions", http.MethodPost, s.completions, true)
	route("/v1/chat/completions", http.MethodPost, s.chat, true)
	mux.Handle("/", s.counted("other", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, newError(http.StatusNotFound, "", "unknown_url", "no route %s %s", r.Method, r.URL.Path))
	})))
	return mux
}

// recorder remembers the status of a response; a handler whose client went away, or
// whose stream ended in an error after its 200, sets the final status itself.
// Every write gets a fresh deadline of writeTimeout: a response may be written long
// after its request arrived (a queued request, a long stream), and only a client that
// stops reading should time out.
type recorder struct {
	http.ResponseWriter
	status       int
	writeTimeout time.Duration
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if r.writeTimeout > 0 {
		http.NewResponseController(r.ResponseWriter).SetWriteDeadline(time.Now().Add(r.writeTimeout))
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// setStatus overrides the status counted for a response.
func setStatus(w http.ResponseWriter, code int) {
	if r, ok := w.(*recorder); ok {
		r.status = code
	}
}

// counted counts requests by endpoint and status (499: the client went away).
func (s *Server) counted(endpoint string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &recorder{ResponseWriter: w, writeTimeout: s.cfg.WriteTimeout}
		defer func() {
			// a panic no guard caught ends this request with a 500, never the process
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				logPanic(r.URL.Path, p)
				if rec.status == 0 {
					writeError(rec, newError(http.StatusInternalServerError, "", "internal_error", "the server failed on this request (panic: %v)", p))
				}
				count(s.met.requests.WithLabelValues(endpoint, "500"), 1)
			}
		}()
		h.ServeHTTP(rec, r)
		if rec.status == 0 {
			rec.status = 499
		}
		count(s.met.requests.WithLabelValues(endpoint, strconv.Itoa(rec.status)), 1)
	})
}

func (s *Server) only(method string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method {
			w.Header().Set("Allow", method)
			writeError(w, newError(http.StatusMethodNotAllowed, "", "method_not_allowed", "%s %s: want %s", r.Method, r.URL.Path, method))
			return
		}
		h(w, r)
	}
}

// auth checks the Bearer token in constant time (of hashes, so that the key's
// length does not leak either). The scheme's name is case-insensitive (RFC 9110
// §11.1).
func (s *Server) auth(h http.Handler) http.Handler {
	if s.cfg.APIKey == "" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, token, _ := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
		ok := strings.EqualFold(scheme, "Bearer")
		got := sha256.Sum256([]byte(strings.TrimSpace(token)))
		if !ok || subtle.ConstantTimeCompare(got[:], s.keyHash[:]) != 1 {
			writeError(w, newError(http.StatusUnauthorized, "", "invalid_api_key", "missing or wrong API key: send the header Authorization: Bearer KEY"))
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	st := s.Stats()
	status, code := "ok", http.StatusOK
	body := map[string]any{"model": s.cfg.ModelName, "running": st.Running, "queued": st.Queued,
		"kv_bytes_in_use": st.KVBytesInUse, "kv_bytes_reserved": st.KVBytesReserved, "kv_budget_bytes": s.cfg.KVBudget}
	switch u := s.eng.unusable.Load(); {
	case u != nil:
		status, code = "device_unusable", http.StatusServiceUnavailable
		body["error"] = u.Message
	case s.adm.isDraining():
		status, code = "draining", http.StatusServiceUnavailable
	}
	body["status"] = status
	writeJSON(w, code, body)
}

func (s *Server) modelObject() modelObject {
	return modelObject{ID: s.cfg.ModelName, Object: "model", Created: s.created, OwnedBy: "kvfoot", Context: s.cfg.Context}
}

func (s *Server) listModels(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": []modelObject{s.modelObject()}})
}

func (s *Server) getModel(w http.ResponseWriter, r *http.Request) {
	if id := r.PathValue("id"); id != s.cfg.ModelName {
		writeError(w, s.noModel(id))
		return
	}
	writeJSON(w, http.StatusOK, s.modelObject())
}

func (s *Server) noModel(id string) *apiError {
	return newError(http.StatusNotFound, "model", "model_not_found", "the model %q does not exist; this server serves %q", id, s.cfg.ModelName)
}

// Stats is a snapshot of the server's load.
type Stats struct {
	Running, Queued int
	KVBytesInUse    int64 // held by running requests after the last forward
	KVBytesPeak     int64 // the most held at once since the start, within forwards included
	KVBytesReserved int64 // predicted peaks of the running requests
}

// Stats returns the current load.
func (s *Server) Stats() Stats {
	s.adm.mu.Lock()
	st := Stats{Running: s.adm.running, Queued: len(s.adm.queue), KVBytesReserved: s.adm.reserved}
	s.adm.mu.Unlock()
	st.KVBytesInUse, st.KVBytesPeak = s.eng.inUse.Load(), s.eng.peak.Load()
	return st
}

// Drain stops admitting requests (503, queued ones included; Serve still answers
// new connections, with 503), waits for the running ones to finish until ctx is done,
// then ends whatever still runs and closes the server and its listeners. It returns
// ctx's error if requests had to be cut.
func (s *Server) Drain(ctx context.Context) error {
	idle := s.adm.drain()
	var err error
	select {
	case <-idle:
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.Close()
	return err
}

// Close ends every running request (503), stops the engine and then Serve.
func (s *Server) Close() {
	s.closing.Do(func() {
		close(s.eng.quit)
		<-s.eng.done
		s.shutdownHTTP()
	})
}

// readBody reads a request body up to the limit (413 past it).
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err == nil {
		// The read deadline has done its work; left, it would end the connection's
		// background read, and with it the request's context, during a long generation.
		// (After an error it stays: the connection, whose body is unread, is closed.)
		http.NewResponseController(w).SetReadDeadline(time.Time{})
	}
	var mb *http.MaxBytesError
	switch {
	case errors.As(err, &mb):
		return nil, newError(http.StatusRequestEntityTooLarge, "", "request_too_large", "request body over %d bytes", s.cfg.MaxBodyBytes)
	case isTimeout(err):
		return nil, newError(http.StatusRequestTimeout, "", "request_timeout", "the request body did not arrive within %v", s.cfg.ReadTimeout)
	case err != nil:
		return nil, badRequest("", "reading the request body: %v", err)
	}
	return body, nil
}

// newMeter returns a meter and its observer for one request.
func (s *Server) newMeter() (*footprint.Meter, *observer) {
	m := footprint.NewMeter(s.m.Config.Layers, s.m.Config.KVHeads)
	return m, &observer{meter: m}
}
