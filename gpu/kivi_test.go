package gpu

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kvfoot/kvfoot/compute"
	"github.com/kvfoot/kvfoot/cuda"
	"github.com/kvfoot/kvfoot/kv"
	"github.com/kvfoot/kvfoot/model"
	"github.com/kvfoot/kvfoot/tensor"
)

// kiviMem is the device memory of a KIVI storage on the host, and kivi.cu's kernels over it in
// Go: the same byte layout, indexing and float32 arithmetic (kivi_view's values before their
// rounding to bf16, which is the kernel's last step).
type kiviMem struct {
	l            cuda.KIVILayout
	rows         []byte    // quantized rows by slot
	table        []float32 // key groups by slot: Dim minima, then Dim scales
	kpool, vpool []float32 // the residual's KV pool by slot
}

func (m *kiviMem) f32(b []byte) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b)) }

func (m *kiviMem) putF32(b []byte, x float32) { binary.LittleEndian.PutUint32(b, math.Float32bits(x)) }

func kiviCode(x, lo, sc, levels float32) float32 {
	if sc == 0 {
		return 0
	}
	return min(max(float32(math.RoundToEven(float64((x-lo)/sc))), 0), levels)
}

// quantize is kivi_quantize for one job.
func (m *kiviMem) quantize(j cuda.KIVIJob) {
	l := m.l
	d, G, bits := l.Dim, l.Group, l.Bits
	levels := float32(int(1)<<bits - 1)
	per, cb, vg := 8/bits, l.CodeBytes(), l.ValueGroups()
	for int(j.Group) >= len(m.table)/(2*d) {
		m.table = append(m.table, make([]float32, 2*d)...)
	}
	grp := m.table[int(j.Group)*2*d : int(j.Group+1)*2*d]
	for c := range d {
		lo, hi := float32(math.Inf(1)), float32(math.Inf(-1))
		for _, s := range j.Src {
			x := m.kpool[int(s)*d+c]
			lo, hi = min(lo, x), max(hi, x)
		}
		grp[c], grp[d+c] = lo, (hi-lo)/levels
	}
	for t, s := range j.Src {
		k, v := m.kpool[int(s)*d:int(s+1)*d], m.vpool[int(s)*d:int(s+1)*d]
		row := m.rows[int(j.Dst[t])*l.RowBytes() : int(j.Dst[t]+1)*l.RowBytes()]
		for b := range cb {
			var byt uint
			for i := range per {
				c := b*per + i
				byt |= uint(kiviCode(k[c], grp[c], grp[d+c], levels)) << (i * bits)
			}
			row[b] = byte(byt)
		}
		for g := range vg {
			lo := v[g*G]
			hi := lo
			for _, x := range v[g*G : min(d, g*G+G)] {
				lo, hi = min(lo, x), max(hi, x)
			}
			m.putF32(row[2*cb+4*g:], lo)
			m.putF32(row[2*cb+4*vg+4*g:], (hi-lo)/levels)
		}
		for b := range cb {
			var byt uint
			for i := range per {
				c := b*per + i
				g := c / G
				byt |= uint(kiviCode(v[c], m.f32(row[2*cb+4*g:]), m.f32(row[2*cb+4*vg+4*g:]), levels)) << (i * bits)
			}
			row[cb+b] = byte(byt)
		}
		binary.LittleEndian.PutUint32(row[2*cb+8*vg:], uint32(j.Group))
	}
}

// view is kivi_view for one entry: its key and value as float32.
func (m *kiviMem) view(src int32) (k, v []float32) {
	l := m.l
	d := l.Dim
	if src < 0 {
		s := int(-1 - src)
		return m.kpool[s*d : (s+1)*d], m.vpool[s*d : (s+1)*d]
	}
	per, cb, vg := 8/l.Bits, l.CodeBytes(), l.ValueGroups()
	mask := byte(1<<l.Bits - 1)
	row := m.rows[int(src)*l.RowBytes() : int(src+1)*l.RowBytes()]
	slot := int(binary.LittleEndian.Uint32(row[2*cb+8*vg:]))
	grp := m.table[slot*2*d : (slot+1)*2*d]
	k, v = make([]float32, d), make([]float32, d)
	for c := range d {
		shift := c % per * l.Bits
		kc := float32(row[c/per] >> shift & mask)
		vc := float32(row[cb+c/per] >> shift & mask)
		k[c] = kc*grp[d+c] + grp[c]
		v[c] = vc*m.f32(row[2*cb+4*vg+4*(c/l.Group):]) + m.f32(row[2*cb+4*(c/l.Group):])
	}
	return k, v
}

