package main

import (
	"bufio"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets a test run the kvfoot command itself: the test binary started with
// KVFOOT_TEST_MAIN=1 is kvfoot, its arguments those after "--".
func TestMain(m *testing.M) {
	if os.Getenv("KVFOOT_TEST_MAIN") == "1" {
		for i, a := range os.Args {
			if a == "--" {
				os.Args = append([]string{"kvfoot"}, os.Args[i+1:]...)
				break
			}
		}
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// kvfootProcess starts kvfoot with args as a process of its own, with tmp as its
// temporary folder.
func kvfootProcess(t *testing.T, tmp string, args ...string) (*exec.Cmd, *bufio.Reader) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^$", "--"}, args...)...)
	cmd.Env = append(os.Environ(), "KVFOOT_TEST_MAIN=1", "TMPDIR="+tmp)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, bufio.NewReader(stderr)
}

// A real SIGTERM or SIGINT drains kvfoot serve as the README says: a running
// stream finishes and the process exits 0, leaving nothing in its temporary folder;
// no other handler ends it at the signal.
func TestServeDrainsOnSignal(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			tmp := t.TempDir()
			cmd, stderr := kvfootProcess(t, tmp, "serve", "--model", "../../models/kvfoot-small", "--addr", "127.0.0.1:0",
				"--kv-budget", "64MiB", "--drain-timeout", "60s", "--threads", "1", "--masks", "../../models/kvfoot-small/masks/prulong/masks_soft.tsv")
			line, err := stderr.ReadString('\n')
			_, url, ok := strings.Cut(strings.TrimSpace(line), "listening on ")
			if err != nil || !ok {
				t.Fatalf("serve said %q (%v)", line, err)
			}
			resp, err := http.Post(url+"/completions", "application/json", strings.NewReader(
				`{"model":"kvfoot-small","prompt":"package main\n\nfunc","max_tokens":48,"temperature":0,"ignore_eos":true,"stream":true}`))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body := bufio.NewReader(resp.Body)
			if first, err := body.ReadString('\n'); err != nil || !strings.HasPrefix(first, "data: ") {
				t.Fatalf("first stream line %q, %v", first, err)
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			var rest strings.Builder
			for {
				l, err := body.ReadString('\n')
				rest.WriteString(l)
				if err != nil {
					break
				}
			}
			if !strings.Contains(rest.String(), "data: [DONE]") {
				t.Errorf("the running stream was cut at the signal: %q", rest.String())
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				var exit *exec.ExitError
				if errors.As(err, &exit) {
					t.Errorf("serve exited %d at %v, want 0 after draining", exit.ExitCode(), sig)
				} else if err != nil {
					t.Error(err)
				}
			case <-time.After(60 * time.Second):
				t.Fatal("serve still running a minute after the signal")
			}
			if left, _ := os.ReadDir(tmp); len(left) > 0 {
				t.Errorf("serve left %s in its temporary folder", left[0].Name())
			}
		})
	}
}
