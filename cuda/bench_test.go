package cuda

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// Benchmarks at Llama-3.1-8B shapes (hidden 4096, 32 query and 8 KV heads of 128, MLP 14336),
// timed with device events. Each reports its rate against the H100 SXM's datasheet limits
// (989 TFLOP/s dense bf16, 3.35 TB/s HBM3) as well as in absolute terms. Run with
// -test.bench . -test.benchtime 20x on a GPU machine (tools/gpu-test.sh).

const (
	h100TFLOPS = 989.0
	h100TBps   = 3.35
)

// fillRandom writes random bf16 values in [-1, 1] over b, repeating one 8 MiB pattern (the
// values only need to be non-zero and varied: zeros run faster than real data).
func fillRandom(b testing.TB, d *Device, buf Buffer, seed uint64) {
	b.Helper()
	pattern, _ := randBF16(rand.New(rand.NewPCG(seed, 1)), 4<<20, 1)
	for off := int64(0); off < buf.Bytes; off += int64(len(pattern) * 2) {
		part, err := buf.Slice(off, min(int64(len(pattern)*2), buf.Bytes-off))
		if err != nil {
			b.Fatal(err)
		}
		if err := Upload(d, part, pattern[:part.Bytes/2]); err != nil {
			b.Fatal(err)
		}
	}
}

func alloc(b testing.TB, d *Device, bytes int64) Buffer {
	b.Helper()
	buf, err := d.Alloc(bytes)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Free(buf) })
	return buf
}

// timeIt runs op b.N times after two warm-ups and returns the mean milliseconds per run.
func timeIt(b *testing.B, d *Device, op func(i int) error) float64 {
	b.Helper()
	for i := 0; i < 2; i++ {
		if err := op(i); err != nil {
			b.Fatal(err)
		}
	}
	start, err := d.NewEvent()
	if err != nil {
		b.Fatal(err)
	}
	end, err := d.NewEvent()
	if err != nil {
		b.Fatal(err)
	}
	defer start.Destroy()
	defer end.Destroy()
	b.ResetTimer()
	if err := start.Record(); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		if err := op(i); err != nil {
			b.Fatal(err)
		}
	}
	if err := end.Record(); err != nil {
		b.Fatal(err)
	}
	ms, err := end.Since(start)
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	return float64(ms) / float64(b.N)
}

// linearShape is one projection's output and input widths, and whether it has a bias.
type linearShape struct {
	name string
	n, k int
	bias bool
}

// linearShapes are each model's projections: q, one of k and v, o, one of gate and up, down,
// and the LM head; and q with a bias (as Qwen2's), against q for the cost of the bias.
var linearShapes = []struct {
	model  string
	shapes []linearShape
}{
	{"8B", []linearShape{{"q", 4096, 4096, false}, {"kv", 1024, 4096, false}, {"o", 4096, 4096, false}, {"gateup", 14336, 4096, false}, {"down", 4096, 14336, false}, {"lmhead", 128256, 4096, false}, {"qbias", 4096, 4096, true}}},
	{"1B", []linearShape{{"q", 2048, 2048, false}, {"kv", 512, 2048, false}, {"o", 2048, 2048, false}, {"gateup", 8192, 2048, false}, {"down", 2048, 8192, false}, {"lmhead", 128256, 2048, false}}},
}

