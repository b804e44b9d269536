package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kvfoot/kvfoot/internal/bytesize"
	"github.com/kvfoot/kvfoot/internal/modeldir"
	"github.com/kvfoot/kvfoot/model"
	"github.com/kvfoot/kvfoot/server"
	"github.com/kvfoot/kvfoot/tokenizer"
)

func init() {
	register("serve", "an OpenAI-compatible HTTP server (completions, chat, streaming) with per-request KV policies and budgets", runServe)
}

// runServe drains on the first SIGTERM or SIGINT (instead of main's exit at once); a
// second one ends the process at once.
func runServe(args []string) error {
	signal.Reset(syscall.SIGTERM, os.Interrupt)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		stop()
	}()
	return serve(ctx, args, func(addr string) {
		fmt.Fprintf(os.Stderr, "kvfoot serve: listening on http://%s/v1\n", addr)
	})
}

// serve runs the server until ctx is done (SIGTERM), then drains it: new requests
// get 503 while the running ones finish, within --drain-timeout; past it they are cut
// and serve returns an error. ready is told the address once it listens.
func serve(ctx context.Context, args []string, ready func(addr string)) error {
	fs := newFlags("serve")
	dir := fs.String("model", "", "model folder (config.json, safetensors weights, tokenizer.json; default: the built-in model)")
	random := fs.String("random", "", "serve a model of a preset shape with random bf16 weights instead, for load tests, with --model's tokenizer: "+
		strings.Join(presetNames(), ", "))
	addr := fs.String("addr", "127.0.0.1:8080", "address to listen on (loopback unless told otherwise)")
	policy := fs.String("policy", "full", "KV cache policy of requests without kv_policy (the spec grammar of every command)")
	budget := fs.String("kv-budget", "", "KV memory the running requests' predicted peaks may reserve in all, e.g. 512MiB or 2GiB "+
		"(default: 2GiB on the CPU; on a GPU, a third of its memory free after the weights, less 512MiB of working memory)")
	device := deviceFlag(fs)
	apiKey := fs.String("api-key", "", "Bearer token required on /v1 and /metrics (default $KVFOOT_API_KEY; none: no check)")
	maxConcurrent := fs.Int("max-concurrent", 64, "requests running (batched) at once")
	maxQueue := fs.Int("max-queue", 256, "requests waiting for admission; past it, 429 with Retry-After")
	threads := fs.Int("threads", 0, "kernel threads (0: all cores)")
	chunk := fs.Int("chunk", 512, "pre-fill chunk size in tokens: at most this many pre-fill rows join each batched forward")
	maxTokens := fs.Int("max-tokens", 0, "most tokens one request may generate (0: the model's context)")
	masks := fs.String("masks", "", "comma-separated headmask masks files (TSV) that a kv_policy may name by base name, e.g. masks=m.tsv")
	name := fs.String("model-name", "", "the model id clients send (default: the model folder's name, or the --random preset's)")
	drain := fs.Duration("drain-timeout", 30*time.Second, "on SIGTERM or SIGINT, how long running requests may take to finish (new ones get 503); past it they are cut and serve exits with status 1")
	readTimeout := fs.Duration("read-timeout", 30*time.Second, "most time to read a request, headers and body")
	writeTimeout := fs.Duration("write-timeout", 30*time.Second, "most time for each write of a response (every chunk of a stream gets its own)")
	idleTimeout := fs.Duration("idle-timeout", 2*time.Minute, "a keep-alive connection idle this long is closed")
	maxConns := fs.Int("max-conns", 1024, "open connections at most; more wait to be accepted")
	stepTimeout := fs.Duration("step-timeout", 5*time.Minute, "with --device cuda: a forward step running longer means the GPU hangs; every request then gets 503 and /healthz says so, until a restart")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"--drain-timeout", *drain}, {"--read-timeout", *readTimeout}, {"--write-timeout", *writeTimeout}, {"--idle-timeout", *idleTimeout}, {"--step-timeout", *stepTimeout}} {
		if d.v <= 0 {
			return fmt.Errorf("%s %v: want a positive duration", d.name, d.v)
		}
	}
	if *maxConns < 1 {
		return fmt.Errorf("--max-conns %d: want at least 1", *maxConns)
	}
	if err := setThreads(*threads); err != nil {
		return err
	}
	var kvBudget int64 = 2 << 30 // the CPU's default; on a GPU serverDevice sets it unless given
	var err error
	if *budget != "" {
		if kvBudget, err = bytesize.Parse(*budget); err != nil {
			return fmt.Errorf("--kv-budget: %w", err)
		}
	}
	if *apiKey == "" {
		*apiKey = os.Getenv("KVFOOT_API_KEY")
	}
	if *dir, err = modeldir.Locate(*dir); err != nil {
		return err
	}
	var cfg model.Config
	if *random != "" {
		var ok bool
		if cfg, ok = model.Presets[*random]; !ok {
			return fmt.Errorf("--random %q: unknown preset (known: %s)", *random, strings.Join(presetNames(), ", "))
		}
	}
	if *name == "" {
		abs, _ := filepath.Abs(*dir)
		*name = filepath.Base(abs)
		if *random != "" {
			*name = *random
		}
	}
	var masksFiles []string
	if *masks != "" {
		masksFiles = strings.Split(*masks, ",")
	}
	tok, err := tokenizer.Open(*dir)
	if err != nil {
		return fmt.Errorf("--model: %w", err)
	}
	dev, err := openDevice(*device)
	if err != nil {
		return err
	}
	defer dev.close()
	var m *model.Model
	if *random != "" {
		m = model.NewRandomBF16(cfg, 1)
		inVocab(m, tok.VocabSize())
	} else if m, err = model.Open(*dir, model.LoadOptions{}); err != nil {
		return err
	}
	defer m.Close()
	// the weights go up once; every request's cache is made on the device by the server
	if _, err := dev.load(m); err != nil {
		return err
	}
	sd, kvBudget, err := dev.serverDevice(kvBudget, *budget != "")
	if err != nil {
		return err
	}
	if sd != nil {
		sd.StepTimeout = *stepTimeout
	}
	srv, err := server.New(m, tok, server.Config{
		ModelName: *name, Policy: *policy, KVBudget: kvBudget, APIKey: *apiKey, Device: sd,
		MaxConcurrent: *maxConcurrent, MaxQueue: *maxQueue, Chunk: *chunk, MaxTokens: *maxTokens, Masks: masksFiles,
		ReadTimeout: *readTimeout, WriteTimeout: *writeTimeout, IdleTimeout: *idleTimeout, MaxConns: *maxConns,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		srv.Close()
		return fmt.Errorf("--addr: %w", err)
	}
	if host, _, _ := net.SplitHostPort(*addr); *apiKey == "" && !isLoopback(host) {
		fmt.Fprintf(os.Stderr, "kvfoot serve: warning: listening on %s without --api-key\n", *addr)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	ready(ln.Addr().String())
	select {
	case err := <-errc:
		srv.Close()
		return err
	case <-ctx.Done():
	}
	dctx, cancel := context.WithTimeout(context.Background(), *drain)
	defer cancel()
	// Drain answers 503 to new requests while the running ones finish, then stops
	// listening once every handler has returned.
	err = srv.Drain(dctx)
	<-errc
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("--drain-timeout %v passed before the running requests finished; they were cut", *drain)
	}
	return nil
}

// inVocab zeroes the rows of a random model's LM head past the tokenizer's n tokens: their
// logits are 0, below the largest of the thousands of other, random ones, so greedy tokens
// stay ones the tokenizer decodes, and a load test sees every token as text and times it.
// The shape, and so the work of each forward, is the preset's.
func inVocab(m *model.Model, n int) {
	h := &m.Head
	if n >= h.Rows {
		return
	}
	if h.BF16 != nil {
		clear(h.BF16[n*h.Cols:])
	} else {
		clear(h.F32[n*h.Cols:])
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
