package eval

import (
	"fmt"
	"slices"
	"strconv"
	"time"

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
	// Batch is the most samples of one setting run together (RunBatch); ≤ 1 runs them
	// one by one.
	Batch int
	// StepRows is the most pre-fill rows one batched forward takes (several samples'
	// chunks together; a chunk bigger than it still runs, alone); 0 means one chunk. A
	// GPU wants thousands of rows a forward: the built-in model's 512-row chunk leaves it
	// waiting on kernel launches.
	StepRows int
	// KVBudget, when positive, bounds the bytes that the caches of a batch may hold
	// together, each counted at its policy's predicted peak (kv.Facts.PeakBytes): a
	// sample joins the batch only when its peak fits beside the running ones' (one runs
	// alone whatever its peak), so that a GPU's memory holds the batch.
	KVBudget int64
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
func (mb *ModelBackend) Run(method string, prompt []int, maxNew int, stop func([]int) bool) (out Output, err error) {
	err = mb.guard(func() (err error) {
		sc, err := mb.newCache(method)
		if err != nil {
			return err
		}
		defer func() {
			if cerr := sc.close(); cerr != nil && err == nil {
				err = cerr
			}
		}()
		var ids []int
		res, err := model.Generate(mb.M, sc.cache, prompt, model.GenerateOptions{
			MaxTokens:  maxNew,
			Chunk:      mb.Chunk,
			DecodeLast: mb.DecodeLast,
			Stop:       mb.M.Config.EOS,
			OnToken: func(id int) bool {
				ids = append(ids, id)
				return !stop(ids)
			},
		})
		if err != nil {
			return err
		}
		out = sc.output(res.IDs, res.Prefill, res.Decode)
		return nil
	})
	if err != nil {
		return Output{}, err
	}
	return out, nil
}

// guard runs f, turning what the device failed on (a panic or an error that Fault
// recognizes) into a *DeviceFault; any other panic is passed on.
func (mb *ModelBackend) guard(f func() error) (err error) {
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
	return f()
}

// sampleCache is one sample's cache with its meter and its storage.
type sampleCache struct {
	cache  *kv.Cache
	meter  *footprint.Meter
	store  kv.Storage // made by ModelBackend.Storage; nil on the host
	layers int
}

// newCache builds a cache of the method's policy with a meter, on the device's storage
// when there is one.
func (mb *ModelBackend) newCache(method string) (*sampleCache, error) {
	c := mb.M.Config
	sc := &sampleCache{meter: footprint.NewMeter(c.Layers, c.KVHeads), layers: c.Layers}
	opts := append(slices.Clip(mb.CacheOptions), kv.WithObserver(sc.meter))
	if mb.Storage != nil {
		opts = append(opts, kv.WithStorage(func(s kv.Shape, rep int, p kv.Precision) (kv.Storage, error) {
			st, err := mb.Storage(s, rep, p)
			sc.store = st
			return st, err
		}))
	}
	cache, err := kv.New(kv.Shape(mb.M.Shape()), method, opts...)
	if err != nil {
		sc.close()
		return nil, err
	}
	sc.cache = cache
	return sc, nil
}

// close frees a device storage (one with a Close method), so that the next sample finds
// its memory free; a kernel's fault can surface only in the wait for the queue before
// the free.
func (sc *sampleCache) close() error {
	cl, ok := sc.store.(interface{ Close() error })
	sc.store = nil
	if !ok {
		return nil
	}
	if err := cl.Close(); err != nil {
		return fmt.Errorf("freeing the KV cache: %w", err)
	}
	return nil
}

// output is the run's result with what the cache's meter measured.
func (sc *sampleCache) output(ids []int, prefill, decode time.Duration) Output {
	fr := sc.meter.Report(true)
	heads := float64(sc.layers * fr.Heads)
	tl := make([]TimelineStep, len(fr.Timeline))
	for i, st := range fr.Timeline {
		tl[i] = TimelineStep{Pos: st.Pos, N: st.N, Prefill: st.Prefill, Visible: float64(st.Visible) / heads,
			Held: float64(st.Entries) / heads, Bytes: st.Bytes}
	}
	return Output{IDs: ids, Prefill: prefill, Decode: decode,
		Footprint: fr.Footprint, Peak: fr.Peak, PeakBytes: fr.PeakBytes, Timeline: tl}
}

// deviceFault is err as a failed sample, saying whether the device is still usable.
func (mb *ModelBackend) deviceFault(err error) *DeviceFault {
	f := &DeviceFault{Err: err}
	if mb.Healthy != nil {
		f.Unusable = mb.Healthy()
	}
	return f
}
