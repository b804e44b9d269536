package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// Mask training's kernels against float64 references computed here from the same bf16 inputs
// (GPU-gated: TestGPUTrain*), the attention kernels' tile loops against the band's definition
// and the wrappers' refusals (no GPU needed).

// span and visibleSpans copy train/attention.go's band.visible (cuda must not import train):
// the positions query i sees, full (window 0) or streaming.
type span struct{ lo, hi int }

func visibleSpans(i, sink, window int) []span {
	if window == 0 {
		return []span{{0, i + 1}}
	}
	lo := max(0, i-window+1)
	s := min(sink, i+1)
	if s >= lo {
		return []span{{0, i + 1}}
	}
	if s == 0 {
		return []span{{lo, i + 1}}
	}
	return []span{{0, s}, {lo, i + 1}}
}

func bandVisible(i, j, sink, window int) bool {
	for _, s := range visibleSpans(i, sink, window) {
		if s.lo <= j && j < s.hi {
			return true
		}
	}
	return false
}

// keyTiles models kernels/train.cu's key_tiles and its loop (first, next): the key tiles of tk
// keys that the forward and dq CTAs of queries [i0, i1) visit, in order.
func keyTiles(i0, i1, sink, window, tk int) []int {
	end := (i1-1)/tk + 1
	sinkEnd, winBegin := end, end
	if window != 0 {
		sinkEnd = (min(sink, i1) + tk - 1) / tk
		winBegin = max(sinkEnd, max(0, i0-window+1)/tk)
	}
	var tiles []int
	kb := winBegin
	if sinkEnd > 0 {
		kb = 0
	}
	for kb < end {
		tiles = append(tiles, kb)
		if kb+1 == sinkEnd {
			kb = winBegin
		} else {
			kb++
		}
	}
	return tiles
}

// queryTiles models the dkdv kernel's loop (query_end): the query tiles of tq rows that the
// CTA of keys [j0, j1) visits (each query head's, in turn).
func queryTiles(j0, j1, n, sink, window, tq int) []int {
	end := n
	if window != 0 && j0 >= sink {
		end = min(n, j1-1+window)
	}
	var tiles []int
	for i0 := j0; i0 < end; i0 += tq {
		tiles = append(tiles, i0/tq)
	}
	return tiles
}

// The CUDA predicate band_visible: j ≤ i and (full or j < sink or j > i − window).
func kernelVisible(i, j, sink, window int) bool {
	return j <= i && (window == 0 || j < sink || j > i-window)
}

// tileBands are full bands and streaming ones whose sink and window fall on, just before and
// just after tile edges (of 32 and 64: the kernels' tiles).
func tileBands() []struct{ sink, window int } {
	var bands []struct{ sink, window int }
	for _, sink := range []int{0, 1, 5, 31, 32, 33, 64, 65, 100} {
		for _, window := range []int{0, 1, 2, 3, 20, 30, 31, 32, 33, 34, 62, 63, 64, 65, 66, 96, 97, 130, 256, 500} {
			bands = append(bands, struct{ sink, window int }{sink, window})
		}
	}
	return bands
}

// Every tile the loops visit holds a visible (query, key) pair of the CTA, and every visible
// pair's tile is visited: the skip logic drops nothing and keeps nothing it need not.
func TestTrainTileLoopsMatchBand(t *testing.T) {
	for _, n := range []int{1, 31, 32, 33, 97, 200, 257} {
		for _, b := range tileBands() {
			for i := 0; i < n; i++ {
				for j := 0; j < n; j++ {
					if kernelVisible(i, j, b.sink, b.window) != bandVisible(i, j, b.sink, b.window) {
						t.Fatalf("n %d sink %d window %d: kernel's predicate says %v for query %d key %d", n, b.sink, b.window, !bandVisible(i, j, b.sink, b.window), i, j)
					}
				}
			}
			// the forward's and dQ's CTAs: query tiles over key tiles
			for _, tile := range []struct{ tq, tk int }{{trainTile, trainTile}} {
				for i0 := 0; i0 < n; i0 += tile.tq {
					i1 := min(i0+tile.tq, n)
					want := map[int]bool{}
					for i := i0; i < i1; i++ {
						for j := 0; j < n; j++ {
							if bandVisible(i, j, b.sink, b.window) {
								want[j/tile.tk] = true
							}
						}
					}
					checkTiles(t, fmt.Sprintf("n %d sink %d window %d: queries [%d,%d) over key tiles of %d", n, b.sink, b.window, i0, i1, tile.tk),
						keyTiles(i0, i1, b.sink, b.window, tile.tk), want)
				}
			}
			// the dK/dV CTAs: key tiles over query tiles (of 64 rows for a head dimension of 64, 32 for 128)
			for _, tq := range []int{trainDKDVRows(64), trainDKDVRows(128)} {
				for j0 := 0; j0 < n; j0 += trainTile {
					j1 := min(j0+trainTile, n)
					want := map[int]bool{}
					for j := j0; j < j1; j++ {
						for i := 0; i < n; i++ {
							if bandVisible(i, j, b.sink, b.window) {
								want[i/tq] = true
							}
						}
					}
					checkTiles(t, fmt.Sprintf("n %d sink %d window %d: keys [%d,%d) over query tiles of %d", n, b.sink, b.window, j0, j1, tq),
						queryTiles(j0, j1, n, b.sink, b.window, tq), want)
				}
			}
		}
	}
}

