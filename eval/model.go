package eval

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/kvfoot/kvfoot/footprint"
	"github.com/kvfoot/kvfoot/internal/modeldir"
	"github.com/kvfoot/kvfoot/kv"
	"github.com/kvfoot/kvfoot/model"
)

// ModelBackend runs prompts on a loaded model, with a fresh cache of the method's
// policy for every prompt.
type ModelBackend struct {
	M     *model.Model
	Chunk int // pre-fill chunk size; 0: the whole prompt at once
	// DecodeLast pre-fills all of a prompt but its last token and feeds that one as the
	// first decode step, as the paper's harness does.
	DecodeLast bool
	// Dir is the model's folder: the SHA-256 of its files (modeldir.Hash) identifies
	// the model in the results; "" leaves it unrecorded.
	Dir string
	// CacheOptions are added to every cache's.
	CacheOptions []kv.Option
	// Storage, when set, makes every cache's storage on a device (a GPU's), in place of a
	// kv.WithStorage among CacheOptions; a storage with a Close method is closed when its
	// run ends, so that the next sample finds its memory free.
	Storage kv.StorageMaker
	// Fault, when set, says whether v (a panic inside the forward, or an error of the
	// storage) is a failure of the device rather than a bug: Run returns it as a
	// *DeviceFault, which fails the sample and not the study.
	Fault func(v any) bool
	// Healthy, when set, is asked after a device failure whether the device can still run
	// (DeviceFault.Unusable).
	Healthy func() error
}

// Context is the model's max_position_embeddings.
func (mb *ModelBackend) Context() int { return mb.M.Config.MaxPositions }

// Check builds a cache of the method's policy for the model's shape.
func (mb *ModelBackend) Check(method string) error {
	_, err := kv.New(kv.Shape(mb.M.Shape()), method, mb.CacheOptions...)
	return err
}

// Settings are the hash of the model's files and the pre-fill chunk size.
func (mb *ModelBackend) Settings() (map[string]string, error) {
	s := map[string]string{"chunk": strconv.Itoa(mb.Chunk), "decode_last": strconv.FormatBool(mb.DecodeLast)}
	if mb.Dir != "" {
		h, err := modeldir.Hash(mb.Dir)
		if err != nil {
			return nil, err
		}
		s["weights_sha256"] = h
	}
	return s, nil
}

// Run pre-fills the prompt and decodes greedily until maxNew tokens, an EOS id of
// the config, or stop.
func (mb *ModelBackend) Run(method string, prompt []int, maxNew int, stop func([]int) bool) (_ Output, err error) {
	defer func() {
		if mb.Fault == nil {
			return
		}
		switch r := recover(); {
		case r != nil && !mb.Fault(r):
			panic(r) // a bug, not the device
		case r != nil:
			e, ok := r.(error)
			if !ok {
				e = fmt.Errorf("%v", r)
			}
			err = mb.deviceFault(e)
		case err != nil && mb.Fault(err):
			err = mb.deviceFault(err)
		}
	}()
	c := mb.M.Config
	meter := footprint.NewMeter(c.Layers, c.KVHeads)
	opts := append(slices.Clip(mb.CacheOptions), kv.WithObserver(meter))
	if mb.Storage != nil {
		var store kv.Storage
		defer func() {
			// a kernel's fault can surface only in the wait for the queue before the free
			if cl, ok := store.(interface{ Close() error }); ok {
				if cerr := cl.Close(); cerr != nil && err == nil {
					err = fmt.Errorf("freeing the KV cache: %w", cerr)
				}
			}
		}()
		opts = append(opts, kv.WithStorage(func(s kv.Shape, rep int, p kv.Precision) (kv.Storage, error) {
			st, err := mb.Storage(s, rep, p)
			store = st
			return st, err
		}))
	}
	cache, err := kv.New(kv.Shape(mb.M.Shape()), method, opts...)
	if err != nil {
		return Output{}, err
	}
	var out []int
	res, err := model.Generate(mb.M, cache, prompt, model.GenerateOptions{
		MaxTokens:  maxNew,
		Chunk:      mb.Chunk,
		DecodeLast: mb.DecodeLast,
		Stop:       mb.M.Config.EOS,
		OnToken: func(id int) bool {
			out = append(out, id)
			return !stop(out)
		},
	})
	if err != nil {
		return Output{}, err
	}
	fr := meter.Report(true)
	heads := float64(c.Layers * fr.Heads)
	tl := make([]TimelineStep, len(fr.Timeline))
	for i, st := range fr.Timeline {
		tl[i] = TimelineStep{Pos: st.Pos, N: st.N, Prefill: st.Prefill, Visible: float64(st.Visible) / heads,
			Held: float64(st.Entries) / heads, Bytes: st.Bytes}
	}
	return Output{IDs: res.IDs, Prefill: res.Prefill, Decode: res.Decode,
		Footprint: fr.Footprint, Peak: fr.Peak, PeakBytes: fr.PeakBytes, Timeline: tl}, nil
}

// deviceFault is err as a failed sample, saying whether the device is still usable.
func (mb *ModelBackend) deviceFault(err error) *DeviceFault {
	f := &DeviceFault{Err: err}
	if mb.Healthy != nil {
		f.Unusable = mb.Healthy()
	}
	return f
}