// BenchmarkLinear times Linear on the Llama-3.1-8B and Llama-3.2-1B shapes: one row (decode,
// the matrix-vector kernel) and 512, 4096 and 32768 rows (pre-fill chunks) with each GEMM,
// kvfoot's own and cuBLASLt (when it loaded), so that both speeds show side by side.
func BenchmarkLinear(b *testing.B) {
	d := gpu(b)
	b.Log("GEMM: ", d.GEMMName())
	for _, model := range linearShapes {
		b.Run(model.model, func(b *testing.B) {
			for _, s := range model.shapes {
				b.Run(fmt.Sprintf("%s-n%d-k%d", s.name, s.n, s.k), func(b *testing.B) {
					const copies = 3 // rotate weights so that repeats do not run from L2
					var ws [copies]Buffer
					for i := range ws {
						ws[i] = alloc(b, d, int64(s.n*s.k*2))
						fillRandom(b, d, ws[i], uint64(i))
					}
					var bias Buffer
					if s.bias {
						bias = alloc(b, d, int64(s.n*2))
						fillRandom(b, d, bias, 7)
					}
					for _, m := range []int{1, 512, 4096, 32768} {
						if s.name == "lmhead" && m > 4096 { // pre-fill takes logits at the last position only
							continue
						}
						b.Run(fmt.Sprintf("m%d", m), func(b *testing.B) {
							x := alloc(b, d, int64(m*s.k*2))
							fillRandom(b, d, x, 9)
							out := alloc(b, d, int64(m*s.n*2))
							kinds := map[string]gemmKind{"gemv": gemmAuto}
							if m > gemvMaxRows {
								kinds = map[string]gemmKind{"own": gemmOwn}
								if d.lt != nil {
									kinds["cublaslt"] = gemmCublasLt
								}
							}
							for _, name := range []string{"gemv", "own", "cublaslt"} {
								kind, ok := kinds[name]
								if !ok {
									continue
								}
								b.Run(name, func(b *testing.B) {
									ms := timeIt(b, d, func(i int) error { return d.linear(kind, out, x, ws[i%copies], bias, m, s.n, s.k) })
									tflops := 2 * float64(m) * float64(s.n) * float64(s.k) / (ms * 1e-3) / 1e12
									gbs := float64(s.n*s.k*2+m*s.k*2+m*s.n*2) / (ms * 1e-3) / 1e9
									b.ReportMetric(ms, "ms/op")
									b.ReportMetric(tflops, "TFLOP/s")
									b.ReportMetric(tflops/h100TFLOPS, "of-989")
									b.ReportMetric(gbs, "GB/s")
									b.ReportMetric(gbs/1000/h100TBps, "of-3.35TB/s")
								})
							}
						})
					}
				})
			}
		})
	}
}

// benchCache is a paged cache of hkv heads, each holding entries entries of random data.
func benchCache(b *testing.B, d *Device, hq, hkv, dim, entries int) (KVPool, AttentionHeads) {
	blocks := hkv * ((entries + BlockEntries - 1) / BlockEntries)
	pool, err := d.NewKVPool(blocks, dim)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.FreeKVPool(pool) })
	fillRandom(b, d, pool.K, 1)
	fillRandom(b, d, pool.V, 2)
	cache, _ := NewPagedCache(blocks, hkv)
	for h := 0; h < hkv; h++ {
		if _, err := cache.Append(h, entries); err != nil {
			b.Fatal(err)
		}
	}
	table, lens, maxBlocks, err := cache.Tables(0, hkv)
	if err != nil {
		b.Fatal(err)
	}
	tb, lb := alloc(b, d, int64(len(table)*4)), alloc(b, d, int64(len(lens)*4))
	if err := Upload(d, tb, table); err != nil {
		b.Fatal(err)
	}
	if err := Upload(d, lb, lens); err != nil {
		b.Fatal(err)
	}
	return pool, AttentionHeads{HQ: hq, HKV: hkv, Tables: tb, Lens: lb, MaxBlocks: maxBlocks, Scale: 0.0884}
}

func BenchmarkDecodeAttention(b *testing.B) {
	d := gpu(b)
	const hq, hkv, dim = 32, 8, 128
	for _, entries := range []int{32 << 10, 128 << 10} {
		b.Run(fmt.Sprintf("entries%dK", entries>>10), func(b *testing.B) {
			pool, heads := benchCache(b, d, hq, hkv, dim, entries)
			sp := d.DecodeSplits(hkv*entries, entries)
			work := alloc(b, d, DecodeWorkspaceBytes(hq, dim, sp.Splits))
			q := alloc(b, d, hq*dim*2)
			fillRandom(b, d, q, 3)
			out := alloc(b, d, hq*dim*2)
			ms := timeIt(b, d, func(int) error { return d.DecodeAttention(out, q, pool, heads, sp, work) })
			gbs := float64(hkv*entries*dim*2*2) / (ms * 1e-3) / 1e9
			b.ReportMetric(ms, "ms/op")
			b.ReportMetric(float64(sp.Splits), "splits")
			b.ReportMetric(gbs, "GB/s")
			b.ReportMetric(gbs/1000/h100TBps, "of-3.35TB/s")
		})
	}
}

