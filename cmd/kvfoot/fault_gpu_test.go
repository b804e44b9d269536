//go:build !nocuda

package main

import (
	"errors"
	"os"
	"testing"

	"github.com/kvfoot/kvfoot/compute"
	"github.com/kvfoot/kvfoot/eval"
	"github.com/kvfoot/kvfoot/model"
)

// gpuModel opens the GPU and puts the built-in model on it, or skips.
func gpuModel(t *testing.T) (*target, *model.Model, *eval.ModelBackend) {
	t.Helper()
	dev, err := openDevice("cuda")
	if err != nil {
		t.Skipf("no usable GPU: %v", err)
	}
	m, err := loadModel(builtinModel)
	if err != nil {
		dev.close()
		t.Fatal(err)
	}
	opts, err := dev.load(m)
	if err != nil {
		dev.close()
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.close(); m.Close() })
	mb := &eval.ModelBackend{M: m, Chunk: 256, CacheOptions: opts}
	dev.failSamples(mb)
	return dev, m, mb
}

func freeMiB(t *testing.T, dev *target) int64 {
	t.Helper()
	free, _, err := dev.gpu.MemInfo()
	if err != nil {
		t.Fatal(err)
	}
	return int64(free >> 20)
}

// A runner's activations on the GPU are freed by Close, and a study's samples hold no device
// memory once they end (their runner and their cache's storage are freed, not left to the
// collector): five more samples leave the free memory where the first left it.
func TestGPUFreesRunnersAndSamples(t *testing.T) {
	dev, m, mb := gpuModel(t)
	c := m.Config
	const rows = 4096
	want := int64(rows) * int64(2*c.Hidden+2*c.Heads*c.HeadDim+2*c.KVHeads*c.HeadDim+2*c.Intermediate+c.HeadDim) * 2 >> 20
	free0 := freeMiB(t, dev)
	r := model.NewRunner(m, rows)
	free1 := freeMiB(t, dev)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	free2 := freeMiB(t, dev)
	t.Logf("free memory: %d MiB, %d MiB with a runner of %d rows (%d MiB of activations), %d MiB after Close", free0, free1, rows, want, free2)
	if free0-free1 < want*9/10 || free2 < free0-8 {
		t.Errorf("the runner took %d MiB (want about %d) and Close gave back %d MiB", free0-free1, want, free2-free1)
	}
	prompt := make([]int, 3000)
	for i := range prompt {
		prompt[i] = (i*37 + 11) % 1000
	}
	run := func() {
		if _, err := mb.Run("full", prompt, 8, func([]int) bool { return false }); err != nil {
			t.Fatal(err)
		}
	}
	run() // the first sample sets up what stays (the matrix library's workspace)
	before := freeMiB(t, dev)
	for range 5 {
		run()
	}
	after := freeMiB(t, dev)
	t.Logf("free memory after one sample %d MiB, after five more %d MiB", before, after)
	if after < before-8 {
		t.Errorf("five samples of 3000 tokens kept %d MiB of device memory", before-after)
	}
}

// An illegal address is a sticky error: the health query the server and the study ask after a
// fault must see it, and a sample run after it is a DeviceFault that says the device is
// unusable. It breaks the CUDA context for good, so it runs only when asked, alone:
// KVFOOT_GPU_FAULT_TEST=1 go test -run TestGPUStickyFault.
func TestGPUStickyFault(t *testing.T) {
	if os.Getenv("KVFOOT_GPU_FAULT_TEST") != "1" {
		t.Skip("breaks the GPU's context for the rest of the process: set KVFOOT_GPU_FAULT_TEST=1 and run it alone")
	}
	dev, m, mb := gpuModel(t)
	if err := dev.healthy(); err != nil {
		t.Fatalf("a healthy GPU: %v", err)
	}
	bogus := compute.Buf{Dev: 1 << 44, N: m.Config.Hidden, Elem: 2} // no allocation lives there
	m.Backend().RMSNorm(bogus, bogus, m.Layers[0].AttnNorm, m.Config.NormEps, 1)
	err := dev.healthy()
	t.Logf("health after a kernel wrote to an illegal address: %v", err)
	if err == nil {
		t.Fatal("the health query saw no fault after a kernel wrote to an illegal address")
	}
	_, err = mb.Run("full", []int{1, 2, 3, 4}, 2, func([]int) bool { return false })
	var df *eval.DeviceFault
	if !errors.As(err, &df) || df.Unusable == nil {
		t.Errorf("a sample after the fault: %v (%#v), want a DeviceFault saying the device is unusable", err, df)
	}
}
