package footprint

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
)

// Hand computations of the harness's arithmetic (sums written out below).
func TestExactHandComputed(t *testing.T) {
	for _, tc := range []struct {
		name           string
		p              Params
		entries, peakE float64 // Σ entries and the largest phase, per head
	}{
		// Example B's geometry: chunks 256,256,256,232 keep int(0.5·n) = 128,128,128,116.
		// 32896 + (32896+128·256) + (32896+256·256) + (27028+384·232) + (5050+500·100); peaks 256,384,512,616,600.
		{"snapkv chunked", Params{Prompt: 1000, Response: 100, Chunk: 256, KVSparsity: 0.5, KVWindow: 64}, 368158, 616},
		// s = 0.9: int(0.1·256) = 25 ≤ 64 keeps the window, 64 per chunk (the last of 232 too).
		// 32896 + (32896+64·256) + (32896+128·256) + (27028+192·232) + (5050+256·100)
		{"cap below window", Params{Prompt: 1000, Response: 100, Chunk: 256, KVSparsity: 0.9, KVWindow: 64}, 250062, 424},
		// Patch: non-final chunks keep int(0.5·n) = 128 exactly, the final chunk the usual rule (116).
		{"patch", Params{Prompt: 1000, Response: 100, Chunk: 256, KVSparsity: 0.5, KVWindow: 64, Patch: true}, 368158, 616},
		// Patch at s = 0.9 keeps 25 per non-final chunk, the final chunk max(23, 64) = 64:
		// 32896 + (32896+25·256) + (32896+50·256) + (27028+75·232) + (5050+139·100)
		{"patch below window", Params{Prompt: 1000, Response: 100, Chunk: 256, KVSparsity: 0.9, KVWindow: 64, Patch: true}, 181266, 307},
		// Post-fill: full pre-fill (causal(1000) = 500500), then ceil64(max(int(0.5·1001), 64)) = 512 kept:
		// 500500 + 5050 + 512·100; peaks 256, 512, 768, 1000, 612.
		{"post-fill", Params{Prompt: 1000, Response: 100, Chunk: 256, KVSparsity: 0.5, KVWindow: 64, PostFill: true}, 556750, 1000},
		// Streaming heads S=4, W=64 over chunks of 256: as Example A's table, then the decode
		// steps from t = 1000 see 64+4 each: 183208 as in the published formula, peak 324.
		{"streaming", Params{Prompt: 1000, Response: 100, Chunk: 256, Sink: 4, Window: 64, HeadSparsity: 1}, 183208, 324},
		// No decoding: no decode phase (the published formula adds one anyway).
		{"no response", Params{Prompt: 10, Chunk: 5, KVSparsity: 0.5, KVWindow: 2}, 15 + 15 + 2*5, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Exact(tc.p)
			if err != nil {
				t.Fatal(err)
			}
			total := tc.p.Prompt + tc.p.Response
			want := Result{Footprint: tc.entries / causal(total), Peak: tc.peakE / float64(total)}
			if math.Abs(r.Footprint-want.Footprint) > 1e-12 || math.Abs(r.Peak-want.Peak) > 1e-12 {
				t.Errorf("got %+v, want %+v", r, want)
			}
		})
	}
}

// docs/METHODS.md §5.3's worked PyramidKV schedule: chunk 32768, s = 0.7, window 64 gives cap
// 9830 and budgets 19044 (layer 0), 10074 (15), 506 (31); with the patch (cap 9894,
// 32832 tokens) 19169 … 507. At s = 0.3 (cap 22937) the uniform branch applies.
func TestPyramidBudgetSpecExample(t *testing.T) {
	c := ChunkCapacity(0.7, 32768)
	if c != 9830 {
		t.Fatalf("capacity %d, want 9830", c)
	}
	for _, tc := range []struct{ layer, q, c, want int }{
		{0, 32768, 9830, 19044}, {15, 32768, 9830, 10074}, {31, 32768, 9830, 506},
		{0, 32832, 9894, 19169}, {31, 32832, 9894, 507},
	} {
		if got := PyramidBudget(tc.q, tc.c, 64, tc.layer, 32, 20); got != tc.want {
			t.Errorf("layer %d, q %d, cap %d: budget %d, want %d", tc.layer, tc.q, tc.c, got, tc.want)
		}
	}
	if got := PyramidKept(32768, ChunkCapacity(0.3, 32768), 64, 31, 32, 20); got != 22937 {
		t.Errorf("s = 0.3, layer 31 keeps %d, want 22937 (uniform)", got)
	}
}

