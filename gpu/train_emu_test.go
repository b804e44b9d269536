package gpu

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/kvfoot/kvfoot/cuda"
	"github.com/kvfoot/kvfoot/tensor"
)

// emuKernels emulate the training kernels on the CPU, from the API's definitions, at the
// GPU's precision (bf16 buffers rounded to nearest even on every write, f32 where the API
// says so, accumulation in float64 or float32), so that the Net's own part is tested
// without a GPU. Device memory is byte slices addressed like the GPU's.
type emuKernels struct {
	mem  map[uint64][]byte // allocation base → its bytes
	next uint64
	free uint64 // what MemInfo says is free
}

func newEmu() *emuKernels { return &emuKernels{mem: map[uint64][]byte{}, next: 1 << 20, free: 1 << 40} }

// at is the bytes of b; a buffer outside every allocation is an error.
func (e *emuKernels) at(b cuda.Buffer) ([]byte, error) {
	for base, m := range e.mem {
		if b.Ptr >= base && b.Ptr+uint64(b.Bytes) <= base+uint64(len(m)) {
			off := b.Ptr - base
			return m[off : off+uint64(b.Bytes)], nil
		}
	}
	return nil, fmt.Errorf("emu: buffer %#x (%d bytes) is not allocated", b.Ptr, b.Bytes)
}

// emuBF16 and emuF32 view device memory as bf16 and f32 values, read and written as floats.
type emuBF16 []byte
type emuF32 []byte

func (v emuBF16) get(i int) float32 {
	return math.Float32frombits(uint32(binary.LittleEndian.Uint16(v[2*i:])) << 16)
}
func (v emuBF16) set(i int, x float32) { binary.LittleEndian.PutUint16(v[2*i:], tensor.FloatToBF16(x)) }
func (v emuF32) get(i int) float32     { return math.Float32frombits(binary.LittleEndian.Uint32(v[4*i:])) }
func (v emuF32) set(i int, x float32) {
	binary.LittleEndian.PutUint32(v[4*i:], math.Float32bits(x))
}

// views resolves buffers that must each hold n[i] bytes.
func (e *emuKernels) views(bufs []cuda.Buffer, n []int) ([][]byte, error) {
	out := make([][]byte, len(bufs))
	for i, b := range bufs {
		if int64(n[i]) > b.Bytes {
			return nil, fmt.Errorf("emu: buffer %d holds %d bytes, needs %d", i, b.Bytes, n[i])
		}
		m, err := e.at(b)
		if err != nil {
			return nil, err
		}
		out[i] = m[:n[i]]
	}
	return out, nil
}

func (e *emuKernels) MemInfo() (uint64, uint64, error) { return e.free, 1 << 40, nil }

func (e *emuKernels) Alloc(n int64) (cuda.Buffer, error) {
	b := cuda.Buffer{Ptr: e.next, Bytes: n}
	e.mem[e.next] = make([]byte, n)
	e.next += uint64(n+255)&^255 + 256
	return b, nil
}

func (e *emuKernels) Free(b cuda.Buffer) error {
	if _, ok := e.mem[b.Ptr]; !ok {
		return fmt.Errorf("emu: free of %#x, not allocated", b.Ptr)
	}
	delete(e.mem, b.Ptr)
	return nil
}

func (e *emuKernels) Memset(b cuda.Buffer, v byte) error {
	m, err := e.at(b)
	for i := range m {
		m[i] = v
	}
	return err
}

func (e *emuKernels) Sync() error { return nil }

func (e *emuKernels) UploadInts(dst cuda.Buffer, v []int32) error {
	m, err := e.views([]cuda.Buffer{dst}, []int{4 * len(v)})
	if err != nil {
		return err
	}
	for i, x := range v {
		binary.LittleEndian.PutUint32(m[0][4*i:], uint32(x))
	}
	return nil
}

func (e *emuKernels) ints(b cuda.Buffer, n int) ([]int, error) {
	m, err := e.views([]cuda.Buffer{b}, []int{4 * n})
	if err != nil {
		return nil, err
	}
	out := make([]int, n)
	for i := range out {
		out[i] = int(int32(binary.LittleEndian.Uint32(m[0][4*i:])))
	}
	return out, nil
}