// copyRows is kivi_gather then kivi_scatter; copyRes is KVCopy on the residual's pool.
func (m *kiviMem) copyRows(moves []cuda.Move) {
	rb := m.l.RowBytes()
	var gathered [][]byte
	for _, mv := range moves {
		gathered = append(gathered, append([]byte{}, m.rows[int(mv.Src)*rb:int(mv.Src+1)*rb]...))
	}
	for i, mv := range moves {
		copy(m.rows[int(mv.Dst)*rb:], gathered[i])
	}
}

func (m *kiviMem) copyRes(moves []cuda.Move) {
	d := m.l.Dim
	var gk, gv [][]float32
	for _, mv := range moves {
		gk = append(gk, append([]float32{}, m.kpool[int(mv.Src)*d:int(mv.Src+1)*d]...))
		gv = append(gv, append([]float32{}, m.vpool[int(mv.Src)*d:int(mv.Src+1)*d]...))
	}
	for i, mv := range moves {
		copy(m.kpool[int(mv.Dst)*d:], gk[i])
		copy(m.vpool[int(mv.Dst)*d:], gv[i])
	}
}

// kiviModel is a kv.Storage that runs kv's CPU KIVI storage (the truth, which attends) beside
// the GPU storage's bookkeeping (kiviBook) and kivi.cu's kernels in Go (kiviMem). At every
// Attend it builds the view as kiviStorage.Attend does and checks, against the host: the
// attention outputs (float64 over the view), the scores (kernelScores over the view's block
// tables) and the bytes (the host's float32 residual against the GPU's bf16 one).
type kiviModel struct {
	t                  *testing.T
	host               kv.Storage
	shape              kv.Shape
	rep                int
	book               *kiviBook
	mem                *kiviMem
	outputs, scoreSets int // checked
	decodes            int // query heads whose decode kivi_decode's model checked
	quantized          int // the most quantized rows seen at an Attend
	worst              float64
	// the moves not yet run, queued and run at once as kiviStorage queues and flushes them
	rowMoves, resMoves cuda.MoveQueue
}

// flush runs the queued moves, each queue as one gather-then-scatter copy (kiviStorage.flush).
func (m *kiviModel) flush() {
	m.mem.copyRes(m.resMoves.Moves())
	m.resMoves.Reset()
	m.mem.copyRows(m.rowMoves.Moves())
	m.rowMoves.Reset()
}

func newKIVIModel(t *testing.T, s kv.Shape, rep int, p kv.Precision, entries int) (*kiviModel, error) {
	host, err := kv.HostStorage(s, rep, p)
	if err != nil {
		return nil, err
	}
	l := cuda.KIVILayout{Dim: s.HeadDim, Bits: p.Bits, Group: p.Group}
	if err := l.Check(); err != nil {
		return nil, err
	}
	heads := s.Layers * s.KVHeads
	blocks := heads * (entries/cuda.BlockEntries + 2)
	rows, err := cuda.NewPagedCache(blocks, heads)
	if err != nil {
		return nil, err
	}
	res, err := cuda.NewPagedCache(blocks, heads)
	if err != nil {
		return nil, err
	}
	n := blocks * cuda.BlockEntries
	mem := &kiviMem{l: l, rows: make([]byte, n*l.RowBytes()), kpool: make([]float32, n*s.HeadDim), vpool: make([]float32, n*s.HeadDim)}
	return &kiviModel{t: t, host: host, shape: s, rep: rep, book: newKIVIBook(l, p.Residual, rows, res), mem: mem}, nil
}