func checkTiles(t *testing.T, what string, got []int, want map[int]bool) {
	t.Helper()
	for k, tile := range got {
		if k > 0 && tile <= got[k-1] {
			t.Fatalf("%s: tiles %v not increasing", what, got)
		}
		if !want[tile] {
			t.Fatalf("%s: visits tile %d, which holds no visible pair (want %v)", what, tile, want)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%s: visits %v, want the %d tiles %v", what, got, len(want), want)
	}
}

// A streaming head of sink 64 and window 256 over 4096 tokens: the last forward CTA (queries
// 4032..4095) visits the sink tile of 64 keys and the 5 tiles of keys 3776..4095, not 64.
func TestTrainStreamingSkipsHiddenTiles(t *testing.T) {
	got := keyTiles(4032, 4096, 64, 256, trainTile)
	want := []int{0, 59, 60, 61, 62, 63}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("key tiles %v, want %v", got, want)
	}
	// key tile 1 (keys 64..127) is seen by queries up to 127+255 = 382: query tiles 1..5 of 64
	// rows, 2..11 of 32
	if got := queryTiles(64, 128, 4096, 64, 256, trainDKDVRows(64)); fmt.Sprint(got) != fmt.Sprint([]int{1, 2, 3, 4, 5}) {
		t.Fatalf("query tiles of 64 rows of keys 64..127: %v", got)
	}
	if got := queryTiles(64, 128, 4096, 64, 256, trainDKDVRows(128)); fmt.Sprint(got) != fmt.Sprint([]int{2, 3, 4, 5, 6, 7, 8, 9, 10, 11}) {
		t.Fatalf("query tiles of 32 rows of keys 64..127: %v", got)
	}
}