func (e *emuKernels) uploadBF16(dst cuda.Buffer, v []uint16) error {
	m, err := e.views([]cuda.Buffer{dst}, []int{2 * len(v)})
	if err != nil {
		return err
	}
	for i, x := range v {
		binary.LittleEndian.PutUint16(m[0][2*i:], x)
	}
	return nil
}

func (e *emuKernels) uploadF32(dst cuda.Buffer, v []float32) error {
	m, err := e.views([]cuda.Buffer{dst}, []int{4 * len(v)})
	if err != nil {
		return err
	}
	for i, x := range v {
		emuF32(m[0]).set(i, x)
	}
	return nil
}

func (e *emuKernels) downloadBF16(dst []uint16, src cuda.Buffer) error {
	m, err := e.views([]cuda.Buffer{src}, []int{2 * len(dst)})
	if err != nil {
		return err
	}
	for i := range dst {
		dst[i] = binary.LittleEndian.Uint16(m[0][2*i:])
	}
	return nil
}

func (e *emuKernels) downloadF32(dst []float32, src cuda.Buffer) error {
	m, err := e.views([]cuda.Buffer{src}, []int{4 * len(dst)})
	if err != nil {
		return err
	}
	for i := range dst {
		dst[i] = emuF32(m[0]).get(i)
	}
	return nil
}

// emuFloats reads count bf16 values.
func emuFloats(v emuBF16, count int) []float32 {
	out := make([]float32, count)
	for i := range out {
		out[i] = v.get(i)
	}
	return out
}

func (e *emuKernels) Embedding(out, table cuda.Buffer, vocab, dim int, ids []int32) error {
	m, err := e.views([]cuda.Buffer{out, table}, []int{2 * len(ids) * dim, 2 * vocab * dim})
	if err != nil {
		return err
	}
	for i, id := range ids {
		copy(m[0][2*i*dim:2*(i+1)*dim], m[1][2*int(id)*dim:])
	}
	return nil
}

func (e *emuKernels) RMSNorm(out, x, weight cuda.Buffer, rows, dim int, eps float32) error {
	m, err := e.views([]cuda.Buffer{out, x, weight}, []int{2 * rows * dim, 2 * rows * dim, 2 * dim})
	if err != nil {
		return err
	}
	xs, w := emuFloats(m[1], rows*dim), emuFloats(m[2], dim)
	for r := range rows {
		row := xs[r*dim : (r+1)*dim]
		var ss float64
		for _, v := range row {
			ss += float64(v) * float64(v)
		}
		s := float32(1 / math.Sqrt(ss/float64(dim)+float64(eps)))
		for j, v := range row {
			emuBF16(m[0]).set(r*dim+j, v*s*w[j])
		}
	}
	return nil
}

func (e *emuKernels) Linear(out, x, w, bias cuda.Buffer, rows, n, k int) error {
	m, err := e.views([]cuda.Buffer{out, x, w}, []int{2 * rows * n, 2 * rows * k, 2 * n * k})
	if err != nil {
		return err
	}
	xs, ws := emuFloats(m[1], rows*k), emuFloats(m[2], n*k)
	var b []float32
	if bias.Ptr != 0 {
		mb, err := e.views([]cuda.Buffer{bias}, []int{2 * n})
		if err != nil {
			return err
		}
		b = emuFloats(mb[0], n)
	}
	for i := range rows {
		for j := range n {
			var s float32
			for l, v := range xs[i*k : (i+1)*k] {
				s += v * ws[j*k+l]
			}
			if b != nil {
				s += b[j]
			}
			emuBF16(m[0]).set(i*n+j, s)
		}
	}
	return nil
}

func (e *emuKernels) Linears(x cuda.Buffer, rows, k int, outs ...cuda.LinearOut) error {
	for _, o := range outs {
		if err := e.Linear(o.Out, x, o.W, o.Bias, rows, o.N, k); err != nil {
			return err
		}
	}
	return nil
}

