package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"
)

// GPU tests: each kernel against a float64 reference computed here from the same bf16 inputs.
// Without a usable GPU they skip, saying why.

var (
	gpuOnce     sync.Once
	gpuDev      *Device
	gpuErr      error
	gpuOpenTook time.Duration // the process's first Open: loading the libraries cold
)

func TestMain(m *testing.M) {
	code := m.Run()
	if gpuDev != nil {
		if err := gpuDev.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "close:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func gpu(t testing.TB) *Device {
	gpuOnce.Do(func() {
		start := time.Now()
		gpuDev, gpuErr = Open(0)
		gpuOpenTook = time.Since(start)
	})
	if gpuErr != nil {
		t.Skipf("no usable GPU: %v", gpuErr)
	}
	return gpuDev
}

func toBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if f != f {
		return 0x7fc0
	}
	b += 0x7fff + (b>>16)&1 // round to nearest, ties to even
	return uint16(b >> 16)
}

func fromBF16(h uint16) float64 { return float64(math.Float32frombits(uint32(h) << 16)) }

// randBF16 returns n bf16 values uniform in [-scale, scale] and their exact values.
func randBF16(r *rand.Rand, n int, scale float64) ([]uint16, []float64) {
	h := make([]uint16, n)
	f := make([]float64, n)
	for i := range h {
		h[i] = toBF16(float32((r.Float64()*2 - 1) * scale))
		f[i] = fromBF16(h[i])
	}
	return h, f
}

// upload allocates a device buffer holding v.
func upload[T any](t testing.TB, d *Device, v []T, elemBytes int) Buffer {
	t.Helper()
	b, err := d.Alloc(int64(len(v) * elemBytes))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Free(b) })
	if err := Upload(d, b, v); err != nil {
		t.Fatal(err)
	}
	return b
}

// poisoned allocates n bf16 values set to NaN, so that an element the kernel skips shows.
func poisoned(t testing.TB, d *Device, n int) Buffer {
	t.Helper()
	nan := make([]uint16, n)
	for i := range nan {
		nan[i] = 0x7fc0
	}
	return upload(t, d, nan, 2)
}

func downloadBF16(t testing.TB, d *Device, b Buffer, n int) []float64 {
	t.Helper()
	h := make([]uint16, n)
	if err := Download(d, h, b); err != nil {
		t.Fatal(err)
	}
	f := make([]float64, n)
	for i, v := range h {
		f[i] = fromBF16(v)
	}
	return f
}

// checkClose fails when ‖got−want‖/‖want‖ exceeds tol or any value is NaN.
func checkClose(t testing.TB, what string, got, want []float64, tol float64) {
	t.Helper()
	var num, den float64
	for i := range want {
		if math.IsNaN(got[i]) {
			t.Fatalf("%s: element %d is NaN (not written?)", what, i)
		}
		num += (got[i] - want[i]) * (got[i] - want[i])
		den += want[i] * want[i]
	}
	if rel := math.Sqrt(num / den); rel > tol || den == 0 {
		t.Fatalf("%s: relative error %.3g > %.3g", what, rel, tol)
	}
}

const bf16Tol = 1e-2 // bf16 inputs and outputs: one rounding of 2^-9 plus f32 sums