// The wrappers refuse bad shapes and short buffers before any launch, so a zero Device will do.
func TestTrainRefusesBadShapes(t *testing.T) {
	d := &Device{}
	buf := Buffer{Ptr: 1 << 20, Bytes: 1 << 30}
	small := Buffer{Ptr: 1 << 20, Bytes: 64}
	good := BandShape{N: 100, QHeads: 8, KVHeads: 4, Dim: 64, Sink: 4, Window: 32, Scale: 0.125}
	with := func(f func(*BandShape)) BandShape { s := good; f(&s); return s }
	for _, c := range []struct {
		err  error
		want string
	}{
		{d.AttentionBand(buf, buf, buf, buf, buf, with(func(s *BandShape) { s.Dim = 96 })), "band attention: head dimension 96"},
		{d.AttentionBandBackward(buf, buf, buf, buf, buf, buf, buf, buf, buf, with(func(s *BandShape) { s.Dim = 32 }), buf), "band attention backward: head dimension 32"},
		{d.AttentionBand(buf, buf, buf, buf, buf, with(func(s *BandShape) { s.KVHeads = 3 })), "8 query heads do not divide over 3 KV heads"},
		{d.AttentionBand(buf, buf, buf, buf, buf, with(func(s *BandShape) { s.N = 0 })), "tokens = 0"},
		{d.AttentionBand(buf, buf, buf, buf, buf, with(func(s *BandShape) { s.Window = -1 })), "window -1"},
		{d.AttentionBand(buf, buf, buf, buf, buf, with(func(s *BandShape) { s.Scale = 0 })), "scale 0"},
		{d.AttentionBand(buf, buf, small, buf, buf, good), "band attention queries: needs 102400 bytes, buffer has 64"},
		{d.AttentionBand(buf, small, buf, buf, buf, good), "band attention lse: needs 3200 bytes"},
		{d.AttentionBandBackward(buf, small, buf, buf, buf, buf, buf, buf, buf, good, buf), "band attention backward key gradient: needs 51200 bytes"},
		{d.AttentionBandBackward(buf, buf, buf, buf, buf, buf, buf, buf, buf, good, small), "band attention backward workspace: needs 3200 bytes"},
		{d.MixHeads(buf, buf, buf, buf, 10, 8, 4, 60), "mix heads: dim = 60, must be divisible by 8"},
		{d.MixHeads(buf, buf, buf, small, 10, 8, 4, 64), ""}, // z of 4 floats fits 64 bytes
		{d.MixHeadsBackward(buf, buf, buf, buf, buf, buf, buf, 10, 6, 4, 64), "6 query heads do not divide over 4 KV heads"},
		{d.RMSNormBackward(small, buf, buf, buf, 4, 64, 1e-5), "rmsnorm backward residual gradient: needs 1024 bytes"},
		{d.SwiGLUBackward(buf, buf, buf, buf, buf, 12), "swiglu backward: count = 12, must be divisible by 8"},
		{d.CrossEntropy(buf, buf, buf, small, 20, 1000, 1), "cross-entropy targets: needs 80 bytes"},
		{d.CrossEntropy(buf, buf, buf, buf, 2, 0, 1), "cross-entropy: vocab = 0"},
		{d.SquaredError(buf, buf, small, buf, buf, 3, 64, 1), "squared error: hidden states (64 bytes)"},
		{d.ToBF16(small, buf, 100), "to bf16 destination: needs 200 bytes"},
		{d.AddBF16(buf, small, 100), "add bf16 source: needs 200 bytes"},
	} {
		if c.want == "" {
			// passed the checks and reached the launch, which a zero Device has no kernel for
			if c.err == nil || !strings.Contains(c.err.Error(), "no kernel") {
				t.Errorf("got %v, want the launch's missing-kernel error", c.err)
			}
			continue
		}
		if c.err == nil || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("got %v, want an error containing %q", c.err, c.want)
		}
	}
}

// TestPTXHasTrainKernels: every kernel train.go launches is in train.ptx.
func TestPTXHasTrainKernels(t *testing.T) {
	images, err := modulePTX()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, k := range kernelNames(images["train"]) {
		have[k] = true
	}
	for _, k := range []string{"train_attn_fwd_d64", "train_attn_fwd_d128", "train_attn_delta", "train_attn_dkdv_d64",
		"train_attn_dkdv_d128", "train_attn_dq_d64", "train_attn_dq_d128", "train_mix_heads", "train_mix_heads_backward",
		"train_rmsnorm_backward", "train_swiglu_backward", "train_cross_entropy", "train_squared_error", "train_to_bf16",
		"train_add_bf16"} {
		if !have[k] {
			t.Errorf("kernel %s missing from train.ptx", k)
		}
	}
}

// refBandAttention is attention over the band in float64 and its analytic gradients for the
// upstream gradient dout: P = softmax(scale·q·kᵀ) over the visible keys, out = P·v,
// dP = dout·vᵀ, dS = P∘(dP − rowsum(P∘dP)), dq = scale·dS·k, dk = scale·dSᵀ·q, dv = Pᵀ·dout
// (dk and dv summed over each KV head's query heads).
func refBandAttention(s BandShape, q, k, v, dout []float64) (out, lse, dq, dk, dv []float64) {
	n, hq, hkv, D := s.N, s.QHeads, s.KVHeads, s.Dim
	out, dq = make([]float64, n*hq*D), make([]float64, n*hq*D)
	dk, dv = make([]float64, n*hkv*D), make([]float64, n*hkv*D)
	lse = make([]float64, hq*n)
	p, dp := make([]float64, n), make([]float64, n)
	for h := 0; h < hq; h++ {
		g := h / (hq / hkv)
		for i := 0; i < n; i++ {
			qi, doi := q[(i*hq+h)*D:][:D], dout[(i*hq+h)*D:][:D]
			mx := math.Inf(-1)
			for j := 0; j <= i; j++ {
				if !bandVisible(i, j, s.Sink, s.Window) {
					continue
				}
				kj := k[(j*hkv+g)*D:][:D]
				var dot float64
				for e := range D {
					dot += qi[e] * kj[e]
				}
				p[j] = float64(s.Scale) * dot
				mx = max(mx, p[j])
			}
			var sum float64
			for j := 0; j <= i; j++ {
				if bandVisible(i, j, s.Sink, s.Window) {
					p[j] = math.Exp(p[j] - mx)
					sum += p[j]
				}
			}
			lse[h*n+i] = mx + math.Log(sum)
			var delta float64
			for j := 0; j <= i; j++ {
				if !bandVisible(i, j, s.Sink, s.Window) {
					continue
				}
				p[j] /= sum
				vj := v[(j*hkv+g)*D:][:D]
				dp[j] = 0
				for e := range D {
					out[(i*hq+h)*D+e] += p[j] * vj[e]
					dp[j] += doi[e] * vj[e]
				}
				delta += p[j] * dp[j]
			}
			for j := 0; j <= i; j++ {
				if !bandVisible(i, j, s.Sink, s.Window) {
					continue
				}
				ds := p[j] * (dp[j] - delta) * float64(s.Scale)
				for e := range D {
					dq[(i*hq+h)*D+e] += ds * k[(j*hkv+g)*D+e]
					dk[(j*hkv+g)*D+e] += ds * qi[e]
					dv[(j*hkv+g)*D+e] += p[j] * doi[e]
				}
			}
		}
	}
	return out, lse, dq, dk, dv
}