func (e *emuKernels) RoPE(x, positions cuda.Buffer, posStride int, invFreq cuda.Buffer, tokens, heads, dim int, scale float32) error {
	m, err := e.views([]cuda.Buffer{x, invFreq}, []int{2 * tokens * heads * dim, 4 * dim / 2})
	if err != nil {
		return err
	}
	pos, err := e.ints(positions, (tokens-1)*posStride+1)
	if err != nil {
		return err
	}
	half := dim / 2
	for t := range tokens {
		for h := range heads {
			o := (t*heads + h) * dim
			for j := range half {
				a := float64(float32(pos[t*posStride]) * emuF32(m[1]).get(j))
				c, s := float32(math.Cos(a))*scale, float32(math.Sin(a))*scale
				x1, x2 := emuBF16(m[0]).get(o+j), emuBF16(m[0]).get(o+j+half)
				emuBF16(m[0]).set(o+j, x1*c-x2*s)
				emuBF16(m[0]).set(o+j+half, x2*c+x1*s)
			}
		}
	}
	return nil
}

func (e *emuKernels) elementwise(out, a, b cuda.Buffer, count int, f func(x, y float32) float32) error {
	m, err := e.views([]cuda.Buffer{out, a, b}, []int{2 * count, 2 * count, 2 * count})
	if err != nil {
		return err
	}
	for i := range count {
		emuBF16(m[0]).set(i, f(emuBF16(m[1]).get(i), emuBF16(m[2]).get(i)))
	}
	return nil
}

func emuSilu(g float32) float32 { return g / (1 + float32(math.Exp(float64(-g)))) }

func (e *emuKernels) SwiGLU(out, gate, up cuda.Buffer, count int) error {
	return e.elementwise(out, gate, up, count, func(g, u float32) float32 { return emuSilu(g) * u })
}

func (e *emuKernels) Add(out, a, b cuda.Buffer, count int) error {
	return e.elementwise(out, a, b, count, func(x, y float32) float32 { return x + y })
}

// emuVisible says whether query i sees key j in band s.
func emuVisible(s cuda.BandShape, i, j int) bool {
	return j <= i && (s.Window == 0 || j < s.Sink || j > i-s.Window)
}

// attnViews resolves q, k, v of band s.
func (e *emuKernels) attnViews(q, k, v cuda.Buffer, s cuda.BandShape) (qs, ks, vs []float32, err error) {
	qn, kvn := s.N*s.QHeads*s.Dim, s.N*s.KVHeads*s.Dim
	m, err := e.views([]cuda.Buffer{q, k, v}, []int{2 * qn, 2 * kvn, 2 * kvn})
	if err != nil {
		return nil, nil, nil, err
	}
	return emuFloats(m[0], qn), emuFloats(m[1], kvn), emuFloats(m[2], kvn), nil
}

// emuScore is scale·q_i·k_j of query head h.
func emuScore(s cuda.BandShape, qs, ks []float32, i, j, h int) float64 {
	g := h / (s.QHeads / s.KVHeads)
	qo, ko := (i*s.QHeads+h)*s.Dim, (j*s.KVHeads+g)*s.Dim
	var d float32
	for x := range s.Dim {
		d += qs[qo+x] * ks[ko+x]
	}
	return float64(d * s.Scale)
}

func (e *emuKernels) AttentionBand(out, lse, q, k, v cuda.Buffer, s cuda.BandShape) error {
	qs, ks, vs, err := e.attnViews(q, k, v, s)
	if err != nil {
		return err
	}
	m, err := e.views([]cuda.Buffer{out, lse}, []int{2 * s.N * s.QHeads * s.Dim, 4 * s.QHeads * s.N})
	if err != nil {
		return err
	}
	acc := make([]float64, s.Dim)
	for i := range s.N {
		for h := range s.QHeads {
			g := h / (s.QHeads / s.KVHeads)
			mx := math.Inf(-1)
			for j := 0; j <= i; j++ {
				if emuVisible(s, i, j) {
					mx = max(mx, emuScore(s, qs, ks, i, j, h))
				}
			}
			var sum float64
			clear(acc)
			for j := 0; j <= i; j++ {
				if !emuVisible(s, i, j) {
					continue
				}
				p := math.Exp(emuScore(s, qs, ks, i, j, h) - mx)
				sum += p
				for x := range s.Dim {
					acc[x] += p * float64(vs[(j*s.KVHeads+g)*s.Dim+x])
				}
			}
			for x := range s.Dim {
				emuBF16(m[0]).set((i*s.QHeads+h)*s.Dim+x, float32(acc[x]/sum))
			}
			emuF32(m[1]).set(h*s.N+i, float32(mx+math.Log(sum)))
		}
	}
	return nil
}

