package cuda

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

func TestGraphsChoice(t *testing.T) {
	for _, c := range []struct {
		in       string
		on, fail bool
	}{{"", false, false}, {"0", false, false}, {"1", true, false}, {"yes", false, true}, {"2", false, true}} {
		on, err := graphsChoice(c.in)
		if on != c.on || (err != nil) != c.fail {
			t.Errorf("graphsChoice(%q) = %v, %v; want %v, error %v", c.in, on, err, c.on, c.fail)
		}
		if err != nil && !strings.Contains(err.Error(), "$KVFOOT_GRAPHS") {
			t.Errorf("graphsChoice(%q): error %q does not name the variable", c.in, err)
		}
	}
}

// seq fingerprints a sequence of (kind, id) operations.
func seq(ops ...[2]uint64) fingerprint {
	var f fingerprint
	for _, op := range ops {
		f.add(nodeKind(op[0]), op[1])
	}
	return f
}

func TestFingerprint(t *testing.T) {
	k := uint64(nodeKernel)
	c := uint64(nodeCopy)
	g := uint64(nodeGEMM)
	base := seq([2]uint64{c, 0}, [2]uint64{k, 0x7f001000}, [2]uint64{k, 0x7f002000}, [2]uint64{g, 0xc000})
	if again := seq([2]uint64{c, 0}, [2]uint64{k, 0x7f001000}, [2]uint64{k, 0x7f002000}, [2]uint64{g, 0xc000}); again != base {
		t.Fatalf("the same sequence gave %+v, then %+v", base, again)
	}
	if base.ops != 4 {
		t.Fatalf("%d operations counted, want 4", base.ops)
	}
	for name, other := range map[string]fingerprint{
		"another kernel":      seq([2]uint64{c, 0}, [2]uint64{k, 0x7f001000}, [2]uint64{k, 0x7f003000}, [2]uint64{g, 0xc000}),
		"kernels swapped":     seq([2]uint64{c, 0}, [2]uint64{k, 0x7f002000}, [2]uint64{k, 0x7f001000}, [2]uint64{g, 0xc000}),
		"a kernel for a copy": seq([2]uint64{k, 0}, [2]uint64{k, 0x7f001000}, [2]uint64{k, 0x7f002000}, [2]uint64{g, 0xc000}),
		"another GEMM plan":   seq([2]uint64{c, 0}, [2]uint64{k, 0x7f001000}, [2]uint64{k, 0x7f002000}, [2]uint64{g, 0xd000}),
		"one more launch":     seq([2]uint64{c, 0}, [2]uint64{k, 0x7f001000}, [2]uint64{k, 0x7f002000}, [2]uint64{g, 0xc000}, [2]uint64{k, 0x7f002000}),
		"one launch fewer":    seq([2]uint64{c, 0}, [2]uint64{k, 0x7f001000}, [2]uint64{k, 0x7f002000}),
	} {
		if other == base {
			t.Errorf("%s: same fingerprint as the base sequence", name)
		}
	}
	withNodes := base
	withNodes.nodes = 9
	if withNodes == base {
		t.Error("the captured node count is not part of the key")
	}
}

func TestGraphCacheLRU(t *testing.T) {
	key := func(i int) fingerprint { return seq([2]uint64{uint64(nodeKernel), uint64(i)}) }
	c := newGraphCache(3)
	for i := 1; i <= 3; i++ {
		if ev := c.put(key(i), uintptr(100+i)); len(ev) != 0 {
			t.Fatalf("put %d of 3 evicted %v", i, ev)
		}
	}
	if exec, ok := c.get(key(1)); !ok || exec != 101 {
		t.Fatalf("get(1) = %d, %v; want 101, true", exec, ok)
	}
	// 2 is now the least recently used: 1 was just read, 3 put after it.
	if ev := c.put(key(4), 104); !slices.Equal(ev, []uintptr{102}) {
		t.Fatalf("put 4 evicted %v, want [102]", ev)
	}
	if _, ok := c.get(key(2)); ok {
		t.Fatal("2 is still kept after its eviction")
	}
	if len(c.entries) != 3 {
		t.Fatalf("%d kept, limit 3", len(c.entries))
	}
	c.remove(key(3))
	if _, ok := c.get(key(3)); ok {
		t.Fatal("3 is kept after remove")
	}
	all := c.drain()
	slices.Sort(all)
	if !slices.Equal(all, []uintptr{101, 104}) || len(c.entries) != 0 {
		t.Fatalf("drain gave %v and left %d; want [101 104] and none", all, len(c.entries))
	}
}