// poisonedF32 allocates n float32 NaNs.
func poisonedF32(t testing.TB, d *Device, n int) Buffer {
	t.Helper()
	nan := make([]float32, n)
	for i := range nan {
		nan[i] = float32(math.NaN())
	}
	return upload(t, d, nan, 4)
}

func downloadF32(t testing.TB, d *Device, b Buffer, n int) []float64 {
	t.Helper()
	h := make([]float32, n)
	if err := Download(d, h, b); err != nil {
		t.Fatal(err)
	}
	f := make([]float64, n)
	for i, v := range h {
		f[i] = float64(v)
	}
	return f
}

// checkAbs fails when some |got − want| exceeds tol, or got is NaN.
func checkAbs(t testing.TB, what string, got, want []float64, tol float64) {
	t.Helper()
	for i := range want {
		if !(math.Abs(got[i]-want[i]) <= tol) {
			t.Fatalf("%s: element %d is %g, want %g (±%g)", what, i, got[i], want[i], tol)
		}
	}
}

// Tolerances: outputs are bf16 (relative rounding up to 2⁻⁹ ≈ 0.002 an element, about 0.0016 in
// the L2 norm, as out and dv show); dq and dk also carry delta = rowsum(dout·out) from the
// forward's bf16-rounded out, off by about 2⁻⁹·|delta|, which in short or peaked rows is of the
// size of dP − delta itself: 2% (a host emulation of these kernels saw up to 0.8%); lse is f32.
func TestGPUTrainAttention(t *testing.T) {
	d := gpu(t)
	for _, c := range []BandShape{
		{N: 200, QHeads: 4, KVHeads: 4, Dim: 64},                          // full, n not a multiple of a tile, groups of 1
		{N: 200, QHeads: 4, KVHeads: 2, Dim: 64, Sink: 0, Window: 50},     // streaming without a sink
		{N: 333, QHeads: 8, KVHeads: 2, Dim: 128, Sink: 5, Window: 70},    // sink and window, groups of 4
		{N: 130, QHeads: 2, KVHeads: 1, Dim: 128, Sink: 3, Window: 500},   // window longer than the sequence
		{N: 97, QHeads: 4, KVHeads: 1, Dim: 64, Sink: 40, Window: 20},     // sink longer than the window
		{N: 64, QHeads: 4, KVHeads: 2, Dim: 128, Sink: 7},                 // full band ignores the sink
		{N: 77, QHeads: 2, KVHeads: 2, Dim: 64, Sink: 1, Window: 1},       // a query sees the sink and itself
		{N: 3, QHeads: 2, KVHeads: 1, Dim: 128, Sink: 0, Window: 2},       // a few tokens (one alone has dq = dk = 0)
		{N: 300, QHeads: 4, KVHeads: 2, Dim: 64, Sink: 64, Window: 128},   // several skipped tiles per CTA
		{N: 160, QHeads: 8, KVHeads: 4, Dim: 128, Sink: 33, Window: 33},   // tile-straddling sink and window
		{N: 129, QHeads: 2, KVHeads: 2, Dim: 64, Scale: 1, Window: 0},     // peaked softmax (scale 1)
		{N: 129, QHeads: 4, KVHeads: 1, Dim: 128, Scale: 0.5, Window: 40}, // peaked, streaming
	} {
		if c.Scale == 0 {
			c.Scale = float32(1 / math.Sqrt(float64(c.Dim)))
		}
		t.Run(fmt.Sprintf("n%d-h%d-kv%d-d%d-sink%d-window%d-scale%g", c.N, c.QHeads, c.KVHeads, c.Dim, c.Sink, c.Window, c.Scale), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(c.N), uint64(c.Window)))
			qh, qf := randBF16(r, c.N*c.QHeads*c.Dim, 2)
			kh, kf := randBF16(r, c.N*c.KVHeads*c.Dim, 2)
			vh, vf := randBF16(r, c.N*c.KVHeads*c.Dim, 1)
			doh, dof := randBF16(r, c.N*c.QHeads*c.Dim, 1)
			q, k, v, dout := upload(t, d, qh, 2), upload(t, d, kh, 2), upload(t, d, vh, 2), upload(t, d, doh, 2)
			out, lse := poisoned(t, d, c.N*c.QHeads*c.Dim), poisonedF32(t, d, c.QHeads*c.N)
			dq, dk, dv := poisoned(t, d, c.N*c.QHeads*c.Dim), poisoned(t, d, c.N*c.KVHeads*c.Dim), poisoned(t, d, c.N*c.KVHeads*c.Dim)
			work := poisonedF32(t, d, int(AttentionBandWorkBytes(c)/4))
			if err := d.AttentionBand(out, lse, q, k, v, c); err != nil {
				t.Fatal(err)
			}
			if err := d.AttentionBandBackward(dq, dk, dv, dout, out, lse, q, k, v, c, work); err != nil {
				t.Fatal(err)
			}
			wOut, wLse, wdq, wdk, wdv := refBandAttention(c, qf, kf, vf, dof)
			checkClose(t, "out", downloadBF16(t, d, out, len(wOut)), wOut, 5e-3)
			checkAbs(t, "lse", downloadF32(t, d, lse, len(wLse)), wLse, 1e-4)
			checkClose(t, "dq", downloadBF16(t, d, dq, len(wdq)), wdq, 2e-2)
			checkClose(t, "dk", downloadBF16(t, d, dk, len(wdk)), wdk, 2e-2)
			checkClose(t, "dv", downloadBF16(t, d, dv, len(wdv)), wdv, 1e-2)
		})
	}
}