func (e *emuKernels) AttentionBandBackward(dq, dk, dv, dout, out, lse, q, k, v cuda.Buffer, s cuda.BandShape, work cuda.Buffer) error {
	qs, ks, vs, err := e.attnViews(q, k, v, s)
	if err != nil {
		return err
	}
	qn, kvn := s.N*s.QHeads*s.Dim, s.N*s.KVHeads*s.Dim
	m, err := e.views([]cuda.Buffer{dq, dk, dv, dout, out, lse, work},
		[]int{2 * qn, 2 * kvn, 2 * kvn, 2 * qn, 2 * qn, 4 * s.QHeads * s.N, int(cuda.AttentionBandWorkBytes(s))})
	if err != nil {
		return err
	}
	do, o := emuFloats(m[3], qn), emuFloats(m[4], qn)
	gq, gk, gv := make([]float64, qn), make([]float64, kvn), make([]float64, kvn)
	for i := range s.N {
		for h := range s.QHeads {
			g := h / (s.QHeads / s.KVHeads)
			qo := (i*s.QHeads + h) * s.Dim
			var delta float64
			for x := range s.Dim {
				delta += float64(do[qo+x]) * float64(o[qo+x])
			}
			l := float64(emuF32(m[5]).get(h*s.N + i))
			for j := 0; j <= i; j++ {
				if !emuVisible(s, i, j) {
					continue
				}
				ko := (j*s.KVHeads + g) * s.Dim
				p := math.Exp(emuScore(s, qs, ks, i, j, h) - l)
				var dp float64
				for x := range s.Dim {
					dp += float64(do[qo+x]) * float64(vs[ko+x])
					gv[ko+x] += p * float64(do[qo+x])
				}
				ds := p * (dp - delta) * float64(s.Scale)
				for x := range s.Dim {
					gq[qo+x] += ds * float64(ks[ko+x])
					gk[ko+x] += ds * float64(qs[qo+x])
				}
			}
		}
	}
	for i, x := range gq {
		emuBF16(m[0]).set(i, float32(x))
	}
	for i := range gk {
		emuBF16(m[1]).set(i, float32(gk[i]))
		emuBF16(m[2]).set(i, float32(gv[i]))
	}
	return nil
}

func (e *emuKernels) MixHeads(att, full, stream, z cuda.Buffer, n, qHeads, kvHeads, dim int) error {
	c := n * qHeads * dim
	m, err := e.views([]cuda.Buffer{att, full, stream, z}, []int{2 * c, 2 * c, 2 * c, 4 * kvHeads})
	if err != nil {
		return err
	}
	for i := range c {
		zg := emuF32(m[3]).get(i / dim % qHeads / (qHeads / kvHeads))
		emuBF16(m[0]).set(i, zg*emuBF16(m[1]).get(i)+(1-zg)*emuBF16(m[2]).get(i))
	}
	return nil
}

func (e *emuKernels) MixHeadsBackward(dfull, dstream, dz, datt, full, stream, z cuda.Buffer, n, qHeads, kvHeads, dim int) error {
	c := n * qHeads * dim
	m, err := e.views([]cuda.Buffer{dfull, dstream, dz, datt, full, stream, z}, []int{2 * c, 2 * c, 4 * kvHeads, 2 * c, 2 * c, 2 * c, 4 * kvHeads})
	if err != nil {
		return err
	}
	sums := make([]float64, kvHeads)
	for i := range c {
		g := i / dim % qHeads / (qHeads / kvHeads)
		zg, d := emuF32(m[6]).get(g), emuBF16(m[3]).get(i)
		emuBF16(m[0]).set(i, zg*d)
		emuBF16(m[1]).set(i, (1-zg)*d)
		sums[g] += float64(d) * float64(emuBF16(m[4]).get(i)-emuBF16(m[5]).get(i))
	}
	for g, s := range sums {
		emuF32(m[2]).set(g, emuF32(m[2]).get(g)+float32(s))
	}
	return nil
}

