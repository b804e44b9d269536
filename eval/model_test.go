package eval

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/kvfoot/kvfoot/compute"
	"github.com/kvfoot/kvfoot/footprint"
	"github.com/kvfoot/kvfoot/kv"
	"github.com/kvfoot/kvfoot/model"
)

// The model backend stops when the stop function says so, or at maxNew.
func TestModelBackend(t *testing.T) {
	m, err := model.Load("../testdata/models/llama-gqa", model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	b := &ModelBackend{M: m, Chunk: 16}
	if b.Context() != 1024 {
		t.Errorf("context %d, want max_position_embeddings 1024", b.Context())
	}
	prompt := []int{5, 17, 99, 3, 250, 7, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}
	out, err := b.Run("full", prompt, 10, func(o []int) bool { return len(o) == 3 })
	if err != nil || len(out.IDs) != 3 {
		t.Fatalf("stop after 3: %v, %v", out.IDs, err)
	}
	long, err := b.Run("full", prompt, 6, func([]int) bool { return false })
	if err != nil || len(long.IDs) > 6 {
		t.Fatalf("maxNew 6: %v, %v", long.IDs, err)
	}
	for i := range out.IDs {
		if out.IDs[i] != long.IDs[i] {
			t.Errorf("greedy decoding differs between runs: %v vs %v", out.IDs, long.IDs)
		}
	}
	if _, err := b.Run("bogus-policy", prompt, 2, func([]int) bool { return false }); err == nil {
		t.Error("unknown method accepted")
	}
}

// The footprint a run reports is the meter's, which for a streaming cache equals the
// paper's formula with the prompt and the R−1 decoded-and-fed tokens.
func TestModelBackendFootprint(t *testing.T) {
	m, err := model.Load("../testdata/models/llama-gqa", model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	b := &ModelBackend{M: m, Chunk: 16}
	prompt := make([]int, 70)
	for i := range prompt {
		prompt[i] = (i*37 + 11) % 500
	}
	full, err := b.Run("full", prompt, 6, func([]int) bool { return false })
	if err != nil {
		t.Fatal(err)
	}
	if full.Footprint != 1 || full.Peak != 1 {
		t.Errorf("full cache: footprint %v, peak %v, want 1 and 1", full.Footprint, full.Peak)
	}
	out, err := b.Run("streaming:sink=2,window=8", prompt, 6, func([]int) bool { return false })
	if err != nil {
		t.Fatal(err)
	}
	want, err := footprint.Analytic(footprint.Params{Prompt: len(prompt), Response: len(out.IDs) - 1,
		Chunk: 16, Sink: 2, Window: 8, HeadSparsity: 1})
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(out.Footprint-want.Footprint) > 1e-12 || math.Abs(out.Peak-want.Peak) > 1e-12 {
		t.Errorf("streaming: measured footprint %v peak %v, formula %v %v", out.Footprint, out.Peak, want.Footprint, want.Peak)
	}
	if out.PeakBytes <= 0 || out.PeakBytes >= full.PeakBytes {
		t.Errorf("peak bytes: streaming %d, full %d", out.PeakBytes, full.PeakBytes)
	}
}

// deviceFault stands for a GPU's fault (gpu.Fault) in ModelBackend's tests.
type deviceFault struct{ error }

// faultyStorage is host storage that panics with a deviceFault (or, bug set, with a plain
// string) in the Append of its forward faultAt, and counts its Close.
type faultyStorage struct {
	kv.Storage
	faultAt, forwards int
	bug               bool
	closed            *int
	closeErr          error
}

func (f *faultyStorage) Append(layer int, k, v compute.Buf, n int) {
	if layer == 0 {
		f.forwards++
		if f.forwards == f.faultAt {
			if f.bug {
				panic("index out of range")
			}
			panic(deviceFault{errors.New("cuLaunchKernel: CUDA_ERROR_LAUNCH_FAILED")})
		}
	}
	f.Storage.Append(layer, k, v, n)
}

func (f *faultyStorage) Close() error { *f.closed++; return f.closeErr }

// A device fault inside the forward, or the storage's own error, is a *DeviceFault, with the
// device's health asked; the storage is closed after every run, failed or not; a panic that
// is no device fault is passed on, as it was.
func TestModelBackendDeviceFault(t *testing.T) {
	m, err := model.Load("../testdata/models/llama-gqa", model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var made, closed, checks int
	var faultAt int
	var bug bool
	var makeErr, closeErr error
	var unusable error // what Healthy answers
	b := &ModelBackend{M: m, Chunk: 16,
		Storage: func(s kv.Shape, rep int, p kv.Precision) (kv.Storage, error) {
			if makeErr != nil {
				return nil, makeErr
			}
			st, err := kv.HostStorage(s, rep, p)
			made++
			return &faultyStorage{Storage: st, faultAt: faultAt, bug: bug, closed: &closed, closeErr: closeErr}, err
		},
		Fault: func(v any) bool {
			e, ok := v.(error)
			var f deviceFault
			return ok && errors.As(e, &f)
		},
		Healthy: func() error { checks++; return unusable },
	}
	prompt := make([]int, 40)
	for i := range prompt {
		prompt[i] = (i*37 + 11) % 500
	}
	run := func() error {
		_, err := b.Run("full", prompt, 4, func([]int) bool { return false })
		return err
	}
	if err := run(); err != nil || made != 1 || closed != 1 {
		t.Fatalf("a run without faults: %v, %d storages made, %d closed", err, made, closed)
	}
	faultAt = 4 // the third chunk of 16 rows, then decoding
	var df *DeviceFault
	if err := run(); !errors.As(err, &df) || df.Unusable != nil || !strings.Contains(err.Error(), "CUDA_ERROR_LAUNCH_FAILED") || checks != 1 || closed != 2 {
		t.Errorf("a fault mid-run: %v (%#v), %d health checks, %d closed; want a DeviceFault naming it, the device healthy, the storage closed", err, df, checks, closed)
	}
	unusable = errors.New("CUDA_ERROR_ILLEGAL_ADDRESS")
	if err := run(); !errors.As(err, &df) || df.Unusable == nil || closed != 3 {
		t.Errorf("a fault leaving the device unusable: %v (%#v); want Unusable set", err, df)
	}
	unusable, faultAt = nil, 0
	makeErr = fmt.Errorf("KV cache: %w", deviceFault{errors.New("cuMemAlloc: CUDA_ERROR_OUT_OF_MEMORY")})
	if err := run(); !errors.As(err, &df) || !strings.Contains(err.Error(), "CUDA_ERROR_OUT_OF_MEMORY") {
		t.Errorf("the storage's own error: %v, want a DeviceFault", err)
	}
	makeErr, closeErr = nil, deviceFault{errors.New("cuStreamSynchronize: CUDA_ERROR_LAUNCH_FAILED")}
	if err := run(); !errors.As(err, &df) || !strings.Contains(err.Error(), "freeing the KV cache") {
		t.Errorf("a fault surfacing when the storage is freed: %v, want a DeviceFault", err)
	}
	closeErr = nil
	makeErr = errors.New("kv: no such policy")
	if err := run(); err == nil || errors.As(err, &df) {
		t.Errorf("an error that is no device fault: %v, want it as it is", err)
	}
	makeErr, faultAt, bug = nil, 2, true
	func() {
		defer func() {
			if r := recover(); r != "index out of range" {
				t.Errorf("a panic that is no device fault: recovered %v, want it passed on", r)
			}
		}()
		run()
	}()
	if made != closed {
		t.Errorf("%d storages made, %d closed", made, closed)
	}
}