func (m *kiviModel) Append(layer int, kb, vb compute.Buf, n int) {
	m.flush()
	m.host.Append(layer, kb, vb, n)
	d, H := m.shape.HeadDim, m.shape.KVHeads
	k, v := compute.HostOf(kb), compute.HostOf(vb)
	for c := range m.rep {
		slots, err := appendSlots(nil, m.book.res, layer*H, H, m.rep, c, n)
		if err != nil {
			m.t.Fatal(err)
		}
		for row, slot := range slots {
			copy(m.mem.kpool[int(slot)*d:], k[row*d:(row+1)*d])
			copy(m.mem.vpool[int(slot)*d:], v[row*d:(row+1)*d])
		}
	}
	var jobs []cuda.KIVIJob
	for g := range H {
		var mv []cuda.Move
		var err error
		jobs, mv, err = m.book.quantize(layer*H+g, jobs)
		if err != nil {
			m.t.Fatal(err)
		}
		m.resMoves.Add(layer*H+g, mv) // run after the jobs, at the next flush
	}
	for _, j := range jobs {
		m.mem.quantize(j)
	}
}

func (m *kiviModel) Attend(layer int, qb, ob compute.Buf, a *kv.AttendArgs) {
	m.flush()
	m.host.Attend(layer, qb, ob, a)
	s, H, d := m.shape, m.shape.KVHeads, m.shape.HeadDim
	q, out := compute.HostOf(qb), compute.HostOf(ob)
	lens := make([]int, H)
	for g := range lens {
		lens[g] = m.book.len(layer*H + g)
		if lens[g] != a.Past[g]+a.N {
			m.t.Fatalf("layer %d head %d holds %d entries after appending %d to %d", layer, g, lens[g], a.N, a.Past[g])
		}
		m.quantized = max(m.quantized, m.book.rows.Len(layer*H+g))
	}
	first, blocks, maxBlocks := kiviView(lens)
	kview, vview := make([]float32, blocks*cuda.BlockEntries*d), make([]float32, blocks*cuda.BlockEntries*d)
	for g := range H {
		for i, src := range m.book.sources(nil, layer*H+g) {
			k, v := m.mem.view(src)
			copy(kview[(first[g]*cuda.BlockEntries+i)*d:], k)
			copy(vview[(first[g]*cuda.BlockEntries+i)*d:], v)
		}
	}
	// attention: query i of query head qh over its stored head's entries [0, Past+i]
	G := s.Heads / H
	scale := 1 / math.Sqrt(float64(d))
	for i := range a.N {
		for qh := range s.Heads {
			g := qh / G
			qr := q[(i*s.Heads+qh)*d : (i*s.Heads+qh+1)*d]
			n := a.Past[g] + i + 1
			sc := make([]float64, n)
			mx := math.Inf(-1)
			for j := range n {
				kr := kview[(first[g]*cuda.BlockEntries+j)*d:]
				for c := range d {
					sc[j] += float64(qr[c]) * float64(kr[c])
				}
				sc[j] *= scale
				mx = max(mx, sc[j])
			}
			want, sum := make([]float64, d), 0.0
			for j := range n {
				p := math.Exp(sc[j] - mx)
				sum += p
				vr := vview[(first[g]*cuda.BlockEntries+j)*d:]
				for c := range d {
					want[c] += p * float64(vr[c])
				}
			}
			got := out[(i*s.Heads+qh)*d : (i*s.Heads+qh+1)*d]
			for c := range d {
				w := want[c] / sum
				diff := math.Abs(float64(got[c]) - w)
				if diff > 1e-4+1e-4*math.Abs(w) {
					m.t.Fatalf("layer %d row %d query head %d channel %d: host %g, the kernel model's view %g", layer, i, qh, c, got[c], w)
				}
				m.worst = max(m.worst, diff)
			}
			m.outputs++
		}
	}
	if a.N == 1 {
		m.checkDecode(layer, q, out)
	}
	heads := scoreHeads(nil, a)
	table := viewTable(nil, first, lens, maxBlocks)
	scores := kernelScores(heads, table, maxBlocks, kview, q, s.Heads, d, float32(scale))
	off := 0
	for g, h := range heads {
		if h.To <= h.From {
			continue
		}
		for j, w := range a.Scores[g] {
			if diff := math.Abs(float64(scores[off+j] - w)); diff > 1e-6+1e-4*math.Abs(float64(w)) {
				m.t.Fatalf("layer %d head %d entry %d: score over the view %g, host %g", layer, g, j, scores[off+j], w)
			}
		}
		off += h.Count
		m.scoreSets++
	}
	res := 0
	for h := range m.book.groups {
		res += m.book.res.Len(h)
	}
	if got, want := m.host.Bytes()-m.book.bytes(), int64(res)*int64(d)*4; got != want {
		m.t.Fatalf("layer %d: host bytes %d, GPU bytes %d: differ by %d, the residual's %d entries make %d", layer, m.host.Bytes(), m.book.bytes(), got, res, want)
	}
}

