//go:build !nocuda

package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/kvfoot/kvfoot/eval"
	"github.com/kvfoot/kvfoot/gpu"
	"github.com/kvfoot/kvfoot/kv"
	"github.com/kvfoot/kvfoot/model"
	"github.com/kvfoot/kvfoot/server"
	"github.com/kvfoot/kvfoot/train"
)

// deviceFlag adds --device to a command. The NVIDIA driver is loaded only for cuda and auto,
// so the default, cpu, behaves on a machine without a GPU as kvfoot always has. A build with
// -tags nocuda leaves the GPU out (device_nocuda.go): a fully static, CPU-only binary.
func deviceFlag(fs *flag.FlagSet) *string {
	return fs.String("device", "cpu", "where the forward pass and the KV cache run: cpu, cuda, cuda:N, or auto (the GPU when one is usable, else the CPU)")
}

// target is the device a command runs on: the CPU when gpu is nil.
type target struct{ gpu *gpu.GPU }

// openDevice resolves --device. auto falls back to the CPU when no GPU is usable; both say on
// stderr which they chose.
func openDevice(name string) (*target, error) {
	switch name {
	case "cpu":
		return &target{}, nil
	case "auto":
		g, err := gpu.Open("cuda")
		if err != nil {
			fmt.Fprintf(os.Stderr, "device: cpu (no usable GPU: %v)\n", err)
			return &target{}, nil
		}
		fmt.Fprintf(os.Stderr, "device: %s\n", g.Name())
		return &target{gpu: g}, nil
	}
	if _, ok, err := gpu.ParseDevice(name); err != nil || !ok {
		return nil, fmt.Errorf("--device %q: want auto, cpu, cuda or cuda:N", name)
	}
	g, err := gpu.Open(name)
	if err != nil {
		return nil, fmt.Errorf("--device: %w", err)
	}
	return &target{gpu: g}, nil
}

// load puts m's forward on the device and returns the cache options that put its caches there.
func (c *target) load(m *model.Model) ([]kv.Option, error) {
	if c.gpu == nil {
		return nil, nil
	}
	b, err := c.gpu.Upload(m)
	if err != nil {
		return nil, fmt.Errorf("--device: %w", err)
	}
	m.SetBackend(b)
	return []kv.Option{kv.WithStorage(c.gpu.Storage)}, nil
}

// trainNet makes the network kvfoot prulong and duo train masks with on the device, and
// what frees it.
func (c *target) trainNet(m *model.Model, opts train.Options) (train.Network, func(), error) {
	if c.gpu == nil {
		n, err := train.New(m, opts)
		return n, func() {}, err
	}
	n, err := c.gpu.NewNet(m, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("--device: %w", err)
	}
	return n, func() { n.Close() }, nil
}

// onGPU says whether the command runs on a GPU.
func (c *target) onGPU() bool { return c.gpu != nil }

func (c *target) close() {
	if c.gpu != nil {
		c.gpu.Close()
	}
}

// recoverFault, deferred around work on the device, turns a GPU failure inside the forward
// pass (a gpu.Fault: a kernel launch, the memory for a growing cache) into *err.
func recoverFault(err *error) {
	if r := recover(); r != nil {
		f, ok := r.(gpu.Fault)
		if !ok {
			panic(r)
		}
		*err = f
	}
}

// serverDevice is what kvfoot serve tells the server about the device, after load: where the
// requests' caches live (nil on the CPU) and the KV budget, budget when set, else by default.
// On the GPU the default is a third of the memory free after the weights, less gpu.Headroom
// (activations, the driver's own): a request's pool of blocks may hold up to twice its
// entries once it has doubled, and while it grows the old pool and the new one are held
// together, so a budget of a third of the memory is never short of it. A budget the free
// memory cannot hold at all is refused.
func (c *target) serverDevice(budget int64, set bool) (*server.Device, int64, error) {
	if c.gpu == nil {
		return nil, budget, nil
	}
	free, _, err := c.gpu.MemInfo()
	if err != nil {
		return nil, 0, fmt.Errorf("--device: %w", err)
	}
	left := int64(free) - gpu.Headroom
	if left <= 0 {
		return nil, 0, fmt.Errorf("--device: %s has %s free after the weights, less %s of working memory: no room for KV caches",
			c.gpu.Name(), gibs(int64(free)), gibs(gpu.Headroom))
	}
	switch {
	case !set:
		budget = left / 3
		fmt.Fprintf(os.Stderr, "kvfoot serve: KV budget %s: a third of the %s %s has free after the weights, less %s of working memory\n",
			gibs(budget), gibs(int64(free)), c.gpu.Name(), gibs(gpu.Headroom))
	case budget > left:
		return nil, 0, fmt.Errorf("--kv-budget %s: %s has %s free after the weights, less %s of working memory; "+
			"leave it out for a third of that, %s, which the caches' pools never outgrow", gibs(budget), c.gpu.Name(), gibs(int64(free)), gibs(gpu.Headroom), gibs(left/3))
	}
	g := c.gpu
	return &server.Device{Name: g.Name(), Storage: g.Storage, Check: g.CheckStorage, Stored: gpu.StoredPrecision, Fault: gpu.Classify,
		Healthy: c.healthy}, budget, nil
}