// Mixing is one f32 multiply-add rounded to bf16 (5e-3 relative); dz is an f32 sum of
// n·group·dim products of bf16 values, added to dz's previous value (1e-4 of the sum of |terms|).
func TestGPUTrainMixHeads(t *testing.T) {
	d := gpu(t)
	const n, hq, hkv, dim = 37, 8, 2, 64
	count := n * hq * dim
	r := rand.New(rand.NewPCG(3, 4))
	fh, ff := randBF16(r, count, 1)
	sh, sf := randBF16(r, count, 1)
	ah, af := randBF16(r, count, 1)
	z := []float32{0.25, 0.875}
	dz0 := []float32{0.5, -1.5}
	full, stream, datt := upload(t, d, fh, 2), upload(t, d, sh, 2), upload(t, d, ah, 2)
	zb, dz := upload(t, d, z, 4), upload(t, d, dz0, 4)
	att, dfull, dstream := poisoned(t, d, count), poisoned(t, d, count), poisoned(t, d, count)
	if err := d.MixHeads(att, full, stream, zb, n, hq, hkv, dim); err != nil {
		t.Fatal(err)
	}
	if err := d.MixHeadsBackward(dfull, dstream, dz, datt, full, stream, zb, n, hq, hkv, dim); err != nil {
		t.Fatal(err)
	}
	wAtt, wdf, wds := make([]float64, count), make([]float64, count), make([]float64, count)
	wdz, mag := []float64{float64(dz0[0]), float64(dz0[1])}, make([]float64, hkv)
	for e := range count {
		g := (e / dim) % hq / (hq / hkv)
		zg := float64(z[g])
		wAtt[e] = zg*ff[e] + (1-zg)*sf[e]
		wdf[e], wds[e] = zg*af[e], (1-zg)*af[e]
		wdz[g] += af[e] * (ff[e] - sf[e])
		mag[g] += math.Abs(af[e] * (ff[e] - sf[e]))
	}
	checkClose(t, "att", downloadBF16(t, d, att, count), wAtt, 5e-3)
	checkClose(t, "dfull", downloadBF16(t, d, dfull, count), wdf, 5e-3)
	checkClose(t, "dstream", downloadBF16(t, d, dstream, count), wds, 5e-3)
	got := downloadF32(t, d, dz, hkv)
	for g := range hkv {
		checkAbs(t, fmt.Sprintf("dz[%d]", g), got[g:g+1], wdz[g:g+1], 1e-4*mag[g]+1e-6)
	}
}

