//go:build nocuda

package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/kvfoot/kvfoot/eval"
	"github.com/kvfoot/kvfoot/kv"
	"github.com/kvfoot/kvfoot/model"
	"github.com/kvfoot/kvfoot/server"
	"github.com/kvfoot/kvfoot/train"
)

// The CPU-only build (-tags nocuda): --device takes cpu and auto (which is the CPU), and no
// driver binding is linked, so CGO_ENABLED=0 gives a fully static binary.

func deviceFlag(fs *flag.FlagSet) *string {
	return fs.String("device", "cpu", "where the forward pass runs: cpu or auto (this build has no GPU support)")
}

type target struct{}

func openDevice(name string) (*target, error) {
	switch name {
	case "cpu":
		return &target{}, nil
	case "auto":
		fmt.Fprintln(os.Stderr, "device: cpu (this kvfoot was built without GPU support)")
		return &target{}, nil
	}
	return nil, fmt.Errorf("--device %q: this kvfoot was built with -tags nocuda, without GPU support: want cpu or auto", name)
}

func (*target) load(*model.Model) ([]kv.Option, error) { return nil, nil }

func (*target) trainNet(m *model.Model, opts train.Options) (train.Network, func(), error) {
	n, err := train.New(m, opts)
	return n, func() {}, err
}
func (*target) close()       {}
func (*target) onGPU() bool  { return false }
func (*target) name() string { return "cpu" }
func (*target) describe(*model.Config, func(string, any), string, int, ...kv.Option) error {
	return nil
}

func recoverFault(*error) {}

func (*target) failSamples(*eval.ModelBackend) {}

func (*target) kvBudget() (int64, error) { return 0, nil }

func (*target) workers(mb *eval.ModelBackend, n int) ([]eval.Backend, func(), error) {
	out := []eval.Backend{mb}
	for range n - 1 {
		w := *mb
		out = append(out, &w)
	}
	return out, func() {}, nil
}

func (*target) serverDevice(budget int64, _ bool) (*server.Device, int64, error) {
	return nil, budget, nil
}