func TestGPUElementwise(t *testing.T) {
	d := gpu(t)
	r := rand.New(rand.NewPCG(1, 2))
	t.Run("embedding", func(t *testing.T) {
		vocab, dim := 100, 136
		tab, tabF := randBF16(r, vocab*dim, 1)
		ids := []int32{5, 99, 0, 5, 42}
		out := poisoned(t, d, len(ids)*dim)
		if err := d.Embedding(out, upload(t, d, tab, 2), vocab, dim, ids); err != nil {
			t.Fatal(err)
		}
		var want []float64
		for _, id := range ids {
			want = append(want, tabF[int(id)*dim:int(id+1)*dim]...)
		}
		checkClose(t, "embedding", downloadBF16(t, d, out, len(want)), want, 0)
		if err := d.Embedding(out, upload(t, d, tab, 2), vocab, dim, []int32{100}); err == nil {
			t.Fatal("id past the vocabulary accepted")
		}
	})
	t.Run("rmsnorm", func(t *testing.T) {
		rows, dim := 7, 2056
		x, xf := randBF16(r, rows*dim, 3)
		w, wf := randBF16(r, dim, 1)
		out := poisoned(t, d, rows*dim)
		if err := d.RMSNorm(out, upload(t, d, x, 2), upload(t, d, w, 2), rows, dim, 1e-5); err != nil {
			t.Fatal(err)
		}
		want := make([]float64, rows*dim)
		for i := 0; i < rows; i++ {
			var ss float64
			for j := 0; j < dim; j++ {
				ss += xf[i*dim+j] * xf[i*dim+j]
			}
			s := 1 / math.Sqrt(ss/float64(dim)+1e-5)
			for j := 0; j < dim; j++ {
				want[i*dim+j] = xf[i*dim+j] * s * wf[j]
			}
		}
		checkClose(t, "rmsnorm", downloadBF16(t, d, out, rows*dim), want, bf16Tol)
	})
	t.Run("rope", func(t *testing.T) {
		for _, dim := range []int{64, 128} {
			tokens, heads := 5, 3
			x, xf := randBF16(r, tokens*heads*dim, 1)
			pos := []int32{0, 1, 17, 4095, 131071}
			const stride = 3 // positions every third int, as a batch's shared table holds them
			strided := make([]int32, len(pos)*stride)
			for i, p := range pos {
				strided[i*stride], strided[i*stride+1] = p, -7 // the gaps must not be read
			}
			inv := make([]float32, dim/2)
			for j := range inv {
				inv[j] = float32(math.Pow(500000, -float64(2*j)/float64(dim)))
			}
			xb := upload(t, d, x, 2)
			scale := float32(1.1)
			if err := d.RoPE(xb, upload(t, d, strided, 4), stride, upload(t, d, inv, 4), tokens, heads, dim, scale); err != nil {
				t.Fatal(err)
			}
			want := make([]float64, len(xf))
			half := dim / 2
			for tk := 0; tk < tokens; tk++ {
				for h := 0; h < heads; h++ {
					v := xf[(tk*heads+h)*dim:]
					w := want[(tk*heads+h)*dim:]
					for j := 0; j < half; j++ {
						ang := float64(float32(float64(pos[tk]) * float64(inv[j]))) // the angle is an f32 product, as in HF
						c, s := math.Cos(ang)*float64(scale), math.Sin(ang)*float64(scale)
						w[j] = v[j]*c - v[j+half]*s
						w[j+half] = v[j+half]*c + v[j]*s
					}
				}
			}
			checkClose(t, fmt.Sprintf("rope dim %d", dim), downloadBF16(t, d, xb, len(want)), want, bf16Tol)
		}
	})
	t.Run("swiglu-add-bias", func(t *testing.T) {
		n := 8 * 1000
		a, af := randBF16(r, n, 4)
		b, bfv := randBF16(r, n, 2)
		ab, bb := upload(t, d, a, 2), upload(t, d, b, 2)
		out := poisoned(t, d, n)
		if err := d.SwiGLU(out, ab, bb, n); err != nil {
			t.Fatal(err)
		}
		want := make([]float64, n)
		for i := range want {
			want[i] = af[i] / (1 + math.Exp(-af[i])) * bfv[i]
		}
		checkClose(t, "swiglu", downloadBF16(t, d, out, n), want, bf16Tol)
		if err := d.Add(out, ab, bb, n); err != nil {
			t.Fatal(err)
		}
		for i := range want {
			want[i] = af[i] + bfv[i]
		}
		checkClose(t, "add", downloadBF16(t, d, out, n), want, bf16Tol)
		rows, cols := 10, 800
		bias, biasF := randBF16(r, cols, 1)
		if err := d.BiasAdd(ab, upload(t, d, bias, 2), rows, cols); err != nil {
			t.Fatal(err)
		}
		for i := range want {
			want[i] = af[i] + biasF[i%cols]
		}
		checkClose(t, "bias add", downloadBF16(t, d, ab, n), want, bf16Tol)
		if err := d.Add(out, ab, bb, n+8); err == nil {
			t.Fatal("count past the buffers accepted")
		}
	})
}