// healthy asks the GPU, after a fault, whether it can still run: a sticky error (an illegal
// address, a kernel that trapped) is returned by every later call, the wait for the queued
// work first, while out of memory leaves the context usable.
func (c *target) healthy() error {
	d := c.gpu.Device()
	if err := d.Sync(); err != nil {
		return err
	}
	_, _, err := d.MemInfo()
	return err
}

// failSamples makes a study on the GPU record a sample that the device fails on (out of
// memory for its cache, a kernel fault) as failed and go on, instead of ending; it closes
// every sample's storage when the sample ends. On the CPU a panic stays a bug.
func (c *target) failSamples(mb *eval.ModelBackend) {
	if c.gpu == nil {
		return
	}
	mb.Storage = c.gpu.Storage
	mb.Fault = func(v any) bool { fault, _ := gpu.Classify(v); return fault }
	mb.Healthy = c.healthy
}

// workers returns a study's n stage workers: mb itself and n-1 copies of it, each copy on a
// handle of its own on the GPU (its own stream, so the workers' launches overlap) with mb's
// weights shared, and the KV budget split between them; on the CPU, copies that share the
// model and the cores. close frees the extra handles.
func (c *target) workers(mb *eval.ModelBackend, n int) (_ []eval.Backend, close func(), err error) {
	out := []eval.Backend{mb}
	mb.KVBudget /= int64(n)
	if c.gpu == nil {
		for range n - 1 {
			w := *mb
			out = append(out, &w)
		}
		return out, func() {}, nil
	}
	var handles []*target
	close = func() {
		for _, h := range handles {
			h.close()
		}
	}
	for range n - 1 {
		g, err := c.gpu.Reopen()
		if err != nil {
			close()
			return nil, nil, fmt.Errorf("--workers: %w", err)
		}
		h := &target{gpu: g}
		handles = append(handles, h)
		b, err := g.Share(mb.M.Backend())
		if err != nil {
			close()
			return nil, nil, fmt.Errorf("--workers: %w", err)
		}
		m := *mb.M
		m.SetBackend(b)
		w := *mb
		w.M, w.CacheOptions = &m, []kv.Option{kv.WithStorage(g.Storage)}
		h.failSamples(&w)
		out = append(out, &w)
	}
	return out, close, nil
}

// kvBudget is what the caches of a study's batch may hold on the device: a third of the
// memory free after the weights, less gpu.Headroom, as kvfoot serve's default budget (a
// cache's pool may double, the old and the new held together while it grows); 0 (no bound)
// on the CPU.
func (c *target) kvBudget() (int64, error) {
	if c.gpu == nil {
		return 0, nil
	}
	free, _, err := c.gpu.MemInfo()
	if err != nil {
		return 0, fmt.Errorf("--device: %w", err)
	}
	return max(int64(free)-gpu.Headroom, 0) / 3, nil
}

// gibs formats bytes in GiB for messages.
func gibs(b int64) string { return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30)) }

// describe adds the device's rows to inspect's output: the GPU, its memory, and the
// longest context that fits beside the model's bf16 weights with full attention and, when
// spec is given, with that policy pre-filling in chunks of chunk tokens.
func (c *target) describe(cfg *model.Config, row func(string, any), spec string, chunk int, opts ...kv.Option) error {
	if c.gpu == nil {
		return nil
	}
	free, total, err := c.gpu.MemInfo()
	if err != nil {
		return err
	}
	row("device", c.gpu.Name())
	row("matrix products (GEMM)", c.gpu.Device().GEMMName())
	row("CUDA graphs", c.gpu.Device().GraphsName())
	inPlace, growth := c.gpu.Device().GrowsInPlace()
	row("KV pool growth", growth)
	row("device memory", fmt.Sprintf("%.2f GiB free of %.2f GiB", float64(free)/(1<<30), float64(total)/(1<<30)))
	if err := gpu.Supports(cfg); err != nil {
		row("longest context on the device", err.Error())
		return nil
	}
	weights := 2 * cfg.Params()
	left := int64(free) - weights - gpu.Headroom
	row("weights on the device (bf16)", fmt.Sprintf("%.2f GiB", float64(weights)/(1<<30)))
	shape := kv.Shape(cfg.Shape())
	row("longest context on the device", fmt.Sprintf("%d tokens (full attention, bf16 KV cache)", gpu.LongestContext(shape, left, inPlace)))
	if spec == "" {
		return nil
	}
	f, err := kv.Describe(shape, spec, opts...)
	if err != nil {
		return fmt.Errorf("--kv: %w", err)
	}
	stored := shape
	stored.KVHeads = f.StoredHeads
	if err := c.gpu.CheckStorage(stored, f.StoredHeads/shape.KVHeads, f.Precision); err != nil {
		row("longest context on the device, "+spec, err.Error())
		return nil
	}
	n, err := gpu.LongestContextFor(shape, f, left, chunk, 1<<30, inPlace)
	if err != nil {
		return fmt.Errorf("--kv: %w", err)
	}
	row("longest context on the device, "+spec, fmt.Sprintf("%d tokens (pre-fill in chunks of %d; the model's context is %d)", n, chunk, cfg.MaxPositions))
	return nil
}

// name is the device in words: the GPU's name, or "cpu".
func (c *target) name() string {
	if c.gpu == nil {
		return "cpu"
	}
	return c.gpu.Name()
}