func (e *emuKernels) RMSNormBackward(dres, x, weight, dy cuda.Buffer, rows, dim int, eps float32) error {
	m, err := e.views([]cuda.Buffer{dres, x, weight, dy}, []int{4 * rows * dim, 2 * rows * dim, 2 * dim, 2 * rows * dim})
	if err != nil {
		return err
	}
	xs, w, g := emuFloats(m[1], rows*dim), emuFloats(m[2], dim), emuFloats(m[3], rows*dim)
	for r := range rows {
		xr, gr := xs[r*dim:(r+1)*dim], g[r*dim:(r+1)*dim]
		var ss, s float64
		for j, v := range xr {
			ss += float64(v) * float64(v)
			s += float64(w[j]) * float64(gr[j]) * float64(v)
		}
		rs := 1 / math.Sqrt(ss/float64(dim)+float64(eps))
		c := s * rs * rs * rs / float64(dim)
		for j, v := range xr {
			i := r*dim + j
			emuF32(m[0]).set(i, emuF32(m[0]).get(i)+float32(rs*float64(w[j])*float64(gr[j])-c*float64(v)))
		}
	}
	return nil
}

func (e *emuKernels) SwiGLUBackward(dgate, dup, dact, gate, up cuda.Buffer, count int) error {
	m, err := e.views([]cuda.Buffer{dgate, dup, dact, gate, up}, []int{2 * count, 2 * count, 2 * count, 2 * count, 2 * count})
	if err != nil {
		return err
	}
	for i := range count {
		d, g, u := emuBF16(m[2]).get(i), emuBF16(m[3]).get(i), emuBF16(m[4]).get(i)
		sg := 1 / (1 + float32(math.Exp(float64(-g))))
		emuBF16(m[0]).set(i, d*u*sg*(1+g*(1-sg)))
		emuBF16(m[1]).set(i, d*g*sg)
	}
	return nil
}

func (e *emuKernels) CrossEntropy(dlogits, loss, logits, targets cuda.Buffer, rows, vocab int, scale float32) error {
	m, err := e.views([]cuda.Buffer{dlogits, loss, logits}, []int{2 * rows * vocab, 4 * rows, 2 * rows * vocab})
	if err != nil {
		return err
	}
	tg, err := e.ints(targets, rows)
	if err != nil {
		return err
	}
	for r := range rows {
		row := emuFloats(m[2][2*r*vocab:], vocab)
		if tg[r] < 0 {
			emuF32(m[1]).set(r, 0)
			for j := range vocab {
				emuBF16(m[0]).set(r*vocab+j, 0)
			}
			continue
		}
		mx := math.Inf(-1)
		for _, v := range row {
			mx = max(mx, float64(v))
		}
		var sum float64
		for _, v := range row {
			sum += math.Exp(float64(v) - mx)
		}
		emuF32(m[1]).set(r, float32(mx+math.Log(sum)-float64(row[tg[r]])))
		for j, v := range row {
			p := math.Exp(float64(v)-mx) / sum
			if j == tg[r] {
				p--
			}
			emuBF16(m[0]).set(r*vocab+j, scale*float32(p))
		}
	}
	return nil
}

func (e *emuKernels) SquaredError(dh, loss, h, t, rows cuda.Buffer, count, dim int, g float32) error {
	rs, err := e.ints(rows, count)
	if err != nil {
		return err
	}
	n := 0
	for _, r := range rs {
		n = max(n, r+1)
	}
	m, err := e.views([]cuda.Buffer{dh, loss, h, t}, []int{2 * n * dim, 4 * count, 2 * n * dim, 4 * n * dim})
	if err != nil {
		return err
	}
	for i, r := range rs {
		var s float64
		for j := range dim {
			d := emuBF16(m[2]).get(r*dim+j) - emuF32(m[3]).get(r*dim+j)
			s += float64(d) * float64(d)
			emuBF16(m[0]).set(r*dim+j, g*d)
		}
		emuF32(m[1]).set(i, float32(s))
	}
	return nil
}

func (e *emuKernels) ToBF16(dst, src cuda.Buffer, count int) error {
	m, err := e.views([]cuda.Buffer{dst, src}, []int{2 * count, 4 * count})
	if err != nil {
		return err
	}
	for i := range count {
		emuBF16(m[0]).set(i, emuF32(m[1]).get(i))
	}
	return nil
}