func BenchmarkPrefillAttention(b *testing.B) {
	d := gpu(b)
	const hq, hkv, dim = 32, 8, 128
	for _, c := range []struct{ cached, n int }{{0, 4 << 10}, {0, 32 << 10}, {96 << 10, 32 << 10}} {
		b.Run(fmt.Sprintf("cached%dK-chunk%dK", c.cached>>10, c.n>>10), func(b *testing.B) {
			pool, heads := benchCache(b, d, hq, hkv, dim, max(c.cached, 1))
			if c.cached == 0 { // an empty cache: lengths 0
				zero := make([]int32, hkv)
				if err := Upload(d, heads.Lens, zero); err != nil {
					b.Fatal(err)
				}
			}
			q := alloc(b, d, int64(c.n*hq*dim*2))
			kc := alloc(b, d, int64(c.n*hkv*dim*2))
			vc := alloc(b, d, int64(c.n*hkv*dim*2))
			for i, buf := range []Buffer{q, kc, vc} {
				fillRandom(b, d, buf, uint64(10+i))
			}
			out := alloc(b, d, int64(c.n*hq*dim*2))
			ms := timeIt(b, d, func(int) error { return d.PrefillAttention(out, q, kc, vc, pool, heads, c.n) })
			// Two matrix products (QKᵀ, PV) over the visible pairs: the cache plus the causal half.
			pairs := float64(c.n)*float64(c.cached) + float64(c.n)*float64(c.n+1)/2
			tflops := 4 * pairs * dim * hq / (ms * 1e-3) / 1e12
			b.ReportMetric(ms, "ms/op")
			b.ReportMetric(tflops, "TFLOP/s")
			b.ReportMetric(tflops/h100TFLOPS, "of-989")
			b.ReportMetric(float64(c.n)/(ms*1e-3), "tokens/s/layer")
		})
	}
}

// BenchmarkLaunch measures the host's cost of one call on tiny data, 1000 calls per op with
// the stream drained at the end: an elementwise kernel (what each of a decode step's ~20
// launches per layer costs), and a 16×64×64 Linear through each GEMM (cuBLASLt's call path:
// plan lookup, cublasLtMatmul). When the GPU runs the tiny kernels faster than the host
// queues them, µs/call is the host's launch overhead, which CUDA graphs would remove.
func BenchmarkLaunch(b *testing.B) {
	d := gpu(b)
	const calls, m, n, k = 1000, 16, 64, 64
	x, w, out := alloc(b, d, m*k*2), alloc(b, d, n*k*2), alloc(b, d, m*n*2)
	for i, buf := range []Buffer{x, w} {
		fillRandom(b, d, buf, uint64(20+i))
	}
	type namedCall struct {
		name string
		call func() error
	}
	ops := []namedCall{
		{"add", func() error { return d.Add(out, out, x, 8) }},
		{"linear-own", func() error { return d.linear(gemmOwn, out, x, w, Buffer{}, m, n, k) }},
	}
	if d.lt != nil {
		ops = append(ops, namedCall{"linear-cublaslt", func() error { return d.linear(gemmCublasLt, out, x, w, Buffer{}, m, n, k) }})
	}
	for _, op := range ops {
		b.Run(op.name, func(b *testing.B) {
			if err := op.call(); err != nil { // warm: plans, lazy module loads
				b.Fatal(err)
			}
			if err := d.Sync(); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				for range calls {
					if err := op.call(); err != nil {
						b.Fatal(err)
					}
				}
				if err := d.Sync(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*calls)/1e3, "µs/call")
		})
	}
}
