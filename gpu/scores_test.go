package gpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/kvfoot/kvfoot/compute"
	"github.com/kvfoot/kvfoot/cuda"
	"github.com/kvfoot/kvfoot/footprint"
	"github.com/kvfoot/kvfoot/kv"
	"github.com/kvfoot/kvfoot/model"
	"github.com/kvfoot/kvfoot/tensor"
)

// kernelScores is cuda/kernels/scores.cu in Go, for testing its indexing without a GPU: the
// same rows, entries (through the block table of a layer's heads, maxBlocks per head, into a
// pool of keys by slot), output places and float32 arithmetic (scores in log2 units, exp2),
// with the queries q [n][hq][d]. Only the order of the sums of the kernels' thread reductions
// differs.
func kernelScores(heads []cuda.ScoreHead, table []int32, maxBlocks int, kpool, q []float32, hq, d int, scale float32) []float32 {
	const threads = 128 // SCORES_THREADS
	hkv := len(heads)
	G := hq / hkv
	scaleLog2 := scale * float32(math.Log2E)
	key := func(g, j int) []float32 {
		slot := int(table[g*maxBlocks+j/cuda.BlockEntries])*cuda.BlockEntries + j%cuda.BlockEntries
		return kpool[slot*d : (slot+1)*d]
	}
	queries := func(i, g int) []float32 { // load_queries
		qs := make([]float32, G*d)
		for x := range qs {
			qs[x] = q[(i*hq+g*G)*d+x] * scaleLog2
		}
		return qs
	}
	dots := func(qs, k []float32) []float32 {
		s := make([]float32, G)
		for c := 0; c < d; c++ {
			for h := range s {
				s[h] += qs[h*d+c] * k[c]
			}
		}
		return s
	}
	merge := func(m, l *float32, om, ol float32) {
		mn := max(*m, om)
		mu := mn
		if math.IsInf(float64(mn), -1) {
			mu = 0
		}
		*l = *l*exp2(*m-mu) + ol*exp2(om-mu)
		*m = mn
	}
	rows := 0
	for _, h := range heads {
		if h.To > h.From {
			rows = max(rows, h.To-h.From)
		}
	}
	stats := make([]float32, hkv*rows*G*2)
	for g, sh := range heads { // scores_stats: block (r, g)
		for r := range rows {
			i := sh.From + r
			if i >= sh.To {
				continue
			}
			qs := queries(i, g)
			M, L := make([]float32, G), make([]float32, G)
			for h := range M {
				M[h] = float32(math.Inf(-1))
			}
			for t := range threads {
				m, l := make([]float32, G), make([]float32, G)
				for h := range m {
					m[h] = float32(math.Inf(-1))
				}
				for j := sh.First + t; j < sh.Past+i+1; j += threads {
					s := dots(qs, key(g, j))
					for h := range s {
						merge(&m[h], &l[h], s[h], 1)
					}
				}
				for h := range m {
					merge(&M[h], &L[h], m[h], l[h])
				}
			}
			for h := range M {
				stats[((g*rows+r)*G+h)*2], stats[((g*rows+r)*G+h)*2+1] = M[h], L[h]
			}
		}
	}
	out := make([]float32, cuda.ScoresLen(heads))
	off := 0
	for g, sh := range heads { // scores_probs: block (b, g)
		if sh.To <= sh.From {
			continue
		}
		for j0 := 0; j0 < sh.Count; j0 += threads {
			j1 := min(j0+threads, sh.Count)
			for j := j0; j < j1; j++ {
				var p float32
				for i := sh.From; i < sh.To; i++ {
					end := sh.Past + i + 1
					if j0 >= end || j1 <= sh.First || j < sh.First || j >= end {
						continue
					}
					s := dots(queries(i, g), key(g, j))
					ml := stats[(g*rows+i-sh.From)*G*2:]
					for h := range s {
						p += exp2(s[h]-ml[2*h]) / ml[2*h+1]
					}
				}
				out[off+j] = p / float32(G)
			}
		}
		off += sh.Count
	}
	return out
}

func exp2(x float32) float32 { return float32(math.Exp2(float64(x))) }