func TestGraphsMissingDriverSymbols(t *testing.T) {
	d := &Device{api: &driver{graphAPI: graphAPI{graphMissing: "cuGraphExecUpdate_v2"}}}
	d.initGraphs(true)
	if d.graphs.on {
		t.Fatal("graph mode on without the driver's graph entry points")
	}
	if got := d.GraphsName(); !strings.Contains(got, "cuGraphExecUpdate_v2") {
		t.Fatalf("GraphsName() = %q, want the missing entry point named", got)
	}
}

// graphStep is one step of TestGPUGraphsMatchEager: rows tokens through an embedding (a
// staged copy), a norm, a Linear (matrix-vector up to 8 rows, a GEMM above), a residual add
// and, when extra, one more kernel, which changes the topology.
type graphStep struct {
	rows  int
	extra bool
}

// A sequence of steps whose launches change parameters and grid sizes gives the same bits in
// graph mode as launched one by one: through updates of a kept graph when the topology
// repeats and new instantiations when it changes. A failed launch inside a capture leaves the
// stream usable.
func TestGPUGraphsMatchEager(t *testing.T) {
	d := gpu(t)
	if d.graphs.note != "" {
		t.Skipf("no CUDA graphs: %s", d.graphs.note)
	}
	defer d.SetGraphs(d.Graphs()) // as $KVFOOT_GRAPHS set it, for the tests after this one
	r := rand.New(rand.NewPCG(3, 4))
	const vocab, dim, most = 64, 256, 16
	tab, _ := randBF16(r, vocab*dim, 1)
	w, _ := randBF16(r, dim*dim, 0.1)
	norm, _ := randBF16(r, dim, 1)
	table, weight, normW := upload(t, d, tab, 2), upload(t, d, w, 2), upload(t, d, norm, 2)
	x, y, z := poisoned(t, d, most*dim), poisoned(t, d, most*dim), poisoned(t, d, most*dim)
	// Topologies: A (rows ≤ 8) at steps 0-3, B (A plus a kernel) at 4, A at 5 and 6, then a
	// GEMM's at 7; its counts are checked below.
	steps := []graphStep{{1, false}, {3, false}, {1, false}, {8, false}, {2, true}, {5, false}, {1, false}, {16, false}}
	run := func(s graphStep, step int) []uint16 {
		t.Helper()
		ids := make([]int32, s.rows)
		for i := range ids {
			ids[i] = int32((step*7 + i*13) % vocab)
		}
		n := s.rows * dim
		check := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
		}
		check(d.Embedding(x, table, vocab, dim, ids))
		check(d.RMSNorm(y, x, normW, s.rows, dim, 1e-5))
		check(d.Linear(z, y, weight, Buffer{}, s.rows, dim, dim))
		check(d.Add(z, z, x, n))
		if s.extra {
			check(d.SwiGLU(z, z, y, n))
		}
		out := make([]uint16, n)
		check(Download(d, out, z))
		return out
	}
	if err := d.SetGraphs(false); err != nil {
		t.Fatal(err)
	}
	var want [][]uint16
	for i, s := range steps {
		want = append(want, run(s, i))
	}
	if err := d.SetGraphs(true); err != nil {
		t.Fatal(err)
	}
	before := d.GraphStats()
	for i, s := range steps {
		got := run(s, i)
		if !slices.Equal(got, want[i]) {
			t.Fatalf("step %d (%d rows): graph mode's output differs from the eager launches'", i, s.rows)
		}
		if i == 6 {
			st := d.GraphStats()
			diff := GraphStats{st.Launched - before.Launched, st.Updated - before.Updated, st.Instantiated - before.Instantiated}
			if diff != (GraphStats{Launched: 7, Updated: 5, Instantiated: 2}) {
				t.Fatalf("after 7 steps of two topologies: %+v, want 7 launched, 5 updated, 2 instantiated", diff)
			}
		}
	}
	// A launch the driver refuses (an empty grid) inside a capture ends it and is returned;
	// the next step runs as before.
	if err := d.RMSNorm(y, x, normW, 1, dim, 1e-5); err != nil {
		t.Fatal(err)
	}
	if !d.graphs.capturing {
		t.Fatal("graph mode on, yet the RMSNorm was not captured")
	}
	err := d.launch("rmsnorm", launchDims{block: [3]uint32{256, 1, 1}}, y, x, normW, int32(dim), float32(1e-5))
	if err == nil {
		t.Fatal("a launch of an empty grid succeeded")
	}
	t.Logf("failed launch: %v", err)
	var status int32 = -1
	if e := d.do(func() error { return d.api.check("cuStreamIsCapturing", d.api.cuStreamIsCapturing(d.stream, &status)) }); e != nil || status != 0 || d.graphs.capturing {
		t.Fatalf("after the failed launch: stream capture status %d (%v), capturing %v; want 0 (none)", status, e, d.graphs.capturing)
	}
	if got := run(steps[1], 1); !slices.Equal(got, want[1]) {
		t.Fatal("after a failed launch, graph mode's output differs from the eager launches'")
	}
}