// checkDecode is kivi_decode in Go: the layer's heads through their row and residual block
// tables as KIVIDecode is handed them, each lane's 8 channels of codes from the little-endian
// word of 8·bits bits at byte lane·bits, dequantized with the row's key group and the channels'
// value groups; the float64 softmax of it must give the host's decode output.
func (m *kiviModel) checkDecode(layer int, q, out []float32) {
	s, H, d := m.shape, m.shape.KVHeads, m.shape.HeadDim
	l := m.mem.l
	rowTab, rows, maxRow, err := m.book.rows.Tables(layer*H, H)
	if err != nil {
		m.t.Fatal(err)
	}
	resTab, res, maxRes, err := m.book.res.Tables(layer*H, H)
	if err != nil {
		m.t.Fatal(err)
	}
	cb, vg := l.CodeBytes(), l.ValueGroups()
	mask := uint64(1)<<l.Bits - 1
	entry := func(kvh, e int) (k, v []float32) {
		nq := int(rows[kvh])
		if e >= nq {
			r := e - nq
			slot := int(resTab[kvh*maxRes+r/cuda.BlockEntries])*cuda.BlockEntries + r%cuda.BlockEntries
			return m.mem.kpool[slot*d : (slot+1)*d], m.mem.vpool[slot*d : (slot+1)*d]
		}
		slot := int(rowTab[kvh*maxRow+e/cuda.BlockEntries])*cuda.BlockEntries + e%cuda.BlockEntries
		row := m.mem.rows[slot*l.RowBytes() : (slot+1)*l.RowBytes()]
		word := func(off int) uint64 {
			var w uint64
			for i := range l.Bits {
				w |= uint64(row[off+i]) << (8 * i)
			}
			return w
		}
		g := int(binary.LittleEndian.Uint32(row[2*cb+8*vg:]))
		kmin, ksc := m.mem.table[g*2*d:g*2*d+d], m.mem.table[g*2*d+d:(g+1)*2*d]
		k, v = make([]float32, d), make([]float32, d)
		for li := range d / 8 {
			kb, vb := word(li*l.Bits), word(cb+li*l.Bits)
			for j := range 8 {
				c := li*8 + j
				k[c] = float32(kb>>(j*l.Bits)&mask)*ksc[c] + kmin[c]
				v[c] = float32(vb>>(j*l.Bits)&mask)*m.mem.f32(row[2*cb+4*vg+4*(c/l.Group):]) + m.mem.f32(row[2*cb+4*(c/l.Group):])
			}
		}
		return k, v
	}
	G := s.Heads / H
	scale := 1 / math.Sqrt(float64(d))
	for qh := range s.Heads {
		kvh := qh / G
		n := int(rows[kvh] + res[kvh])
		qr := q[qh*d : (qh+1)*d]
		sc, ks, vs := make([]float64, n), make([][]float32, n), make([][]float32, n)
		mx := math.Inf(-1)
		for e := range n {
			ks[e], vs[e] = entry(kvh, e)
			for c := range d {
				sc[e] += float64(qr[c]) * float64(ks[e][c])
			}
			sc[e] *= scale
			mx = max(mx, sc[e])
		}
		want, sum := make([]float64, d), 0.0
		for e := range n {
			p := math.Exp(sc[e] - mx)
			sum += p
			for c := range d {
				want[c] += p * float64(vs[e][c])
			}
		}
		for c := range d {
			w := want[c] / sum
			if diff := math.Abs(float64(out[qh*d+c]) - w); diff > 1e-4+1e-4*math.Abs(w) {
				m.t.Fatalf("layer %d query head %d channel %d: host %g, kivi_decode's model %g", layer, qh, c, out[qh*d+c], w)
			}
		}
		m.decodes++
	}
}