func TestGPULinear(t *testing.T) {
	d := gpu(t)
	r := rand.New(rand.NewPCG(3, 4))
	for _, c := range []struct {
		m, n, k int
		bias    bool
	}{
		{1, 256, 512, false}, {3, 136, 264, true}, {8, 1000, 4096, false}, // matrix-vector
		{9, 128, 32, false}, {130, 264, 520, true}, {257, 1000, 4104, false}, {512, 512, 2048, true},
	} {
		t.Run(fmt.Sprintf("%dx%dx%d", c.m, c.n, c.k), func(t *testing.T) {
			x, xf := randBF16(r, c.m*c.k, 1)
			w, wf := randBF16(r, c.n*c.k, 1)
			var bias Buffer
			biasF := make([]float64, c.n)
			if c.bias {
				var b []uint16
				b, biasF = randBF16(r, c.n, 1)
				bias = upload(t, d, b, 2)
			}
			out := poisoned(t, d, c.m*c.n)
			if err := d.Linear(out, upload(t, d, x, 2), upload(t, d, w, 2), bias, c.m, c.n, c.k); err != nil {
				t.Fatal(err)
			}
			want := make([]float64, c.m*c.n)
			for i := 0; i < c.m; i++ {
				for j := 0; j < c.n; j++ {
					s := biasF[j]
					for l := 0; l < c.k; l++ {
						s += xf[i*c.k+l] * wf[j*c.k+l]
					}
					want[i*c.n+j] = s
				}
			}
			checkClose(t, "linear", downloadBF16(t, d, out, len(want)), want, bf16Tol)
		})
	}
}

// Linears' outputs equal Linear's one by one, bit for bit (the same kernel arithmetic per
// column), for four outputs (a launch of three and one of one), biases on some, and on rows
// above the matrix-vector limit.
func TestGPULinears(t *testing.T) {
	d := gpu(t)
	r := rand.New(rand.NewPCG(5, 6))
	const k = 264
	ns := []int{64, 16, 24, 136}
	for _, m := range []int{1, 5, 12} {
		t.Run(fmt.Sprintf("m%d", m), func(t *testing.T) {
			xh, _ := randBF16(r, m*k, 1)
			x := upload(t, d, xh, 2)
			var outs []LinearOut
			for i, n := range ns {
				wh, _ := randBF16(r, n*k, 1)
				o := LinearOut{Out: poisoned(t, d, m*n), W: upload(t, d, wh, 2), N: n}
				if i%2 == 1 {
					bh, _ := randBF16(r, n, 1)
					o.Bias = upload(t, d, bh, 2)
				}
				outs = append(outs, o)
			}
			if err := d.Linears(x, m, k, outs...); err != nil {
				t.Fatal(err)
			}
			for i, o := range outs {
				one := poisoned(t, d, m*o.N)
				if err := d.Linear(one, x, o.W, o.Bias, m, o.N, k); err != nil {
					t.Fatal(err)
				}
				got, want := downloadBF16(t, d, o.Out, m*o.N), downloadBF16(t, d, one, m*o.N)
				for j := range want {
					if got[j] != want[j] {
						t.Fatalf("output %d, value %d: Linears %v, Linear %v", i, j, got[j], want[j])
					}
				}
			}
		})
	}
	if err := d.Linears(Buffer{}, 1, k, LinearOut{N: 12}); err == nil {
		t.Error("Linears took an output of 12 columns (not a multiple of 8) and no buffers")
	}
}

// cacheFixture is a paged cache on the device holding random keys and values per KV head,
// filled in interleaved pieces with truncations so that block tables are scattered.
type cacheFixture struct {
	pool  KVPool
	cache *PagedCache
	keys  [][][]float64 // [head][entry][dim]
	vals  [][][]float64
	heads AttentionHeads
}