// modelStorage is a kv.Storage for a cache on the CPU that keeps, beside kv's host storage (the
// truth, which attends), the GPU storage's bookkeeping: a paged cache filled through
// appendSlots, compacted by Keep's moves, and a pool of keys by slot. At every Attend it
// computes kernelScores from scoreHeads and the layer's block tables and checks them against
// the host storage's scores; in an expanded cache it checks that chunkSlots gathers the
// forward's keys of each stored head.
type modelStorage struct {
	t       *testing.T
	host    kv.Storage
	shape   kv.Shape
	rep     int
	pages   *cuda.PagedCache
	kpool   []float32
	k       []float32 // the forward's keys [n][model KV heads][d]
	checked int       // heads whose scores were compared
}

func (m *modelStorage) Append(layer int, k, v compute.Buf, n int) {
	m.host.Append(layer, k, v, n)
	d, H := m.shape.HeadDim, m.shape.KVHeads
	keys := compute.HostOf(k)
	for c := range m.rep {
		slots, err := appendSlots(nil, m.pages, layer*H, H, m.rep, c, n)
		if err != nil {
			m.t.Fatal(err)
		}
		for row, slot := range slots {
			copy(m.kpool[int(slot)*d:], keys[row*d:(row+1)*d])
		}
	}
	m.k = keys
}

func (m *modelStorage) Attend(layer int, q, out compute.Buf, a *kv.AttendArgs) {
	m.host.Attend(layer, q, out, a)
	s, H := m.shape, m.shape.KVHeads
	d := s.HeadDim
	heads := scoreHeads(nil, a)
	table, _, maxBlocks, err := m.pages.Tables(layer*H, H)
	if err != nil {
		m.t.Fatal(err)
	}
	got := kernelScores(heads, table, maxBlocks, m.kpool, compute.HostOf(q), s.Heads, d, float32(1/math.Sqrt(float64(d))))
	off := 0
	for g, h := range heads {
		want := a.Scores[g]
		if h.To <= h.From {
			if len(want) != 0 {
				m.t.Fatalf("layer %d head %d: the host scored %d entries the kernels were not asked for", layer, g, len(want))
			}
			continue
		}
		if len(want) != h.Count {
			m.t.Fatalf("layer %d head %d: the kernels score %d entries, the host %d", layer, g, h.Count, len(want))
		}
		mine := byEntry(nil, got[off:off+h.Count], m.pages.Places(layer*H+g))
		for j, w := range want {
			if diff := math.Abs(float64(mine[j] - w)); diff > 1e-6+1e-4*math.Abs(float64(w)) {
				m.t.Fatalf("layer %d head %d (past %d, rows [%d, %d), first %d) entry %d: kernel model %g, host %g",
					layer, g, h.Past, h.From, h.To, h.First, j, mine[j], w)
			}
		}
		off += h.Count
		m.checked++
	}
	if m.rep > 1 && a.N > 1 {
		kvHeads := H / m.rep
		for row, slot := range chunkSlots(nil, m.pages, layer*H, a.Past, a.N) {
			t, g := row/H, row%H
			src := m.k[(t*kvHeads+g/m.rep)*d : (t*kvHeads+g/m.rep+1)*d]
			for x, v := range m.kpool[int(slot)*d : (int(slot)+1)*d] {
				if v != src[x] {
					m.t.Fatalf("layer %d: the gathered chunk's row %d of stored head %d is not model KV head %d's", layer, t, g, g/m.rep)
				}
			}
		}
	}
}

func (m *modelStorage) Keep(layer, head int, idx []int) {
	m.host.Keep(layer, head, idx)
	moves, err := m.pages.Keep(layer*m.shape.KVHeads+head, idx)
	if err != nil {
		m.t.Fatal(err)
	}
	m.move(moves)
}

func (m *modelStorage) Drop(layer, head, lo, hi int) {
	m.host.Drop(layer, head, lo, hi)
	moves, err := m.pages.Drop(layer*m.shape.KVHeads+head, lo, hi)
	if err != nil {
		m.t.Fatal(err)
	}
	m.move(moves)
}

