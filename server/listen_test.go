package server

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// served is a Server behind Serve on a real loopback listener.
type served struct {
	s    *Server
	addr string
	errc chan error // Serve's result
}

// startServe serves cfg on 127.0.0.1; tick, when set, runs before every engine tick.
func startServe(t *testing.T, cfg Config, tick func()) *served {
	t.Helper()
	m, tok := fixture(t)
	cfg.ModelName, cfg.APIKey = "tiny", testKey
	if cfg.Chunk == 0 {
		cfg.Chunk = 32
	}
	s, err := New(m, tok, cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.eng.beforeTick = tick
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sv := &served{s: s, addr: ln.Addr().String(), errc: make(chan error, 1)}
	go func() { sv.errc <- s.Serve(ln) }()
	t.Cleanup(s.Close)
	return sv
}

// dial opens a raw connection that gives up after 10 s, far past every timeout the
// tests set: reaching it means the server held the connection.
func (sv *served) dial(t *testing.T) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", sv.addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByServer reads c to its end and fails if the server did not close it.
func closedByServer(t *testing.T, c net.Conn, what string) string {
	t.Helper()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Errorf("%s: the server held the connection (%v); read %q", what, err, got)
	}
	return string(got)
}

// TestSlowClients: a request body, or headers, that stop arriving, and a keep-alive
// connection left idle, are closed by the server after their timeouts.
func TestSlowClients(t *testing.T) {
	sv := startServe(t, Config{ReadTimeout: 200 * time.Millisecond, IdleTimeout: 200 * time.Millisecond}, nil)

	body := sv.dial(t)
	io.WriteString(body, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+testKey+
		"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"model\":")
	if got := closedByServer(t, body, "a slow body"); !strings.HasPrefix(got, "HTTP/1.1 408") || !strings.Contains(got, "request_timeout") {
		t.Errorf("a slow body: %q, want 408 request_timeout", got)
	}

	headers := sv.dial(t)
	io.WriteString(headers, "POST /v1/completions HTTP/1.1\r\nHost: x\r\n")
	closedByServer(t, headers, "slow headers")

	idle := sv.dial(t)
	io.WriteString(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(idle)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Errorf("an idle connection: read %q, %v; want it closed by the server", rest, err)
	}
}

// TestLongResponsesOutliveWriteTimeout: a stream and a whole response that take
// longer than the read and write timeouts arrive complete: each write has its own
// deadline, and the request's read deadline ends with its body.
func TestLongResponsesOutliveWriteTimeout(t *testing.T) {
	const timeout = 100 * time.Millisecond
	// every tick waits 2 ms: 150 tokens take three times the timeouts
	sv := startServe(t, Config{ReadTimeout: timeout, WriteTimeout: timeout}, func() { time.Sleep(2 * time.Millisecond) })
	for _, stream := range []bool{true, false} {
		req, _ := http.NewRequest("POST", "http://"+sv.addr+"/v1/completions", strings.NewReader(
			`{"model":"tiny","prompt":"a","max_tokens":150,"ignore_eos":true,"stream":`+map[bool]string{true: "true", false: "false"}[stream]+`}`))
		req.Header.Set("Authorization", "Bearer "+testKey)
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		complete := strings.Contains(string(raw), `"completion_tokens":150`)
		if stream {
			complete = strings.HasSuffix(string(raw), "data: [DONE]\n\n") && strings.Count(string(raw), "data: ") > 100
		}
		if err != nil || resp.StatusCode != 200 || !complete {
			t.Errorf("stream=%v over %v: %d, %v, %d bytes ending %q; want it complete", stream, took, resp.StatusCode, err, len(raw), raw[max(0, len(raw)-80):])
		}
		if took < 3*timeout {
			t.Logf("stream=%v took %v only: the timeouts were not put to the test", stream, took)
		}
	}
}

// TestMaxConns: past the cap, a new connection is not served until one closes.
func TestMaxConns(t *testing.T) {
	sv := startServe(t, Config{MaxConns: 2}, nil)
	get := func(c net.Conn) (*http.Response, error) {
		io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
		}
		return resp, err
	}
	a, b := sv.dial(t), sv.dial(t)
	for _, c := range []net.Conn{a, b} {
		if _, err := get(c); err != nil {
			t.Fatal(err)
		}
	}
	third := sv.dial(t)
	third.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if resp, err := get(third); err == nil {
		t.Fatalf("a third connection was served (%s) with two open and a cap of 2", resp.Status)
	}
	a.Close()
	third.SetReadDeadline(time.Now().Add(10 * time.Second))
	if resp, err := http.ReadResponse(bufio.NewReader(third), nil); err != nil || resp.StatusCode != 200 {
		t.Errorf("the third connection once one closed: %v, %v", resp, err)
	}
}

// TestServeDrain: while Drain waits for a running stream, new requests get 503 (and
// /healthz says draining); the stream finishes, Drain returns nil, Serve returns
// http.ErrServerClosed and the listener is closed.
func TestServeDrain(t *testing.T) {
	var gate sync.Mutex
	sv := startServe(t, Config{}, func() { gate.Lock(); gate.Unlock() }) //lint:ignore SA2001 the lock is the wait
	req, _ := http.NewRequest("POST", "http://"+sv.addr+"/v1/completions",
		strings.NewReader(`{"model":"tiny","prompt":"a","max_tokens":20,"ignore_eos":true,"stream":true}`))
	req.Header.Set("Authorization", "Bearer "+testKey)
	gate.Lock()
	// a completion stream's headers come with its first token: after the gate
	type answer struct {
		resp *http.Response
		err  error
	}
	answered := make(chan answer, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		answered <- answer{resp, err}
	}()
	waitFor(t, func() bool { return sv.s.Stats().Running == 1 })
	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		drained <- sv.s.Drain(ctx)
	}()
	waitFor(t, func() bool { return sv.s.adm.isDraining() })
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	post, _ := http.NewRequest("POST", "http://"+sv.addr+"/v1/completions", strings.NewReader(`{"model":"tiny","prompt":"b","max_tokens":1}`))
	post.Header.Set("Authorization", "Bearer "+testKey)
	late, err := client.Do(post)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(late.Body)
	late.Body.Close()
	if late.StatusCode != 503 || !strings.Contains(string(raw), "server_draining") {
		t.Errorf("a request while draining: %d %s, want 503 server_draining", late.StatusCode, raw)
	}
	if h, err := client.Get("http://" + sv.addr + "/healthz"); err != nil || h.StatusCode != 503 {
		t.Errorf("healthz while draining: %v %v, want 503", h, err)
	}
	gate.Unlock()
	a := <-answered
	if a.err != nil {
		t.Fatal(a.err)
	}
	defer a.resp.Body.Close()
	all, err := io.ReadAll(a.resp.Body)
	if err != nil || !strings.HasSuffix(string(all), "data: [DONE]\n\n") || strings.Contains(string(all), `{"error":`) {
		t.Errorf("the running stream: %v, ending %q; want it finished", err, all[max(0, len(all)-100):])
	}
	if err := <-drained; err != nil {
		t.Errorf("drain: %v", err)
	}
	if err := <-sv.errc; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
	}
	if c, err := net.Dial("tcp", sv.addr); err == nil {
		c.Close()
		t.Error("the listener still accepts after the drain")
	}
}