// dres is f32: the added gradient, computed in f32 from bf16 inputs, is checked to 1e-4.
func TestGPUTrainRMSNormBackward(t *testing.T) {
	d := gpu(t)
	const eps = 1e-5
	for _, c := range []struct{ rows, dim int }{{5, 64}, {3, 1000}, {2, 4096}} {
		r := rand.New(rand.NewPCG(uint64(c.dim), 1))
		xh, xf := randBF16(r, c.rows*c.dim, 2)
		wh, wf := randBF16(r, c.dim, 1.5)
		dyh, dyf := randBF16(r, c.rows*c.dim, 1)
		dres0 := make([]float32, c.rows*c.dim)
		for i := range dres0 {
			dres0[i] = float32(r.Float64() - 0.5)
		}
		dres := upload(t, d, dres0, 4)
		if err := d.RMSNormBackward(dres, upload(t, d, xh, 2), upload(t, d, wh, 2), upload(t, d, dyh, 2), c.rows, c.dim, eps); err != nil {
			t.Fatal(err)
		}
		got := downloadF32(t, d, dres, c.rows*c.dim)
		want := make([]float64, c.rows*c.dim)
		added := make([]float64, c.rows*c.dim)
		for row := range c.rows {
			x, dy := xf[row*c.dim:][:c.dim], dyf[row*c.dim:][:c.dim]
			var ss, dot float64
			for k := range c.dim {
				ss += x[k] * x[k]
				dot += dy[k] * wf[k] * x[k]
			}
			rs := 1 / math.Sqrt(ss/float64(c.dim)+eps)
			for k := range c.dim {
				want[row*c.dim+k] = rs*wf[k]*dy[k] - x[k]*rs*rs*rs*dot/float64(c.dim)
				added[row*c.dim+k] = got[row*c.dim+k] - float64(dres0[row*c.dim+k])
			}
		}
		checkClose(t, fmt.Sprintf("rows %d dim %d: dx", c.rows, c.dim), added, want, 1e-4)
	}
}

// SwiGLU's gradients in place of gate and up (the aliasing the API allows); bf16 outputs, 5e-3.
func TestGPUTrainSwiGLUBackward(t *testing.T) {
	d := gpu(t)
	const count = 4104
	r := rand.New(rand.NewPCG(5, 6))
	ah, af := randBF16(r, count, 1)
	gh, gf := randBF16(r, count, 6)
	uh, uf := randBF16(r, count, 2)
	gate, up := upload(t, d, gh, 2), upload(t, d, uh, 2)
	if err := d.SwiGLUBackward(gate, up, upload(t, d, ah, 2), gate, up, count); err != nil {
		t.Fatal(err)
	}
	wdg, wdu := make([]float64, count), make([]float64, count)
	for e := range count {
		sg := 1 / (1 + math.Exp(-gf[e]))
		wdu[e] = af[e] * gf[e] * sg
		wdg[e] = af[e] * uf[e] * sg * (1 + gf[e]*(1-sg))
	}
	checkClose(t, "dgate", downloadBF16(t, d, gate, count), wdg, 5e-3)
	checkClose(t, "dup", downloadBF16(t, d, up, count), wdu, 5e-3)
}