func (m *modelStorage) move(moves []cuda.Move) {
	d := m.shape.HeadDim
	gathered := make([][]float32, len(moves)) // KVCopy reads every source before it writes
	for i, mv := range moves {
		gathered[i] = append([]float32(nil), m.kpool[int(mv.Src)*d:(int(mv.Src)+1)*d]...)
	}
	for i, mv := range moves {
		copy(m.kpool[int(mv.Dst)*d:], gathered[i])
	}
}

func (m *modelStorage) Truncate(layer, head, n int) {
	m.host.Truncate(layer, head, n)
	moves, err := m.pages.Truncate(layer*m.shape.KVHeads+head, n)
	if err != nil {
		m.t.Fatal(err)
	}
	m.move(moves)
}

func (m *modelStorage) Bytes() int64 { return m.host.Bytes() }

// bf16Values returns n random values exactly representable in bf16, uniform in ±scale: the GPU
// stores keys and queries in bf16, so the model and the host see the same numbers.
func bf16Values(r *rand.Rand, n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = tensor.BF16ToFloat(tensor.FloatToBF16(float32((r.Float64()*2 - 1) * scale)))
	}
	return v
}

// The kernels' indexing, modelled by kernelScores over the GPU storage's bookkeeping, gives the
// host storage's scores for every token-eviction policy: real requests from kv's policies (post-
// fill and chunked SnapKV, the patch, gqa=expand and mean, PyramidKV, H2O, TOVA, Locret) over
// pre-fill chunks with a patch and decode steps, heads of different lengths after eviction.
func TestScoresKernelModel(t *testing.T) {
	shape := kv.Shape{Layers: 2, Heads: 8, KVHeads: 2, HeadDim: 64}
	const prompt, chunk, patch, steps = 230, 64, 6, 5
	for _, spec := range []string{
		"snapkv:sparsity=0.5,window=8,gqa=mean",
		"snapkv:sparsity=0.5,window=8",
		"snapkv:sparsity=0.6,window=8,chunked=true,gqa=mean",
		"snapkv:sparsity=0.6,window=8,chunked=true",
		"snapkv:sparsity=0.6,window=8,chunked=true,patch=6,gqa=mean",
		"pyramidkv:sparsity=0.6,window=8,chunked=true,gqa=mean",
		"h2o:heavy=40,recent=20",
		"tova:budget=50",
		"locret:sparsity=0.5,local=10,stabilizers=30",
	} {
		t.Run(spec, func(t *testing.T) {
			r := rand.New(rand.NewPCG(3, uint64(len(spec))))
			var ms *modelStorage
			mk := func(s kv.Shape, rep int, p kv.Precision) (kv.Storage, error) {
				host, err := kv.HostStorage(s, rep, p)
				if err != nil {
					return nil, err
				}
				heads := s.Layers * s.KVHeads
				blocks := heads * ((prompt+patch+steps)/cuda.BlockEntries + 2)
				pages, err := cuda.NewPagedCache(blocks, heads)
				if err != nil {
					return nil, err
				}
				ms = &modelStorage{t: t, host: host, shape: s, rep: rep, pages: pages,
					kpool: make([]float32, blocks*cuda.BlockEntries*s.HeadDim)}
				return ms, nil
			}
			c, err := kv.New(shape, spec+"+bf16", kv.WithStorage(mk))
			if err != nil {
				t.Fatal(err)
			}
			d := shape.HeadDim
			feed := func(st model.Step) {
				if err := c.Begin(st); err != nil {
					t.Fatal(err)
				}
				n := st.Rows
				for l := range shape.Layers {
					q := bf16Values(r, n*shape.Heads*d, 1)
					k := bf16Values(r, n*shape.KVHeads*d, 1)
					v := bf16Values(r, n*shape.KVHeads*d, 1)
					c.Attend(l, compute.Host(q), compute.Host(k), compute.Host(v), compute.Host(make([]float32, n*shape.Heads*d)))
				}
				c.Commit()
			}
			feedSteps(c, prompt, chunk, steps, feed)
			if ms.checked == 0 {
				t.Fatal("no head asked for scores")
			}
			t.Logf("%d heads' scores checked", ms.checked)
		})
	}
}