func newCacheFixture(t *testing.T, d *Device, r *rand.Rand, dim, hq int, lens []int) *cacheFixture {
	hkv := len(lens)
	total := 0
	for _, n := range lens {
		total += n/BlockEntries + 2
	}
	pool, err := d.NewKVPool(total+4, dim)
	if err != nil {
		t.Fatal(err)
	}
	cache, _ := NewPagedCache(total+4, hkv)
	f := &cacheFixture{pool: pool, cache: cache, keys: make([][][]float64, hkv), vals: make([][][]float64, hkv)}
	t.Cleanup(func() { d.FreeKVPool(f.pool) }) // f.pool: a test may grow it
	write := func(h, n int) {
		slots, err := cache.Append(h, n)
		if err != nil {
			t.Fatal(err)
		}
		k, kf := randBF16(r, n*dim, 1)
		v, vf := randBF16(r, n*dim, 1)
		if err := d.KVWrite(pool, upload(t, d, k, 2), upload(t, d, v, 2), slots); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			f.keys[h] = append(f.keys[h], kf[i*dim:(i+1)*dim])
			f.vals[h] = append(f.vals[h], vf[i*dim:(i+1)*dim])
		}
	}
	for done := false; !done; {
		done = true
		for h, n := range lens {
			if left := n - cache.Len(h); left > 0 {
				write(h, min(left, 1+r.IntN(90)))
				done = false
			}
		}
		// Drop a few entries now and then so that freed blocks are reused by other heads.
		h := r.IntN(hkv)
		if cut := min(cache.Len(h), r.IntN(3)); cut > 0 && cache.Len(h) < lens[h] {
			if _, err := cache.Truncate(h, cache.Len(h)-cut); err != nil { // no moves: nothing was kept out of order
				t.Fatal(err)
			}
			f.keys[h], f.vals[h] = f.keys[h][:cache.Len(h)], f.vals[h][:cache.Len(h)]
		}
	}
	table, lensDev, maxBlocks, err := cache.Tables(0, hkv)
	if err != nil {
		t.Fatal(err)
	}
	f.heads = AttentionHeads{HQ: hq, HKV: hkv, Tables: upload(t, d, table, 4), Lens: upload(t, d, lensDev, 4),
		MaxBlocks: maxBlocks, Scale: float32(1 / math.Sqrt(float64(dim)))}
	return f
}

// attend is the float64 reference: softmax(q·kᵀ·scale)·v over the given keys.
func attend(q []float64, keys, vals [][]float64, scale float64) []float64 {
	out := make([]float64, len(q))
	if len(keys) == 0 {
		return out
	}
	s := make([]float64, len(keys))
	mx := math.Inf(-1)
	for i, k := range keys {
		for j := range q {
			s[i] += q[j] * k[j]
		}
		s[i] *= scale
		mx = math.Max(mx, s[i])
	}
	var sum float64
	for i := range s {
		s[i] = math.Exp(s[i] - mx)
		sum += s[i]
	}
	for i, v := range vals {
		for j := range out {
			out[j] += s[i] / sum * v[j]
		}
	}
	return out
}

