package cuda

import (
	"errors"
	"fmt"
	"os"
)

// Graph mode. A decode step queues hundreds of small kernels, each costing microseconds of host
// time through purego, so a small model's step is bound by the host. In graph mode the work
// queued between two points that need the stream in eager order (a wait for the GPU, a
// synchronous copy, an allocation or free, an event) is captured as a segment instead of
// launched; at that point the segment's graph updates a cached executable graph of the same
// topology (or instantiates one) and is launched with one call. Step after step the topology
// repeats with new parameters (positions, staged lists, lengths, grid sizes), so the update
// path, much cheaper than instantiation, is the common one.

const graphsEnv = "KVFOOT_GRAPHS"

// graphCacheLimit bounds the executable graphs kept: a decode step splits into a few segments,
// and pre-fill chunks of other shapes add a few more; the least recently used go first.
const graphCacheLimit = 32

// Driver constants for graphs (cuda.h).
const (
	captureModeRelaxed     = 2 // CU_STREAM_CAPTURE_MODE_RELAXED: other threads' calls are not checked
	captureStatusActive    = 1 // CU_STREAM_CAPTURE_STATUS_ACTIVE
	graphInstantiateNoFlag = 0
)

// graphExecUpdateResultInfo is CUgraphExecUpdateResultInfo: the enum, then two node handles.
type graphExecUpdateResultInfo struct {
	result        int32
	_             int32
	errorNode     uintptr
	errorFromNode uintptr
}

// graphsChoice reads $KVFOOT_GRAPHS: unset or 0 is eager launches, 1 is graph mode.
func graphsChoice(v string) (bool, error) {
	switch v {
	case "", "0":
		return false, nil
	case "1":
		return true, nil
	}
	return false, fmt.Errorf("$%s=%q: want 1 (CUDA graphs for the queued work) or 0 (launch each kernel)", graphsEnv, v)
}

// nodeKind is what a captured operation adds to a graph.
type nodeKind byte

const (
	nodeKernel nodeKind = iota + 1 // one of kvfoot's kernels; its id is the function handle
	nodeCopy                       // a staged host-to-device copy
	nodeGEMM                       // a cuBLASLt matmul; its id is the plan, which fixes its kernels
)

// fingerprint identifies a segment's topology: the sequence of its operations' kinds and ids
// (FNV-1a), their count and the captured graph's node count. Parameters that an update can
// change (pointers, sizes, grids) stay out of it.
type fingerprint struct {
	hash  uint64
	ops   int
	nodes uint64
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func (f *fingerprint) add(kind nodeKind, id uint64) {
	if f.ops == 0 {
		f.hash = fnvOffset
	}
	f.hash = (f.hash ^ uint64(kind)) * fnvPrime
	for i := 0; i < 64; i += 8 {
		f.hash = (f.hash ^ (id >> i & 0xff)) * fnvPrime
	}
	f.ops++
}

// graphCache keeps executable graphs by fingerprint, evicting the least recently used beyond
// its limit. It holds handles only; the caller destroys what put evicts.
type graphCache struct {
	limit   int
	clock   uint64
	entries map[fingerprint]*cachedGraph
}

type cachedGraph struct {
	exec uintptr
	used uint64
}

func newGraphCache(limit int) graphCache {
	return graphCache{limit: limit, entries: map[fingerprint]*cachedGraph{}}
}

// get returns the executable graph kept for f, marking it used.
func (c *graphCache) get(f fingerprint) (uintptr, bool) {
	e, ok := c.entries[f]
	if !ok {
		return 0, false
	}
	c.clock++
	e.used = c.clock
	return e.exec, true
}

// put keeps exec for f (the caller has destroyed or taken any earlier one for f) and returns
// the executable graphs evicted to stay within the limit.
func (c *graphCache) put(f fingerprint, exec uintptr) (evicted []uintptr) {
	c.clock++
	c.entries[f] = &cachedGraph{exec: exec, used: c.clock}
	for len(c.entries) > c.limit {
		var oldest fingerprint
		first := true
		for k, e := range c.entries {
			if first || e.used < c.entries[oldest].used {
				oldest, first = k, false
			}
		}
		evicted = append(evicted, c.entries[oldest].exec)
		delete(c.entries, oldest)
	}
	return evicted
}

// remove forgets f's executable graph (after a failed update) without destroying it.
func (c *graphCache) remove(f fingerprint) { delete(c.entries, f) }

// drain forgets every executable graph and returns them for destruction.
func (c *graphCache) drain() []uintptr {
	var all []uintptr
	for k, e := range c.entries {
		all = append(all, e.exec)
		delete(c.entries, k)
	}
	return all
}

// graphState is a device's graph mode: whether it is on, the segment being captured and the
// executable graphs kept.
type graphState struct {
	on        bool
	note      string // why graph mode is unavailable, when it is
	capturing bool
	segment   fingerprint
	cache     graphCache
	stats     GraphStats
}

// GraphStats counts what graph mode did: segments launched, and how many of them updated a
// kept executable graph or instantiated a new one.
type GraphStats struct {
	Launched, Updated, Instantiated int
}

// initGraphs sets graph mode from $KVFOOT_GRAPHS at Open; a driver without graphs leaves it
// off, saying so once.
func (d *Device) initGraphs(on bool) {
	d.graphs.cache = newGraphCache(graphCacheLimit)
	if m := d.api.graphMissing; m != "" {
		d.graphs.note = fmt.Sprintf("the NVIDIA driver has no %s", m)
	}
	if on && d.graphs.note != "" {
		fmt.Fprintf(os.Stderr, "cuda: $%s=1 ignored: %s\n", graphsEnv, d.graphs.note)
		return
	}
	d.graphs.on = on
}

// SetGraphs turns graph mode on or off (Open reads $KVFOOT_GRAPHS); turning it off launches
// the segment being captured. It fails when the driver has no graph support.
func (d *Device) SetGraphs(on bool) error {
	return d.do(func() error {
		if on && d.graphs.note != "" {
			return fmt.Errorf("cuda: no CUDA graphs: %s", d.graphs.note)
		}
		err := d.endSegment()
		d.graphs.on = on
		return err
	})
}

// Graphs says whether graph mode is on.
func (d *Device) Graphs() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.graphs.on
}