func TestScoreHeads(t *testing.T) {
	a := &kv.AttendArgs{N: 10, Tokens: 7, Past: []int{5, 9, 0},
		Req: []kv.ScoreRequest{{From: 3, To: 7}, {}, {From: 7, To: 10, Local: true}}}
	got := scoreHeads(nil, a)
	want := []cuda.ScoreHead{{From: 3, To: 7, Past: 5, Count: 12}, {}, {From: 7, To: 10, Past: 0, First: 0, Count: 7}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	a.Past[2] = 4
	if got := scoreHeads(got, a)[2]; got.First != 4 || got.Count != 11 {
		t.Fatalf("a local request over a head with 4 entries before: %+v", got)
	}
}

// feedSteps hands feed the steps of a generation through c: the prompt in the chunks
// model.PlanChunks makes (each but the last with c's patch rows), then steps decode steps.
func feedSteps(c *kv.Cache, prompt, chunk, steps int, feed func(model.Step)) {
	plan := model.PlanChunks(prompt, chunk, c.LocalChunk())
	for lo := 0; lo < prompt; lo = plan.End(lo) {
		n, final := plan.End(lo)-lo, plan.End(lo) == prompt
		p := 0
		if !final {
			p = c.PatchLen()
		}
		feed(model.Step{Pos: c.Pos(), Rows: n + p, Patch: p, Prefill: true, Final: final})
	}
	for range steps {
		feed(model.Step{Pos: c.Pos(), Rows: 1})
	}
}

// recorder is a kv.Storage that records, in call order, the scores each asked head was handed
// and the entries each Keep kept, so that a CPU and a GPU run can be compared forward by
// forward.
type recorder struct {
	kv.Storage
	events []event
}

type event struct {
	layer, head int
	scores      []float32 // an Attend's scores for the head, or nil
	keep        []int     // a Keep's entries, a Drop's run {lo, hi}, or nil
}

func (r *recorder) Attend(layer int, q, out compute.Buf, a *kv.AttendArgs) {
	r.Storage.Attend(layer, q, out, a)
	for g, s := range a.Scores {
		if a.Req[g].To > a.Req[g].From {
			r.events = append(r.events, event{layer: layer, head: g, scores: append([]float32{}, s...)})
		}
	}
}

func (r *recorder) Keep(layer, head int, idx []int) {
	r.events = append(r.events, event{layer: layer, head: head, keep: append([]int{}, idx...)})
	r.Storage.Keep(layer, head, idx)
}

func (r *recorder) Drop(layer, head, lo, hi int) {
	r.events = append(r.events, event{layer: layer, head: head, keep: []int{lo, hi}})
	r.Storage.Drop(layer, head, lo, hi)
}

// evictionRun is one run of a cache through the same forwards: the recorded scores and Keeps,
// the meter's report, each forward's attention outputs and the kept positions.
type evictionRun struct {
	events []event
	meter  footprint.Report
	outs   [][]float32 // per forward and layer
	before []int       // per forward and layer: the events before its Attend
	pos    [][][]int32
}

// runEviction feeds a cache of spec on storage mk a pre-fill of prompt tokens in chunks (with the
// policy's patch and local chunk) and steps decode steps, every layer's q, k and v drawn from
// seed as bf16 values; toDev uploads a host slice for the storage's backend, fromDev downloads.
func runEviction(t *testing.T, shape kv.Shape, spec string, mk kv.StorageMaker, prompt, chunk, steps int,
	toDev func([]float32) compute.Buf, fromDev func(compute.Buf) []float32) evictionRun {
	var rec *recorder
	rmk := func(s kv.Shape, rep int, p kv.Precision) (kv.Storage, error) {
		st, err := mk(s, rep, p)
		rec = &recorder{Storage: st}
		return rec, err
	}
	meter := footprint.NewMeter(shape.Layers, shape.KVHeads)
	c, err := kv.New(shape, spec, kv.WithStorage(rmk), kv.WithObserver(meter))
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(21, 22))
	var run evictionRun
	d := shape.HeadDim
	feed := func(st model.Step) {
		if err := c.Begin(st); err != nil {
			t.Fatal(err)
		}
		n := st.Rows
		for l := range shape.Layers {
			q := toDev(bf16Values(r, n*shape.Heads*d, 2))
			k := toDev(bf16Values(r, n*shape.KVHeads*d, 2))
			v := toDev(bf16Values(r, n*shape.KVHeads*d, 1))
			out := toDev(make([]float32, n*shape.Heads*d))
			run.before = append(run.before, len(rec.events))
			c.Attend(l, q, k, v, out)
			run.outs = append(run.outs, fromDev(out))
		}
		c.Commit()
	}
	feedSteps(c, prompt, chunk, steps, feed)
	run.events, run.meter = rec.events, meter.Report(false)
	for l := range shape.Layers {
		var heads [][]int32
		for h := range c.Heads() {
			heads = append(heads, append([]int32{}, c.Positions(l, h)...))
		}
		run.pos = append(run.pos, heads)
	}
	return run
}

