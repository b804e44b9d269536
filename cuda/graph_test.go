package cuda

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
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

// With graph mode off the capture hooks do nothing: a device with no driver at all passes
// through them (any driver call would call a nil function).
func TestGraphsOffIsEager(t *testing.T) {
	d := &Device{api: &driver{}} // every entry point nil
	d.initGraphs(false)
	if err := d.capture(nodeKernel, 0x7f001000); err != nil {
		t.Fatal(err)
	}
	if d.graphs.capturing || d.graphs.segment.ops != 0 {
		t.Fatalf("graph mode off, yet capturing %v with %d operations", d.graphs.capturing, d.graphs.segment.ops)
	}
	if err := d.endSegment(); err != nil {
		t.Fatal(err)
	}
	if d.graphs.stats != (GraphStats{}) {
		t.Fatalf("graph mode off, yet %+v", d.graphs.stats)
	}
	if got := d.GraphsName(); !strings.HasPrefix(got, "off") {
		t.Fatalf("GraphsName() = %q", got)
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
	defer d.SetGraphs(false)
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