func TestGPUPrefillAttention(t *testing.T) {
	d := gpu(t)
	r := rand.New(rand.NewPCG(5, 6))
	for _, c := range []struct {
		dim, hq int
		lens    []int // per KV head, cached before the chunk
		n       int   // chunk
	}{
		{128, 4, []int{0, 5}, 1},
		{128, 8, []int{130, 64, 0, 1}, 7},
		{64, 6, []int{63, 200, 1}, 150},
		{128, 32, []int{300, 17, 64, 129, 0, 90, 256, 5}, 65},
		{64, 2, []int{1000, 3}, 200},
		{128, 4, []int{0}, 64},
		{128, 24, []int{70, 0, 129}, 100}, // 8 query heads per KV head: 16 positions a block
		{64, 3, []int{65}, 130},           // 3 per KV head: blocks start mid-position
	} {
		t.Run(fmt.Sprintf("d%d-hq%d-hkv%d-n%d", c.dim, c.hq, len(c.lens), c.n), func(t *testing.T) {
			f := newCacheFixture(t, d, r, c.dim, c.hq, c.lens)
			hkv, g := len(c.lens), c.hq/len(c.lens)
			q, qf := randBF16(r, c.n*c.hq*c.dim, 1)
			kc, kcf := randBF16(r, c.n*hkv*c.dim, 1)
			vc, vcf := randBF16(r, c.n*hkv*c.dim, 1)
			out := poisoned(t, d, c.n*c.hq*c.dim)
			if err := d.PrefillAttention(out, upload(t, d, q, 2), upload(t, d, kc, 2), upload(t, d, vc, 2), f.pool, f.heads, c.n); err != nil {
				t.Fatal(err)
			}
			want := make([]float64, 0, len(qf))
			for i := 0; i < c.n; i++ {
				for h := 0; h < c.hq; h++ {
					kv := h / g
					keys := append([][]float64{}, f.keys[kv]...)
					vals := append([][]float64{}, f.vals[kv]...)
					for j := 0; j <= i; j++ {
						off := (j*hkv + kv) * c.dim
						keys = append(keys, kcf[off:off+c.dim])
						vals = append(vals, vcf[off:off+c.dim])
					}
					qo := (i*c.hq + h) * c.dim
					want = append(want, attend(qf[qo:qo+c.dim], keys, vals, float64(f.heads.Scale))...)
				}
			}
			checkClose(t, "prefill attention", downloadBF16(t, d, out, len(want)), want, bf16Tol)
		})
	}
}

func TestGPUDecodeAttention(t *testing.T) {
	d := gpu(t)
	r := rand.New(rand.NewPCG(7, 8))
	for _, c := range []struct {
		dim, hq int
		lens    []int
		sp      DecodeSplit
	}{
		{128, 4, []int{1, 63}, DecodeSplit{1, 64}},
		{128, 32, []int{64, 65, 1000, 5000, 0, 7, 128, 333}, DecodeSplit{3, 1700}},
		{64, 8, []int{4000}, DecodeSplit{16, 250}},
		{64, 4, []int{100, 200, 2, 9}, DecodeSplit{5, 40}}, // one query head per KV head
		{128, 16, []int{2000, 10}, DecodeSplit{64, 32}},
		{128, 16, []int{2000, 10}, DecodeSplit{4, 64}},                                               // the last split takes the rest
		{64, 32, []int{9000, 1152, 1152, 9000, 1152, 1152, 1152, 1152}, d.DecodeSplits(24000, 9000)}, // a head mask's layer
	} {
		t.Run(fmt.Sprintf("d%d-hq%d-hkv%d-s%dx%d", c.dim, c.hq, len(c.lens), c.sp.Splits, c.sp.Per), func(t *testing.T) {
			f := newCacheFixture(t, d, r, c.dim, c.hq, c.lens)
			g := c.hq / len(c.lens)
			q, qf := randBF16(r, c.hq*c.dim, 1)
			out := poisoned(t, d, c.hq*c.dim)
			work, err := d.Alloc(DecodeWorkspaceBytes(c.hq, c.dim, c.sp.Splits))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Free(work) })
			if err := d.DecodeAttention(out, upload(t, d, q, 2), f.pool, f.heads, c.sp, work); err != nil {
				t.Fatal(err)
			}
			var want []float64
			for h := 0; h < c.hq; h++ {
				want = append(want, attend(qf[h*c.dim:(h+1)*c.dim], f.keys[h/g], f.vals[h/g], float64(f.heads.Scale))...)
			}
			got := downloadBF16(t, d, out, len(want))
			for h := 0; h < c.hq; h++ { // an empty head attends to nothing: zeros
				if len(f.keys[h/g]) == 0 {
					for j := 0; j < c.dim; j++ {
						if got[h*c.dim+j] != 0 {
							t.Fatalf("head %d over an empty cache gave %v", h, got[h*c.dim+j])
						}
						got[h*c.dim+j], want[h*c.dim+j] = 1, 1
					}
				}
			}
			checkClose(t, "decode attention", got, want, bf16Tol)
		})
	}
}