// Cross-entropy over vocabularies small, odd and of 256K: loss is f32 (1e-4 absolute for
// losses of about log(vocab)), dlogits bf16 (5e-3 relative a row); a row without a label is 0,
// a bad label gives NaN. The 256K case writes dlogits over its logits.
func TestGPUTrainCrossEntropy(t *testing.T) {
	d := gpu(t)
	for _, c := range []struct {
		vocab   int
		targets []int32
		alias   bool
	}{{1000, []int32{3, -1, 999, 0, 1000}, false}, {1003, []int32{1002, 500}, false}, {262144, []int32{262143, -1, 7}, true}} {
		rows := len(c.targets)
		r := rand.New(rand.NewPCG(uint64(c.vocab), 2))
		lh, lf := randBF16(r, rows*c.vocab, 4)
		logits := upload(t, d, lh, 2)
		dlogits := logits
		if !c.alias {
			dlogits = poisoned(t, d, rows*c.vocab)
		}
		loss := poisonedF32(t, d, rows)
		const scale = 0.25
		if err := d.CrossEntropy(dlogits, loss, logits, upload(t, d, c.targets, 4), rows, c.vocab, scale); err != nil {
			t.Fatal(err)
		}
		gotLoss := downloadF32(t, d, loss, rows)
		gotD := downloadBF16(t, d, dlogits, rows*c.vocab)
		for row, tgt := range c.targets {
			x, g := lf[row*c.vocab:][:c.vocab], gotD[row*c.vocab:][:c.vocab]
			want := make([]float64, c.vocab)
			wantLoss := 0.0
			switch {
			case tgt >= int32(c.vocab):
				wantLoss = math.NaN()
			case tgt >= 0:
				mx := math.Inf(-1)
				for _, v := range x {
					mx = max(mx, v)
				}
				var sum float64
				for _, v := range x {
					sum += math.Exp(v - mx)
				}
				lse := mx + math.Log(sum)
				wantLoss = lse - x[tgt]
				for j, v := range x {
					want[j] = scale * math.Exp(v-lse)
				}
				want[tgt] -= scale
			}
			what := fmt.Sprintf("vocab %d row %d (target %d)", c.vocab, row, tgt)
			if math.IsNaN(wantLoss) {
				if !math.IsNaN(gotLoss[row]) {
					t.Errorf("%s: loss %g, want NaN for a label outside the vocabulary", what, gotLoss[row])
				}
			} else {
				checkAbs(t, what+" loss", gotLoss[row:row+1], []float64{wantLoss}, 1e-4)
			}
			if tgt < 0 || tgt >= int32(c.vocab) {
				checkAbs(t, what+" dlogits", g, want, 0)
			} else {
				checkClose(t, what+" dlogits", g, want, 5e-3)
			}
		}
	}
}

// Squared error on listed rows: loss f32 (1e-5 relative), dh bf16 (5e-3), unlisted rows of dh
// untouched (still NaN), a row outside [0, n) gives loss NaN.
func TestGPUTrainSquaredError(t *testing.T) {
	d := gpu(t)
	const n, dim, g = 10, 96, 0.5
	r := rand.New(rand.NewPCG(7, 8))
	hh, hf := randBF16(r, n*dim, 2)
	tf := make([]float32, n*dim)
	for i := range tf {
		tf[i] = float32(r.Float64()*4 - 2)
	}
	rows := []int32{3, 7, 0, 10}
	dh, loss := poisoned(t, d, n*dim), poisonedF32(t, d, len(rows))
	if err := d.SquaredError(dh, loss, upload(t, d, hh, 2), upload(t, d, tf, 4), upload(t, d, rows, 4), len(rows), dim, g); err != nil {
		t.Fatal(err)
	}
	gotLoss := downloadF32(t, d, loss, len(rows))
	gotDh := downloadBF16(t, d, dh, n*dim)
	listed := map[int]bool{}
	for i, row := range rows[:3] {
		listed[int(row)] = true
		var want float64
		wantDh := make([]float64, dim)
		for j := range dim {
			e := hf[int(row)*dim+j] - float64(tf[int(row)*dim+j])
			want += e * e
			wantDh[j] = g * e
		}
		checkAbs(t, fmt.Sprintf("loss of row %d", row), gotLoss[i:i+1], []float64{want}, 1e-5*want)
		checkClose(t, fmt.Sprintf("dh of row %d", row), gotDh[int(row)*dim:][:dim], wantDh, 5e-3)
	}
	if !math.IsNaN(gotLoss[3]) {
		t.Errorf("loss of row 10 of 10 is %g, want NaN", gotLoss[3])
	}
	for row := range n {
		if !listed[row] && !math.IsNaN(gotDh[row*dim]) {
			t.Errorf("dh of unlisted row %d was written", row)
		}
	}
}