// fakeGPU stands in for the driver on the CPU: it logs the calls graph mode makes, keeps the
// capture state as the driver would, and notes any call that must not run while the stream
// is capturing.
type fakeGPU struct {
	log        []string
	capturing  bool
	captured   int             // operations in the capture under way
	graphs     map[uintptr]int // a captured graph's node count
	execs      map[uintptr]int // an executable graph's node count, its topology here
	next       uintptr
	failLaunch bool
	illegal    []string // eager calls made while capturing
}

func (f *fakeGPU) handle() uintptr { f.next++; return f.next }

// eager logs an operation that needs the stream in eager order.
func (f *fakeGPU) eager(name string) cuResult {
	f.log = append(f.log, name)
	if f.capturing {
		f.illegal = append(f.illegal, name)
	}
	return 0
}

// queued logs an operation that a capture records.
func (f *fakeGPU) queued(name string) cuResult {
	f.log = append(f.log, name)
	if f.capturing {
		f.captured++
	}
	return 0
}

func newFakeDevice(t *testing.T, graphs bool) (*Device, *fakeGPU) {
	f := &fakeGPU{graphs: map[uintptr]int{}, execs: map[uintptr]int{}}
	a := &driver{}
	a.cuGetErrorName = func(cuResult, **byte) cuResult { return 1 }
	a.cuCtxSetCurrent = func(uintptr) cuResult { return 0 }
	a.cuLaunchKernel = func(fn uintptr, gx, gy, gz, bx, by, bz, smem uint32, s uintptr, p, e *unsafe.Pointer) cuResult {
		if f.failLaunch {
			f.log = append(f.log, "launch failed")
			return 1 // CUDA_ERROR_INVALID_VALUE
		}
		return f.queued(fmt.Sprintf("launch %#x", fn))
	}
	var host []byte // the staging arena: copies from it are captured, Upload's are eager
	a.cuMemcpyHtoDAsync = func(_ uint64, src unsafe.Pointer, _ uint64, _ uintptr) cuResult {
		if p := uintptr(src); p >= uintptr(unsafe.Pointer(&host[0])) && p < uintptr(unsafe.Pointer(&host[0]))+uintptr(len(host)) {
			return f.queued("copy async")
		}
		return f.eager("upload")
	}
	a.cuMemcpyDtoHAsync = func(unsafe.Pointer, uint64, uint64, uintptr) cuResult { return f.eager("download") }
	a.cuMemcpyDtoDAsync = func(uint64, uint64, uint64, uintptr) cuResult { return f.eager("copy") }
	a.cuMemsetD8Async = func(uint64, uint8, uint64, uintptr) cuResult { return f.eager("memset") }
	a.cuMemAlloc = func(p *uint64, _ uint64) cuResult { *p = 0x900000; return f.eager("alloc") }
	a.cuMemFree = func(uint64) cuResult { return f.eager("free") }
	a.cuMemFreeHost = func(unsafe.Pointer) cuResult { return 0 }
	a.cuStreamSynchronize = func(uintptr) cuResult { return f.eager("sync") }
	a.cuEventRecord = func(uintptr, uintptr) cuResult { return f.eager("event") }
	a.cuStreamDestroy = func(uintptr) cuResult { return 0 }
	a.cuDevicePrimaryCtxRelease = func(int32) cuResult { return 0 }
	a.cuStreamBeginCapture = func(_ uintptr, mode int32) cuResult {
		if f.capturing || mode != captureModeRelaxed {
			t.Errorf("begin capture: already capturing %v, mode %d", f.capturing, mode)
		}
		f.capturing, f.captured = true, 0
		f.log = append(f.log, "begin")
		return 0
	}
	a.cuStreamEndCapture = func(_ uintptr, g *uintptr) cuResult {
		f.log = append(f.log, "end")
		if !f.capturing {
			return 1
		}
		f.capturing = false
		*g = f.handle()
		f.graphs[*g] = f.captured
		return 0
	}
	a.cuStreamIsCapturing = func(_ uintptr, status *int32) cuResult {
		*status = 0
		if f.capturing {
			*status = captureStatusActive
		}
		return 0
	}
	a.cuGraphGetNodes = func(g uintptr, nodes *uintptr, n *uint64) cuResult { *n = uint64(f.graphs[g]); return 0 }
	a.cuGraphInstantiateWithFlags = func(e *uintptr, g uintptr, _ uint64) cuResult {
		*e = f.handle()
		f.execs[*e] = f.graphs[g]
		f.log = append(f.log, "instantiate")
		return 0
	}
	a.cuGraphExecUpdate = func(e, g uintptr, info *graphExecUpdateResultInfo) cuResult {
		if f.execs[e] != f.graphs[g] {
			f.log = append(f.log, "update failed")
			info.result = 2 // CU_GRAPH_EXEC_UPDATE_ERROR_TOPOLOGY_CHANGED
			return 910
		}
		f.log = append(f.log, "update")
		return 0
	}
	a.cuGraphLaunch = func(e, _ uintptr) cuResult {
		if _, ok := f.execs[e]; !ok {
			t.Errorf("launch of executable graph %d, destroyed or never made", e)
		}
		f.log = append(f.log, "graph launch")
		return 0
	}
	a.cuGraphDestroy = func(g uintptr) cuResult { delete(f.graphs, g); return 0 }
	a.cuGraphExecDestroy = func(e uintptr) cuResult {
		delete(f.execs, e)
		f.log = append(f.log, "exec destroy")
		return 0
	}
	d := &Device{api: a, stream: 7, funcs: map[string]uintptr{"k1": 0x1000, "k2": 0x2000}}
	host = make([]byte, 1<<16)
	d.stg = staging{host: unsafe.Pointer(&host[0]), dev: Buffer{Ptr: 0x100000, Bytes: int64(len(host))}}
	d.initGraphs(graphs)
	return d, f
}