// Exact with per-layer PyramidKV budgets averages the layers' entries: with two layers
// of one chunk of 40 then 40, s = 0.5, w = 4: cap 20 < 2(20−4) = 32 ≤ 40, min = 16//20
// = 0, max = 32 (< 36), steps 32: layer 0 keeps 32+4, layer 1 keeps 0+4.
func TestExactPyramidLayers(t *testing.T) {
	p := Params{Prompt: 80, Response: 0, Chunk: 40, KVSparsity: 0.5, KVWindow: 4, Layers: 2}
	r, err := Exact(p)
	if err != nil {
		t.Fatal(err)
	}
	// per layer: causal(40) + causal(40) + kept·40; mean kept (36+4)/2 = 20.
	want := (820 + 820 + 20*40) / causal(80)
	if math.Abs(r.Footprint-want) > 1e-12 || math.Abs(r.Peak-60.0/80) > 1e-12 {
		t.Errorf("got %+v, want footprint %v, peak %v", r, want, 60.0/80)
	}
}

// Locret as the harness runs it, Example C's geometry: chunks 256,256,256,132 over the
// first 900 tokens then 100; budgets max(ceil64(int(0.5·e)), 64) = 128, 256, 384, 512,
// 512 over everything seen: held 128, 256, 384, 512, 512.
func TestLocretExactHandComputed(t *testing.T) {
	r, err := LocretExact(1000, 100, 256, 0.5, 100, 64)
	if err != nil {
		t.Fatal(err)
	}
	entries := 32896.0 + (32896 + 128*256) + (32896 + 256*256) + (8778 + 384*132) + (5050 + 512*100) + (5050 + 512*100)
	want := Result{Footprint: entries / causal(1100), Peak: 612.0 / 1100}
	if math.Abs(r.Footprint-want.Footprint) > 1e-12 || math.Abs(r.Peak-want.Peak) > 1e-12 {
		t.Errorf("got %+v, want %+v", r, want)
	}
	if LocretBudget(0.5, 100, 2500) != 2500 || LocretBudget(0.1, 1000, 64) != 960 {
		t.Errorf("budgets %d %d, want 2500 960", LocretBudget(0.5, 100, 2500), LocretBudget(0.1, 1000, 64))
	}
}

func TestExactErrors(t *testing.T) {
	for _, c := range []struct {
		p    Params
		want string
	}{
		{Params{Prompt: 0}, "prompt 0 + response 0: want at least one token"},
		{Params{Prompt: -1, Response: 3}, "prompt -1: want ≥ 0"},
		{Params{Prompt: 10, KVSparsity: 2}, "KV sparsity 2"},
		{Params{Prompt: 10, Layers: -1}, "layers -1: want 0 to 4096"},
		{Params{Prompt: 10, Layers: 5000}, "layers 5000: want 0 to 4096"},
		{Params{Prompt: 10, Beta: -2}, "beta -2"},
		{Params{Prompt: 10, Window: -2}, "window -2: want at least 0"},
	} {
		// the error names the parameter, never prints the struct
		if _, err := Exact(c.p); err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "{") {
			t.Errorf("%+v: error %v, want one containing %q", c.p, err, c.want)
		}
	}
	if _, err := Exact(Params{Prompt: 0, Response: 1}); err != nil {
		t.Errorf("a decoded one-token prompt: %v", err)
	}
}