// ToBF16 rounds to nearest even exactly as the host's toBF16; AddBF16 adds exactly (an f32 sum).
func TestGPUTrainConversions(t *testing.T) {
	d := gpu(t)
	const count = 1001
	r := rand.New(rand.NewPCG(9, 10))
	src := make([]float32, count)
	for i := range src {
		src[i] = float32(r.NormFloat64() * 100)
	}
	src[0], src[1] = 1+1.0/256, 1+3.0/256 // ties: round to even (down, then up)
	dst := poisoned(t, d, count)
	if err := d.ToBF16(dst, upload(t, d, src, 4), count); err != nil {
		t.Fatal(err)
	}
	got := make([]uint16, count)
	if err := Download(d, got, dst); err != nil {
		t.Fatal(err)
	}
	for i, v := range src {
		if got[i] != toBF16(v) {
			t.Fatalf("ToBF16(%g) = %#04x, want %#04x", v, got[i], toBF16(v))
		}
	}
	bh, bf := randBF16(r, count, 3)
	acc := make([]float32, count)
	for i := range acc {
		acc[i] = float32(r.Float64())
	}
	accBuf := upload(t, d, acc, 4)
	if err := d.AddBF16(accBuf, upload(t, d, bh, 2), count); err != nil {
		t.Fatal(err)
	}
	sum := make([]float32, count)
	if err := Download(d, sum, accBuf); err != nil {
		t.Fatal(err)
	}
	for i := range sum {
		if want := acc[i] + float32(bf[i]); sum[i] != want {
			t.Fatalf("AddBF16: element %d is %g, want %g", i, sum[i], want)
		}
	}
}

// BenchmarkGPUTrainAttention times the band attention at n = 4096, 8 query and 4 KV heads of 64,
// full and streaming (sink 64, window 256), forward and backward. TFLOP/s counts the visible
// (query, key) pairs only: 4·Dim flops each forward (q·k and p·v), 10·Dim backward (q·k again,
// dout·v, and dq, dk, dv; the kernels run 14·Dim, the dQ kernel recomputing q·k and dout·v),
// against the H100's 990 TFLOP/s of dense bf16 tensor-core math (mma.sync reaches perhaps 2/3).
func BenchmarkGPUTrainAttention(b *testing.B) {
	d := gpu(b)
	for _, band := range []struct {
		name         string
		sink, window int
	}{{"full", 0, 0}, {"streaming", 64, 256}} {
		s := BandShape{N: 4096, QHeads: 8, KVHeads: 4, Dim: 64, Sink: band.sink, Window: band.window, Scale: 0.125}
		var pairs float64
		for i := range s.N {
			for _, sp := range visibleSpans(i, s.Sink, s.Window) {
				pairs += float64(sp.hi - sp.lo)
			}
		}
		pairs *= float64(s.QHeads)
		qb, ob, dqb, dob := alloc(b, d, int64(s.N*s.QHeads*s.Dim*2)), alloc(b, d, int64(s.N*s.QHeads*s.Dim*2)),
			alloc(b, d, int64(s.N*s.QHeads*s.Dim*2)), alloc(b, d, int64(s.N*s.QHeads*s.Dim*2))
		kb, vb, dkb, dvb := alloc(b, d, int64(s.N*s.KVHeads*s.Dim*2)), alloc(b, d, int64(s.N*s.KVHeads*s.Dim*2)),
			alloc(b, d, int64(s.N*s.KVHeads*s.Dim*2)), alloc(b, d, int64(s.N*s.KVHeads*s.Dim*2))
		lse, work := alloc(b, d, int64(s.QHeads*s.N*4)), alloc(b, d, AttentionBandWorkBytes(s))
		for i, buf := range []Buffer{qb, kb, vb, dob} {
			fillRandom(b, d, buf, uint64(i))
		}
		b.Run(band.name+"-forward", func(b *testing.B) {
			ms := timeIt(b, d, func(int) error { return d.AttentionBand(ob, lse, qb, kb, vb, s) })
			b.ReportMetric(ms, "ms/op")
			b.ReportMetric(4*float64(s.Dim)*pairs/ms/1e9, "TFLOP/s")
		})
		b.Run(band.name+"-backward", func(b *testing.B) {
			if err := d.AttentionBand(ob, lse, qb, kb, vb, s); err != nil {
				b.Fatal(err)
			}
			ms := timeIt(b, d, func(int) error { return d.AttentionBandBackward(dqb, dkb, dvb, dob, ob, lse, qb, kb, vb, s, work) })
			b.ReportMetric(ms, "ms/op")
			b.ReportMetric(10*float64(s.Dim)*pairs/ms/1e9, "TFLOP/s")
		})
	}
}