func (m *kiviModel) Keep(layer, head int, idx []int) {
	m.host.Keep(layer, head, idx)
	rowMoves, resMoves, err := m.book.keep(layer*m.shape.KVHeads+head, idx)
	if err != nil {
		m.t.Fatal(err)
	}
	m.rowMoves.Add(layer*m.shape.KVHeads+head, rowMoves)
	m.resMoves.Add(layer*m.shape.KVHeads+head, resMoves)
}

func (m *kiviModel) Drop(layer, head, lo, hi int) {
	m.Keep(layer, head, kv.AppendKept(nil, m.book.len(layer*m.shape.KVHeads+head), lo, hi))
}

func (m *kiviModel) Truncate(layer, head, n int) {
	m.host.Truncate(layer, head, n)
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	rowMoves, resMoves, err := m.book.keep(layer*m.shape.KVHeads+head, idx)
	if err != nil {
		m.t.Fatal(err)
	}
	m.rowMoves.Add(layer*m.shape.KVHeads+head, rowMoves)
	m.resMoves.Add(layer*m.shape.KVHeads+head, resMoves)
}

func (m *kiviModel) Bytes() int64 { return m.host.Bytes() }

// kiviMasks writes a head-mask file for shape: per layer, one streaming and one full KV head.
func kiviMasks(t *testing.T, s kv.Shape) string {
	var b strings.Builder
	for l := range s.Layers {
		for g := range s.KVHeads {
			if g > 0 {
				b.WriteByte('\t')
			}
			fmt.Fprintf(&b, "%.2f", 0.1+0.8*float64((l+g)%2))
		}
		b.WriteByte('\n')
	}
	f := filepath.Join(t.TempDir(), "masks.tsv")
	if err := os.WriteFile(f, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// kiviSpecs are the policies the KIVI tests run: full attention, eviction after the pre-fill and
// after every chunk (its Keeps cut quantized groups), the expanded cache, H2O (Keeps at every
// decode step), a streaming-heads mask (Truncate-free Keeps of the window) and the composition
// headmask+snapkv*+quant.
func kiviSpecs(t *testing.T, s kv.Shape, storage string) []string {
	masks := kiviMasks(t, s)
	return []string{
		"full+" + storage,
		"snapkv:sparsity=0.6,window=16+" + storage,
		"snapkv:sparsity=0.6,window=16,chunked=true,patch=8,gqa=mean+" + storage,
		"snapkv:sparsity=0.5,window=8,chunked=true,gqa=expand+" + storage,
		"h2o:heavy=48,recent=20+" + storage,
		"headmask:masks=" + masks + ",sparsity=0.5,sink=4,window=40+" + storage,
		"headmask:masks=" + masks + ",sparsity=0.5,sink=4,window=40+snapkv:sparsity=0.5,window=8,chunked=true+" + storage,
	}
}

// The GPU storage's bookkeeping and kivi.cu's kernels, modelled in Go, hold the CPU's KIVI
// storage: for 8, 4 and 2 bits, head dimensions 64 and 128, groups that do and do not divide
// the chunks, a zero residual, every Keep and Truncate the policies make, the dequantized view
// gives the host's attention outputs and scores, and the bytes differ by the residual's
// precision alone.
func TestKIVIKernelModel(t *testing.T) {
	const prompt, chunk, steps = 230, 64, 40
	for _, tc := range []struct {
		shape   kv.Shape
		storage string
		specs   int // the first specs of kiviSpecs; 0: all
	}{
		{kv.Shape{Layers: 2, Heads: 8, KVHeads: 2, HeadDim: 64}, "quant:bits=8,group=32,residual=32", 0},
		{kv.Shape{Layers: 2, Heads: 8, KVHeads: 2, HeadDim: 64}, "quant:bits=4,group=24,residual=8", 0},
		{kv.Shape{Layers: 2, Heads: 8, KVHeads: 2, HeadDim: 64}, "quant:bits=2,group=16,residual=0", 0},
		{kv.Shape{Layers: 2, Heads: 16, KVHeads: 2, HeadDim: 128}, "quant:bits=4,group=32,residual=32", 0},
		{kv.Shape{Layers: 1, Heads: 4, KVHeads: 2, HeadDim: 128}, "quant:bits=2,group=200,residual=5", 2}, // one value group a row
	} {
		specs := kiviSpecs(t, tc.shape, tc.storage)
		if tc.specs > 0 {
			specs = specs[:tc.specs]
		}
		for _, spec := range specs {
			name := fmt.Sprintf("d%d/%s", tc.shape.HeadDim, spec)
			if i := strings.Index(name, "masks="); i >= 0 {
				name = name[:i] + name[strings.Index(name[i:], ",")+i:]
			}
			t.Run(name, func(t *testing.T) {
				r := rand.New(rand.NewPCG(5, uint64(len(spec))))
				var ms *kiviModel
				mk := func(s kv.Shape, rep int, p kv.Precision) (kv.Storage, error) {
					var err error
					ms, err = newKIVIModel(t, s, rep, p, prompt+steps+16)
					return ms, err
				}
				c, err := kv.New(tc.shape, spec, kv.WithStorage(mk))
				if err != nil {
					t.Fatal(err)
				}
				d := tc.shape.HeadDim
				feed := func(st model.Step) {
					if err := c.Begin(st); err != nil {
						t.Fatal(err)
					}
					n := st.Rows
					for l := range tc.shape.Layers {
						q := bf16Values(r, n*tc.shape.Heads*d, 1)
						k := bf16Values(r, n*tc.shape.KVHeads*d, 2)
						v := bf16Values(r, n*tc.shape.KVHeads*d, 1)
						c.Attend(l, compute.Host(q), compute.Host(k), compute.Host(v), compute.Host(make([]float32, n*tc.shape.Heads*d)))
					}
					c.Commit()
				}
				feedSteps(c, prompt, chunk, steps, feed)
				if ms.quantized == 0 {
					t.Fatal("no entry was quantized")
				}
				if ms.decodes == 0 {
					t.Fatal("no decode step was checked")
				}
				t.Logf("%d outputs within %.2g, %d decodes, %d score sets; up to %d quantized rows a head", ms.outputs, ms.worst, ms.decodes, ms.scoreSets, ms.quantized)
			})
		}
	}
}

// KIVI storage on the GPU against the CPU's, fed the same bf16 queries, keys and values, for 8,
// 4 and 2 bits over full attention, eviction (its Keeps cut quantized groups), the expanded
// cache, H2O, head masks and headmask+snapkv*+quant: the same Keeps until a near-tie of the
// scores, the scores within float rounding, the meter's numbers equal, the attention outputs
// within bf16 rounding (the view rounds the dequantized entries to bf16) and the GPU's bytes
// at their peak no more than the CPU's (a bf16 residual against
// float32).
func TestGPUKIVIMatchesCPU(t *testing.T) {
	g := openGPU(t)
	if !g.d.HasKernels(cuda.KIVIKernels...) {
		t.Skip("this build's PTX has no KIVI kernels: run tools/cuda-ptx.sh (tools/gpu-test.sh with REBUILD=1)")
	}
	toDev, fromDev, free := deviceIO(t, g)
	defer free()
	toHost := func(x []float32) compute.Buf { return compute.Host(x) }
	fromHost := func(b compute.Buf) []float32 { return append([]float32{}, compute.HostOf(b)...) }
	const prompt, chunk, steps = 300, 64, 24
	for _, tc := range []struct {
		shape   kv.Shape
		storage string
	}{
		{kv.Shape{Layers: 2, Heads: 8, KVHeads: 2, HeadDim: 64}, "quant:bits=8,group=32,residual=32"},
		{kv.Shape{Layers: 2, Heads: 8, KVHeads: 2, HeadDim: 64}, "quant:bits=4,group=24,residual=8"},
		{kv.Shape{Layers: 2, Heads: 16, KVHeads: 2, HeadDim: 128}, "quant:bits=4,group=32,residual=32"},
		{kv.Shape{Layers: 2, Heads: 16, KVHeads: 2, HeadDim: 128}, "quant:bits=2,group=16,residual=0"},
	} {
		for _, spec := range kiviSpecs(t, tc.shape, tc.storage) {
			name := fmt.Sprintf("d%d/%s", tc.shape.HeadDim, spec)
			if i := strings.Index(name, "masks="); i >= 0 {
				name = name[:i] + name[strings.Index(name[i:], ",")+i:]
			}
			t.Run(name, func(t *testing.T) {
				var err error
				var cpu, gpu evictionRun
				func() {
					defer Recover(&err)
					cpu = runEviction(t, tc.shape, spec, kv.HostStorage, prompt, chunk, steps, toHost, fromHost)
					gpu = runEviction(t, tc.shape, spec, g.Storage, prompt, chunk, steps, toDev, fromDev)
				}()
				if err != nil {
					t.Fatal(err)
				}
				if len(cpu.events) != len(gpu.events) {
					t.Fatalf("%d scores and Keeps on the GPU, %d on the CPU", len(gpu.events), len(cpu.events))
				}
				diverged := -1
				for i, ce := range cpu.events {
					ge := gpu.events[i]
					if ce.keep != nil {
						if diverged < 0 && !slices.Equal(ce.keep, ge.keep) {
							diverged = i
							t.Logf("event %d (layer %d head %d): a near-tie kept different entries", i, ce.layer, ce.head)
						}
						continue
					}
					if diverged >= 0 {
						continue
					}
					if len(ce.scores) != len(ge.scores) {
						t.Fatalf("event %d: %d scores on the GPU, %d on the CPU", i, len(ge.scores), len(ce.scores))
					}
					for j, c := range ce.scores {
						if diff := math.Abs(float64(ge.scores[j] - c)); diff > 1e-5+1e-2*math.Abs(float64(c)) {
							t.Fatalf("event %d (layer %d head %d) entry %d: GPU score %g, CPU %g", i, ce.layer, ce.head, j, ge.scores[j], c)
						}
					}
				}
				if cpu.meter.Footprint != gpu.meter.Footprint || cpu.meter.Peak != gpu.meter.Peak {
					t.Fatalf("meter: GPU footprint %v peak %v, CPU %v %v", gpu.meter.Footprint, gpu.meter.Peak, cpu.meter.Footprint, cpu.meter.Peak)
				}
				worst := 0.0
				for i := range cpu.outs {
					if diverged >= 0 && cpu.before[i] > diverged {
						break
					}
					rel, _ := relErr(gpu.outs[i], cpu.outs[i])
					worst = max(worst, rel)
				}
				if worst > 0.02 {
					t.Fatalf("attention outputs: relative error %.3g", worst)
				}
				if gb, cb := gpu.meter.PeakBytes, cpu.meter.PeakBytes; diverged < 0 && (gb > cb || gb <= 0) {
					t.Fatalf("the GPU's peak is %d bytes, the CPU's %d: want no more (a bf16 residual), and some", gb, cb)
				}
				t.Logf("outputs within %.2g; footprint %.4f; peak bytes GPU %d CPU %d", worst, cpu.meter.Footprint, gpu.meter.PeakBytes, cpu.meter.PeakBytes)
			})
		}
	}
}

// deviceIO returns uploads of host values to bf16 device buffers and downloads back, and a
// function freeing the buffers.
func deviceIO(t *testing.T, g *GPU) (toDev func([]float32) compute.Buf, fromDev func(compute.Buf) []float32, free func()) {
	var bufs []uint64
	toDev = func(x []float32) compute.Buf {
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
	fromDev = func(b compute.Buf) []float32 {
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
	free = func() {
		for _, p := range bufs {
			g.d.Free(cuda.Buffer{Ptr: p})
		}
	}
	return toDev, fromDev, free
}

// Heads of 0, 1, 64, 65 and 130 entries take 0, 1, 1, 2 and 3 blocks of the view, one after
// another; the tables list each head's blocks and pad with 0.
func TestKIVIViewTables(t *testing.T) {
	lens := []int{0, 1, 64, 65, 130}
	first, blocks, maxBlocks := kiviView(lens)
	if !slices.Equal(first, []int{0, 0, 1, 2, 4}) || blocks != 7 || maxBlocks != 3 {
		t.Fatalf("first blocks %v, %d blocks, at most %d a head", first, blocks, maxBlocks)
	}
	want := []int32{0, 0, 0, 0, 0, 0, 1, 0, 0, 2, 3, 0, 4, 5, 6}
	if got := viewTable(nil, first, lens, maxBlocks); !slices.Equal(got, want) {
		t.Fatalf("tables %v, want %v", got, want)
	}
	if _, blocks, maxBlocks := kiviView([]int{0, 0}); blocks != 1 || maxBlocks != 1 {
		t.Fatalf("empty heads: %d blocks, %d a head; the kernels want at least 1", blocks, maxBlocks)
	}
}