// Keep's moves applied by KVCopy must leave kept entry keep[i] at index i (a compaction whose
// destinations are other moves' sources: the gather before the scatter matters).
func TestGPUKeepMovesEntries(t *testing.T) {
	d := gpu(t)
	r := rand.New(rand.NewPCG(9, 10))
	dim := 64
	f := newCacheFixture(t, d, r, dim, 1, []int{300})
	var keep []int
	for i := 0; i < 300; i++ {
		if i < 4 || i >= 250 || r.IntN(5) == 0 {
			keep = append(keep, i)
		}
	}
	moves, err := f.cache.Keep(0, keep)
	if err != nil {
		t.Fatal(err)
	}
	work, err := d.Alloc(KVCopyWorkBytes(len(moves), dim))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Free(work)
	if err := d.KVCopy(f.pool, moves, work); err != nil {
		t.Fatal(err)
	}
	total := f.pool.Blocks * BlockEntries * dim
	kAll := downloadBF16(t, d, f.pool.K, total)
	vAll := downloadBF16(t, d, f.pool.V, total)
	for i, old := range keep {
		s := int(f.cache.Slot(0, i)) * dim
		for j := 0; j < dim; j++ {
			if kAll[s+j] != f.keys[0][old][j] || vAll[s+j] != f.vals[0][old][j] {
				t.Fatalf("entry %d (old %d) holds the wrong key or value", i, old)
			}
		}
	}
}

// GrowKVPool keeps every entry at its slot.
func TestGPUGrowKVPool(t *testing.T) {
	d := gpu(t)
	r := rand.New(rand.NewPCG(11, 12))
	dim := 128
	f := newCacheFixture(t, d, r, dim, 1, []int{100})
	old := f.pool.Blocks
	p, err := d.GrowKVPool(f.pool, 3)
	if err != nil {
		t.Fatal(err)
	}
	f.pool = p
	if p.Blocks != old+3 {
		t.Fatalf("%d blocks, want %d", p.Blocks, old+3)
	}
	kAll := downloadBF16(t, d, p.K, p.Blocks*BlockEntries*dim)
	for i := 0; i < 100; i++ {
		s := int(f.cache.Slot(0, i)) * dim
		for j := 0; j < dim; j++ {
			if kAll[s+j] != f.keys[0][i][j] {
				t.Fatalf("entry %d lost its key", i)
			}
		}
	}
}

// Staged lists land intact in stream order: several queued before one wait, one larger than
// the arena (which makes it wait and grow), and UploadInts into a buffer of the caller's.
func TestGPUStaging(t *testing.T) {
	d := gpu(t)
	r := rand.New(rand.NewPCG(13, 14))
	list := func(n int) []int32 {
		v := make([]int32, n)
		for i := range v {
			v[i] = r.Int32()
		}
		return v
	}
	sizes := []int{1, 1000, 3 << 20, 7, 5 << 20} // 12 MiB and 20 MiB pass the 8 MiB arena
	lists := make([][]int32, len(sizes))
	copies := make([]Buffer, len(sizes))
	for i, n := range sizes {
		lists[i] = list(n)
		b, err := d.StageInts(lists[i])
		if err != nil {
			t.Fatal(err)
		}
		// Copy each staged list out before the next one may reuse the arena.
		copies[i], err = d.Alloc(int64(n) * 4)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Free(copies[i])
		if err := d.Copy(copies[i], b); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range lists {
		got := make([]int32, len(want))
		if err := Download(d, got, copies[i]); err != nil {
			t.Fatal(err)
		}
		for j := range want {
			if got[j] != want[j] {
				t.Fatalf("list %d (%d values): value %d is %d, want %d", i, len(want), j, got[j], want[j])
			}
		}
	}
	dst, err := d.Alloc(4096)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Free(dst)
	v := list(1024)
	if err := d.UploadInts(dst, v); err != nil {
		t.Fatal(err)
	}
	got := make([]int32, len(v))
	if err := Download(d, got, dst); err != nil {
		t.Fatal(err)
	}
	for j := range v {
		if got[j] != v[j] {
			t.Fatalf("UploadInts: value %d is %d, want %d", j, got[j], v[j])
		}
	}
	if err := d.UploadInts(dst, list(1025)); err == nil {
		t.Fatal("an upload past the buffer's end was accepted")
	}
}