// Token eviction on the GPU against the CPU, fed the same bf16 queries, keys and values: every
// policy that asks for scores (SnapKV post-fill and chunked, with the patch, gqa=expand and
// mean; PyramidKV; H2O; TOVA; Locret) and the random control. The scores agree within float
// rounding at every forward; the kept entries are the same at every Keep until one that the
// scores' rounding can explain (a near-tie: the scores agreed, so only their rounding picked
// differently), after which the runs are no longer compared entry by entry; the meter's
// footprint, peak and peak bytes are the same whatever was kept; the attention outputs agree
// within bf16 rounding.
func TestGPUEvictionMatchesCPU(t *testing.T) {
	g := openGPU(t)
	const prompt, chunk, steps = 300, 64, 12
	toHost := func(x []float32) compute.Buf { return compute.Host(x) }
	fromHost := func(b compute.Buf) []float32 { return append([]float32{}, compute.HostOf(b)...) }
	var bufs []uint64
	defer func() {
		for _, p := range bufs {
			g.d.Free(cuda.Buffer{Ptr: p})
		}
	}()
	toDev := func(x []float32) compute.Buf {
		b, err := g.d.Alloc(int64(len(x)) * 2)
		if err != nil {
			t.Fatal(err)
		}
		bufs = append(bufs, b.Ptr)
		if err := cuda.Upload(g.d, b, toBF16(x)); err != nil {
			t.Fatal(err)
		}
		return compute.Buf{Dev: b.Ptr, N: len(x), Elem: 2}
	}
	fromDev := func(b compute.Buf) []float32 {
		raw := make([]uint16, b.N)
		if err := cuda.Download(g.d, raw, dev(b)); err != nil {
			t.Fatal(err)
		}
		x := make([]float32, b.N)
		for i, h := range raw {
			x[i] = tensor.BF16ToFloat(h)
		}
		return x
	}
	// head dim 64 with 4 query heads per KV head; 128 with 8 (the kernels' largest group)
	for _, shape := range []kv.Shape{{Layers: 3, Heads: 8, KVHeads: 2, HeadDim: 64}, {Layers: 2, Heads: 16, KVHeads: 2, HeadDim: 128}} {
		for _, spec := range []string{
			"snapkv:sparsity=0.6,window=16",
			"snapkv:sparsity=0.6,window=16,gqa=mean",
			"snapkv:sparsity=0.6,window=16,chunked=true",
			"snapkv:sparsity=0.6,window=16,chunked=true,gqa=mean",
			"snapkv:sparsity=0.6,window=16,chunked=true,patch=8,gqa=mean",
			"snapkv:sparsity=0.6,window=16,chunked=true,patch=8",
			"pyramidkv:sparsity=0.6,window=16,chunked=true",
			"pyramidkv:sparsity=0.6,window=16,gqa=mean",
			"h2o:heavy=48,recent=32",
			"tova:budget=80",
			"locret:sparsity=0.6,local=20,stabilizers=64",
			"random:sparsity=0.6,window=16",
		} {
			t.Run(fmt.Sprintf("d%d/%s", shape.HeadDim, spec), func(t *testing.T) {
				var err error
				var cpu, gpu evictionRun
				func() {
					defer Recover(&err)
					cpu = runEviction(t, shape, spec+"+bf16", kv.HostStorage, prompt, chunk, steps, toHost, fromHost)
					gpu = runEviction(t, shape, spec+"+bf16", g.Storage, prompt, chunk, steps, toDev, fromDev)
				}()
				if err != nil {
					t.Fatal(err)
				}
				if len(cpu.events) != len(gpu.events) {
					t.Fatalf("%d scores and Keeps on the GPU, %d on the CPU", len(gpu.events), len(cpu.events))
				}
				diverged, worstScore, scored := -1, 0.0, 0
				for i, ce := range cpu.events {
					ge := gpu.events[i]
					if ce.layer != ge.layer || ce.head != ge.head || (ce.keep == nil) != (ge.keep == nil) {
						t.Fatalf("event %d: the GPU's is layer %d head %d keep %v, the CPU's layer %d head %d keep %v",
							i, ge.layer, ge.head, ge.keep != nil, ce.layer, ce.head, ce.keep != nil)
					}
					if ce.keep != nil {
						if len(ce.keep) != len(ge.keep) {
							t.Fatalf("event %d (layer %d head %d): the GPU keeps %d entries, the CPU %d", i, ce.layer, ce.head, len(ge.keep), len(ce.keep))
						}
						if diverged < 0 && !slices.Equal(ce.keep, ge.keep) {
							diverged = i
							t.Logf("event %d (layer %d head %d): a near-tie kept different entries; the runs are compared by counts from here", i, ce.layer, ce.head)
						}
						continue
					}
					if diverged >= 0 {
						continue
					}
					if len(ce.scores) != len(ge.scores) {
						t.Fatalf("event %d (layer %d head %d): %d scores on the GPU, %d on the CPU", i, ce.layer, ce.head, len(ge.scores), len(ce.scores))
					}
					for j, c := range ce.scores {
						diff := math.Abs(float64(ge.scores[j] - c))
						if diff > 1e-6+1e-3*math.Abs(float64(c)) {
							t.Fatalf("event %d (layer %d head %d) entry %d: GPU score %g, CPU %g", i, ce.layer, ce.head, j, ge.scores[j], c)
						}
						worstScore = max(worstScore, diff/max(math.Abs(float64(c)), 1e-6))
					}
					scored++
				}
				if scored == 0 && !strings.HasPrefix(spec, "random") {
					t.Fatal("no scores were compared")
				}
				if cpu.meter.Footprint != gpu.meter.Footprint || cpu.meter.Peak != gpu.meter.Peak || cpu.meter.PeakBytes != gpu.meter.PeakBytes {
					t.Fatalf("meter: GPU footprint %v peak %v peak bytes %d, CPU %v %v %d", gpu.meter.Footprint, gpu.meter.Peak,
						gpu.meter.PeakBytes, cpu.meter.Footprint, cpu.meter.Peak, cpu.meter.PeakBytes)
				}
				if diverged < 0 {
					for l := range cpu.pos {
						for h := range cpu.pos[l] {
							if !slices.Equal(cpu.pos[l][h], gpu.pos[l][h]) {
								t.Fatalf("layer %d head %d keeps other positions on the GPU", l, h)
							}
						}
					}
				}
				worstOut := 0.0
				for i := range cpu.outs {
					if diverged >= 0 && cpu.before[i] > diverged {
						break // the caches differ: so may the attention
					}
					rel, _ := relErr(gpu.outs[i], cpu.outs[i])
					worstOut = max(worstOut, rel)
				}
				if worstOut > 0.02 {
					t.Fatalf("attention outputs: relative error %.3g", worstOut)
				}
				t.Logf("%d score vectors within %.2g relative; outputs within %.2g; footprint %.4f peak %.4f", scored, worstScore, worstOut,
					cpu.meter.Footprint, cpu.meter.Peak)
			})
		}
	}
}