// fakeStep queues what a decode step does: a staged list, launches of varying grids (one
// more kernel when extra), then a download of the result.
func fakeStep(t *testing.T, d *Device, rows int, extra bool) {
	t.Helper()
	if _, err := d.StageInts(make([]int32, rows)); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"k1", "k2"} {
		if err := d.launch(k, grid1(rows, 128), Buffer{Ptr: 0x200000}, int32(rows)); err != nil {
			t.Fatal(err)
		}
	}
	if extra {
		if err := d.launch("k1", grid1(1, 32), Buffer{Ptr: 0x300000}, int32(1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := Download(d, make([]int32, 4), Buffer{Ptr: 0x200000, Bytes: 16}); err != nil {
		t.Fatal(err)
	}
}

// The driver calls of graph mode, in order: a step is captured and launched at its download,
// through a new executable graph, then updates of it while the topology repeats, and a new
// one when it changes.
func TestGraphsSegmentCalls(t *testing.T) {
	d, f := newFakeDevice(t, true)
	fakeStep(t, d, 3, false)
	want := []string{"begin", "copy async", "launch 0x1000", "launch 0x2000", "end", "instantiate", "graph launch", "download"}
	if !slices.Equal(f.log, want) {
		t.Fatalf("first step: %q\nwant %q", f.log, want)
	}
	f.log = nil
	fakeStep(t, d, 5, false)
	want = []string{"begin", "copy async", "launch 0x1000", "launch 0x2000", "end", "update", "graph launch", "download"}
	if !slices.Equal(f.log, want) {
		t.Fatalf("same topology: %q\nwant %q", f.log, want)
	}
	f.log = nil
	fakeStep(t, d, 5, true)
	if !slices.Contains(f.log, "instantiate") || slices.Contains(f.log, "update") {
		t.Fatalf("a kernel more: %q, want a new instantiation", f.log)
	}
	fakeStep(t, d, 2, false)
	fakeStep(t, d, 1, true)
	if got, want := d.GraphStats(), (GraphStats{Launched: 5, Updated: 3, Instantiated: 2}); got != want {
		t.Fatalf("%+v, want %+v", got, want)
	}
	if len(f.illegal) > 0 {
		t.Fatalf("called while capturing: %q", f.illegal)
	}
	// Close launches nothing left, waits, and destroys the two kept executable graphs.
	f.log = nil
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if len(f.execs) != 0 || slices.Index(f.log, "sync") > slices.Index(f.log, "exec destroy") {
		t.Fatalf("close: %q, %d executable graphs left", f.log, len(f.execs))
	}
}

// Every operation that needs eager order launches the segment under way first, so that it
// sees the work queued before it as launched: none runs while the stream is capturing.
func TestGraphsEagerOperationsEndTheSegment(t *testing.T) {
	d, f := newFakeDevice(t, true)
	buf := Buffer{Ptr: 0x200000, Bytes: 64}
	ev := &Event{d: d, h: 1}
	for name, op := range map[string]func() error{
		"sync":     d.Sync,
		"download": func() error { return Download(d, make([]int32, 4), buf) },
		"upload":   func() error { return Upload(d, buf, make([]int32, 4)) },
		"copy":     func() error { return d.Copy(buf, buf) },
		"memset":   func() error { return d.Memset(buf, 0) },
		"alloc":    func() error { _, err := d.Alloc(64); return err },
		"free":     func() error { return d.Free(buf) },
		"event":    ev.Record,
	} {
		f.log = nil
		if err := d.launch("k1", grid1(1, 32), buf, int32(1)); err != nil {
			t.Fatal(err)
		}
		if err := op(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(f.illegal) > 0 || d.graphs.capturing {
			t.Fatalf("%s ran while capturing: %q", name, f.log)
		}
		if i := slices.Index(f.log, "graph launch"); i < 0 || i > slices.Index(f.log, name) {
			t.Fatalf("%s: %q, want the segment launched before it", name, f.log)
		}
	}
}

// A failed call inside a capture ends it, so the stream is not left capturing, and returns
// the driver's error; the next work captures afresh.
func TestGraphsFailureEndsCapture(t *testing.T) {
	d, f := newFakeDevice(t, true)
	if err := d.launch("k1", grid1(1, 32), Buffer{}, int32(1)); err != nil {
		t.Fatal(err)
	}
	f.failLaunch = true
	err := d.launch("k2", grid1(1, 32), Buffer{}, int32(1))
	if err == nil || !strings.Contains(err.Error(), "launch k2") || !strings.Contains(err.Error(), "dropped") {
		t.Fatalf("got %v, want the failed launch named and the dropped work said", err)
	}
	if f.capturing || d.graphs.capturing || len(f.graphs) != 0 {
		t.Fatalf("after the failure: driver capturing %v, device capturing %v, %d graphs not destroyed", f.capturing, d.graphs.capturing, len(f.graphs))
	}
	f.failLaunch = false
	f.log = nil
	fakeStep(t, d, 2, false)
	if f.log[0] != "begin" || !slices.Contains(f.log, "graph launch") {
		t.Fatalf("the step after a failure: %q", f.log)
	}
}

// With graph mode off the same step makes no graph call, and turning it off mid-segment
// launches what was captured.
func TestGraphsOffLaunchesEachKernel(t *testing.T) {
	d, f := newFakeDevice(t, false)
	fakeStep(t, d, 3, true)
	want := []string{"copy async", "launch 0x1000", "launch 0x2000", "launch 0x1000", "download"}
	if !slices.Equal(f.log, want) {
		t.Fatalf("%q\nwant %q", f.log, want)
	}
	if st, name := d.GraphStats(), d.GraphsName(); st != (GraphStats{}) || !strings.HasPrefix(name, "off") {
		t.Fatalf("graph mode off, yet %+v, %q", st, name)
	}
	if err := d.SetGraphs(true); err != nil {
		t.Fatal(err)
	}
	if err := d.launch("k1", grid1(1, 32), Buffer{}, int32(1)); err != nil {
		t.Fatal(err)
	}
	if err := d.SetGraphs(false); err != nil {
		t.Fatal(err)
	}
	if f.capturing || !slices.Contains(f.log, "graph launch") {
		t.Fatalf("SetGraphs(false) mid-segment: capturing %v, %q", f.capturing, f.log)
	}
}

// BenchmarkGraphLaunches times a decode step's worth of small launches (400 element-wise
// kernels over 4K to 16K values, a staged list every 20) and the wait for them, launched one by one
// and through graph mode: the host cost per launch that graph mode removes, or adds.
func BenchmarkGraphLaunches(b *testing.B) {
	d := gpu(b)
	defer d.SetGraphs(d.Graphs())
	const launches, count = 400, 4096
	x := alloc(b, d, 4*count*2)
	fillRandom(b, d, x, 9)
	ids := make([]int32, 16)
	for _, graphs := range []bool{false, true} {
		name := "eager"
		if graphs {
			name = "graphs"
		}
		b.Run(name, func(b *testing.B) {
			if err := d.SetGraphs(graphs); err != nil {
				b.Skip(err)
			}
			step := func() {
				for i := range launches {
					if i%20 == 0 {
						if _, err := d.StageInts(ids); err != nil {
							b.Fatal(err)
						}
					}
					if err := d.Add(x, x, x, count*(1+i%4)); err != nil { // grids vary, as a step's do
						b.Fatal(err)
					}
				}
				if err := d.Sync(); err != nil {
					b.Fatal(err)
				}
			}
			step() // graph mode instantiates here
			for b.Loop() {
				step()
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*launches), "µs/launch")
		})
	}
}