// GraphsName says whether work is launched through CUDA graphs, and why not when it cannot be.
func (d *Device) GraphsName() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.graphs.on:
		return "on (the work between waits for the GPU launched as CUDA graphs)"
	case d.graphs.note != "":
		return "off (" + d.graphs.note + ")"
	}
	return "off (each kernel launched; $" + graphsEnv + "=1 captures them)"
}

// GraphStats returns graph mode's counts so far.
func (d *Device) GraphStats() GraphStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.graphs.stats
}

// capture adds an operation about to be queued to the segment, starting a capture when graph
// mode is on and none is under way. On the context's thread (inside do).
func (d *Device) capture(kind nodeKind, id uint64) error {
	g := &d.graphs
	if !g.on {
		return nil
	}
	if !g.capturing {
		if err := d.api.check("cuStreamBeginCapture", d.api.cuStreamBeginCapture(d.stream, captureModeRelaxed)); err != nil {
			return err
		}
		g.capturing, g.segment = true, fingerprint{}
	}
	g.segment.add(kind, id)
	return nil
}

// endSegment ends the capture under way, if any, and launches it: through the kept executable
// graph of its fingerprint, updated with this segment's parameters, or a new one when there
// is none or the update fails. A segment with no work launches nothing. Afterwards the stream
// is not capturing, whatever failed. On the context's thread (inside do).
func (d *Device) endSegment() error {
	g := &d.graphs
	if !g.capturing {
		return nil
	}
	a := d.api
	g.capturing = false
	var graph uintptr
	if err := a.check("cuStreamEndCapture", a.cuStreamEndCapture(d.stream, &graph)); err != nil {
		if graph != 0 {
			a.cuGraphDestroy(graph)
		}
		return err
	}
	defer a.cuGraphDestroy(graph) // an executable graph does not need it once made or updated
	key := g.segment
	if err := a.check("cuGraphGetNodes", a.cuGraphGetNodes(graph, nil, &key.nodes)); err != nil {
		return err
	}
	if key.nodes == 0 {
		return nil
	}
	exec, ok := g.cache.get(key)
	if ok {
		var info graphExecUpdateResultInfo
		if r := a.cuGraphExecUpdate(exec, graph, &info); r == 0 {
			g.stats.Updated++
		} else {
			// Not the topology it was captured with (a fingerprint collision, or parameters an
			// update cannot change): the exec graph is still valid, but another is needed.
			g.cache.remove(key)
			if err := a.check("cuGraphExecDestroy", a.cuGraphExecDestroy(exec)); err != nil {
				return err
			}
			ok = false
		}
	}
	if !ok {
		if err := a.check("cuGraphInstantiate", a.cuGraphInstantiateWithFlags(&exec, graph, graphInstantiateNoFlag)); err != nil {
			return err
		}
		g.stats.Instantiated++
		var errs []error
		for _, old := range g.cache.put(key, exec) {
			// an evicted graph still running is freed by the driver once it completes
			errs = append(errs, a.check("cuGraphExecDestroy", a.cuGraphExecDestroy(old)))
		}
		if err := errors.Join(errs...); err != nil {
			return err
		}
	}
	if err := a.check("cuGraphLaunch", a.cuGraphLaunch(exec, d.stream)); err != nil {
		return err
	}
	g.stats.Launched++
	return nil
}

// abortSegment ends the capture under way after cause, a failed call inside it, dropping the
// segment so that the stream is not left capturing, and returns cause.
func (d *Device) abortSegment(cause error) error {
	g := &d.graphs
	if !g.capturing {
		return cause
	}
	g.capturing = false
	var graph uintptr
	d.api.cuStreamEndCapture(d.stream, &graph) // fails when the error invalidated the capture
	if graph != 0 {
		d.api.cuGraphDestroy(graph)
	}
	return fmt.Errorf("%w (the work queued since the last eager operation was dropped with its CUDA graph)", cause)
}

// stillCapturing says, after a call inside a capture failed, whether the capture survived it
// (the call queued nothing and the segment can go on). On the context's thread.
func (d *Device) stillCapturing() bool {
	if !d.graphs.capturing {
		return false
	}
	var status int32
	return d.api.cuStreamIsCapturing(d.stream, &status) == 0 && status == captureStatusActive
}

// closeGraphs destroys the kept executable graphs. On the context's thread.
func (d *Device) closeGraphs() error {
	var errs []error
	for _, exec := range d.graphs.cache.drain() {
		errs = append(errs, d.api.check("cuGraphExecDestroy", d.api.cuGraphExecDestroy(exec)))
	}
	return errors.Join(errs...)
}

// eager runs f, an operation that must not be captured, after launching the segment under
// way, so that it sees the queued work done or queued before it as in eager mode.
func (d *Device) eager(f func() error) error {
	return d.do(func() error {
		if err := d.endSegment(); err != nil {
			return err
		}
		return f()
	})
}