// Exact walks the chunks with O(layers) memory; it gives, bit for bit, what the
// list-building version it replaced gives (kept below as the reference), over
// random geometries, and allocates no more for a million one-token chunks.
func TestExactStreamsTheChunks(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 3000 {
		p := Params{Prompt: r.IntN(3000), Response: r.IntN(300), Chunk: r.IntN(400) - 10, Sink: r.IntN(20), Window: r.IntN(300),
			HeadSparsity: r.Float64(), KVSparsity: r.Float64(), KVWindow: r.IntN(100), PostFill: r.IntN(3) == 0, Patch: r.IntN(3) == 0,
			Layers: r.IntN(6), Beta: r.IntN(30)}
		if p.Prompt+p.Response == 0 {
			continue
		}
		got, err := Exact(p)
		want, _ := exactByLists(p)
		if err != nil || got != want {
			t.Fatalf("%+v: %+v, %v; the list version %+v", p, got, err, want)
		}
		lp, lr, lc, ls, ll, lst := r.IntN(3000), r.IntN(300), r.IntN(400)-10, r.Float64(), r.IntN(500), r.IntN(3000)
		if lp+lr == 0 {
			continue
		}
		gl, err := LocretExact(lp, lr, lc, ls, ll, lst)
		wl, _ := locretByLists(lp, lr, lc, ls, ll, lst)
		if err != nil || gl != wl {
			t.Fatalf("locret %d %d %d %g %d %d: %+v, %v; the list version %+v", lp, lr, lc, ls, ll, lst, gl, err, wl)
		}
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := Exact(Params{Prompt: 1 << 20, Response: 5, Chunk: 1, KVSparsity: 0.5, KVWindow: 8, Layers: 4}); err != nil {
		t.Fatal(err)
	}
	if _, err := LocretExact(1<<20, 5, 1, 0.5, 100, 64); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if b := after.TotalAlloc - before.TotalAlloc; b > 1<<16 {
		t.Errorf("2^20 one-token chunks allocated %d bytes; the chunks should not be listed", b)
	}
}

func exactByLists(p Params) (Result, error) {
	if err := p.checkExact(); err != nil {
		return Result{}, err
	}
	se, sp := listStreaming(p)
	layers := max(p.Layers, 1)
	var ge float64
	gp := make([]float64, len(sp))
	for l := range layers {
		e, pk := listGlobal(p, l)
		ge += e / float64(layers)
		for i := range pk {
			gp[i] += pk[i] / float64(layers)
		}
	}
	total := p.Prompt + p.Response
	full := causal(total)
	h := p.HeadSparsity
	r := Result{Footprint: se/full*h + ge/full*(1-h)}
	peak := 0.0
	for i := range sp {
		peak = max(peak, h*sp[i]+(1-h)*gp[i])
	}
	r.Peak = peak / float64(total)
	return r, nil
}

// listStreaming counts the streaming heads: a chunk sees the sink and window kept
// before it plus itself causally; decoding likewise, one token at a time.
func listStreaming(p Params) (float64, []float64) {
	var entries float64
	var peaks []float64
	b := listBoundaries(p.Prompt, p.Chunk)
	for i := 0; i+1 < len(b); i++ {
		a, n := b[i], b[i+1]-b[i]
		local := min(a, p.Window)
		sink := min(a-local, p.Sink)
		entries += causal(n) + float64(n*(local+sink))
		peaks = append(peaks, float64(n+local+sink))
	}
	if p.Response > 0 {
		// decode step t sees min(t, S+W) older entries and itself
		entries += float64(p.Response) + sumMin(p.Prompt, 1, p.Response, p.Sink+p.Window)
		peaks = append(peaks, float64(1+min(p.Prompt+p.Response-1, p.Sink+p.Window)))
	}
	return entries, peaks
}

// listBoundaries are np.arange(0, P, C) + [P]: the starts of the pre-fill chunks and the end.
func listBoundaries(p, c int) []int {
	if c <= 0 {
		c = p
	}
	var b []int
	for a := 0; a < p; a += c {
		b = append(b, a)
	}
	return append(b, p)
}

// listGlobal counts the global heads of one layer.
func listGlobal(p Params, layer int) (float64, []float64) {
	var entries float64
	var peaks []float64
	past := 0
	b := listBoundaries(p.Prompt, p.Chunk)
	for i := 0; i+1 < len(b); i++ {
		n := b[i+1] - b[i]
		entries += causal(n) + float64(past*n)
		peaks = append(peaks, float64(past+n))
		final := i+2 == len(b)
		switch {
		case p.PostFill && final:
			past = p.cluster(past+n, PostFillCapacity(p.KVSparsity, p.Prompt+1, p.KVWindow), layer)
		case p.PostFill:
			past += n
		case p.Patch && !final:
			w := p.KVWindow
			past += p.cluster(n+w, ChunkCapacity(p.KVSparsity, n)+w, layer) - w
		default:
			past += p.cluster(n, ChunkCapacity(p.KVSparsity, n), layer)
		}
	}
	if p.Response > 0 {
		entries += causal(p.Response) + float64(past*p.Response)
		peaks = append(peaks, float64(past+p.Response))
	}
	return entries, peaks
}

func locretByLists(prompt, response, chunk int, sparsity float64, localLen, stabilizers int) (Result, error) {
	if prompt < 0 || response < 0 || prompt+response < 1 || localLen < 0 || stabilizers < 0 || !(sparsity >= 0 && sparsity <= 1) {
		return Result{}, fmt.Errorf("footprint: locret: prompt %d, response %d, local %d, stabilizers %d, sparsity %g: "+
			"want prompt, response, local, stabilizers ≥ 0, prompt+response ≥ 1, 0 ≤ sparsity ≤ 1", prompt, response, localLen, stabilizers, sparsity)
	}
	b := []int{0}
	switch {
	case prompt == 0:
	case localLen >= prompt:
		b = append(b, prompt)
	default:
		b = append(listBoundaries(prompt-localLen, chunk), prompt)
	}
	var entries float64
	peak, past := 0.0, 0
	for i := 0; i+1 < len(b); i++ {
		n := b[i+1] - b[i]
		entries += causal(n) + float64(past*n)
		peak = max(peak, float64(past+n))
		past = min(LocretBudget(sparsity, b[i+1], stabilizers), past+n)
	}
	if response > 0 {
		entries += causal(response) + float64(past*response)
		peak = max(peak, float64(past+response))
	}
	total := prompt + response
	return Result{Footprint: entries / causal(total), Peak: peak / float64(total)}, nil
}
