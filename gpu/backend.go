package gpu

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/kvfoot/kvfoot/compute"
	"github.com/kvfoot/kvfoot/cuda"
	"github.com/kvfoot/kvfoot/model"
	"github.com/kvfoot/kvfoot/tensor"
)

// Headroom is device memory Upload leaves free beyond the weights: activations, the KV pool's
// first blocks and the driver's own (the JIT-loaded kernels, the context).
const Headroom = 512 << 20

// backend is the GPU's compute.Backend. Every buffer is bf16 (Elem 2); the weights are found
// by the address of their host data, so tied embeddings are uploaded once.
type backend struct {
	g       *GPU
	d       *cuda.Device
	weights map[unsafe.Pointer]cuda.Buffer // bf16 copies of matrices, norms and biases
	invFreq cuda.Buffer                    // f32, the model's rotary inverse frequencies
	invKey  *float32                       // their host data, uploaded at the first RoPETables
	half    int                            // len(invFreq)
	ints    []int32                        // RoPETables' staging
	raw     []uint16                       // Host's staging
	outs    []cuda.LinearOut               // Linear's outputs
}

// Upload copies m's weights to the GPU in bf16 (f32 matrices, norms and biases are rounded)
// and returns the backend that runs m's forward there; m.SetBackend(b) puts it to use. It
// checks first that the model's shape suits the kernels and that the weights fit, saying how
// much memory they need and how much is free.
func (g *GPU) Upload(m *model.Model) (compute.Backend, error) {
	c := &m.Config
	if err := Supports(c); err != nil {
		return nil, err
	}
	b := &backend{g: g, d: g.d, weights: map[unsafe.Pointer]cuda.Buffer{}, half: c.HeadDim / 2}
	var need uint64
	b.eachWeight(m, func(key unsafe.Pointer, n int, _ func() []uint16) {
		if _, seen := b.weights[key]; !seen {
			b.weights[key] = cuda.Buffer{} // counted once
			need += uint64(n) * 2
		}
	})
	clear(b.weights)
	free, total, err := g.d.MemInfo()
	if err != nil {
		return nil, err
	}
	if need+Headroom > free {
		return nil, fmt.Errorf("%s: the model's weights need %s in bf16 (plus %s of working memory); the GPU has %s free of %s",
			g.Name(), gib(need), gib(Headroom), gib(free), gib(total))
	}
	var upErr error
	b.eachWeight(m, func(key unsafe.Pointer, n int, bf16 func() []uint16) {
		if _, seen := b.weights[key]; seen || upErr != nil {
			return
		}
		buf, err := g.d.Alloc(int64(n) * 2)
		if err == nil {
			err = cuda.Upload(g.d, buf, bf16())
		}
		b.weights[key], upErr = buf, err
	})
	if upErr == nil {
		b.invFreq, upErr = g.d.Alloc(int64(b.half) * 4)
	}
	if upErr != nil {
		b.free()
		return nil, fmt.Errorf("%s: uploading the weights: %w", g.Name(), upErr)
	}
	return b, nil
}

// Supports says whether the kernels take a model of config c: head dimension 64 or 128, up to
// 8 query heads per KV head, and every matrix dimension a multiple of 8 (16-byte rows).
func Supports(c *model.Config) error {
	if c.HeadDim != 64 && c.HeadDim != 128 {
		return fmt.Errorf("gpu: head dimension %d; the attention kernels take 64 or 128", c.HeadDim)
	}
	if c.Heads%c.KVHeads != 0 || c.Heads/c.KVHeads > 8 {
		return fmt.Errorf("gpu: %d query heads over %d KV heads; the decode kernel takes up to 8 per KV head", c.Heads, c.KVHeads)
	}
	switch {
	case c.Gemma || c.AttnSoftCap != 0 || c.FinalSoftCap != 0:
		return fmt.Errorf("gpu: %s: Gemma's GeGLU, scaled embeddings and soft caps have no GPU kernels yet; run it with --device cpu", c.Arch)
	case c.QKNorm:
		return fmt.Errorf("gpu: %s: per-head q/k norms are not tested on the GPU yet; run it with --device cpu", c.Arch)
	case len(c.Window) > 0:
		return fmt.Errorf("gpu: %s: the GPU's attention has no sliding windows yet; run it with --device cpu", c.Arch)
	case c.AttnScale != 0 && math.Abs(float64(c.AttnScale)-1/math.Sqrt(float64(c.HeadDim))) > 1e-6:
		return fmt.Errorf("gpu: %s: an attention scale other than 1/√head_dim has no GPU kernel yet; run it with --device cpu", c.Arch)
	}
	for _, d := range []struct {
		name string
		n    int
	}{{"hidden_size", c.Hidden}, {"intermediate_size", c.Intermediate}, {"vocab_size", c.Vocab}} {
		if d.n%8 != 0 {
			return fmt.Errorf("gpu: %s %d is not a multiple of 8, which the GPU kernels need", d.name, d.n)
		}
	}
	return nil
}

// eachWeight calls f with every weight of m: its key (the address of its host data), its
// number of values and a function returning its values in bf16.
func (b *backend) eachWeight(m *model.Model, f func(key unsafe.Pointer, n int, bf16 func() []uint16)) {
	mat := func(w *tensor.Mat) {
		switch w.Type() {
		case tensor.BF16:
			f(unsafe.Pointer(&w.BF16[0]), len(w.BF16), func() []uint16 { return w.BF16 })
			return
		case tensor.Blocked: // a GGUF's quantized blocks, widened on the way up
			f(unsafe.Pointer(&w.Blocks[0]), w.Rows*w.Cols, func() []uint16 { return toBF16(w.Float32s()) })
			return
		}
		f(unsafe.Pointer(&w.F32[0]), len(w.F32), func() []uint16 { return toBF16(w.F32) })
	}
	vec := func(v []float32) {
		if v != nil {
			f(unsafe.Pointer(&v[0]), len(v), func() []uint16 { return toBF16(v) })
		}
	}
	mat(&m.Embed)
	mat(&m.Head)
	vec(m.Norm)
	for i := range m.Layers {
		L := &m.Layers[i]
		vec(L.AttnNorm)
		vec(L.MLPNorm)
		for _, l := range []*model.Linear{&L.Q, &L.K, &L.V, &L.O, &L.Gate, &L.Up, &L.Down} {
			mat(&l.W)
			vec(l.Bias)
		}
	}
}

func toBF16(v []float32) []uint16 {
	h := make([]uint16, len(v))
	for i, f := range v {
		h[i] = tensor.FloatToBF16(f)
	}
	return h
}

func (b *backend) free() {
	for _, w := range b.weights {
		b.d.Free(w)
	}
	b.d.Free(b.invFreq)
}

func (b *backend) weight(key unsafe.Pointer, what string) cuda.Buffer {
	w, ok := b.weights[key]
	if !ok {
		panic(Fault{fmt.Errorf("%s is not on %s: a model the backend was not uploaded from", what, b.g.Name())})
	}
	return w
}

func (b *backend) mat(w *tensor.Mat) cuda.Buffer {
	switch w.Type() {
	case tensor.BF16:
		return b.weight(unsafe.Pointer(&w.BF16[0]), "a weight matrix")
	case tensor.Blocked:
		return b.weight(unsafe.Pointer(&w.Blocks[0]), "a weight matrix")
	}
	return b.weight(unsafe.Pointer(&w.F32[0]), "a weight matrix")
}

func (b *backend) vec(v []float32) cuda.Buffer {
	if v == nil {
		return cuda.Buffer{}
	}
	return b.weight(unsafe.Pointer(&v[0]), "a norm or bias vector")
}

// dev is the device span of a buffer of this backend.
func dev(x compute.Buf) cuda.Buffer {
	if x.Elem != 2 {
		panic(Fault{fmt.Errorf("a buffer of %d-byte values where the GPU's bf16 activations were expected", x.Elem)})
	}
	return cuda.Buffer{Ptr: x.Dev, Bytes: int64(x.N) * 2}
}

func (b *backend) Name() string { return b.g.Name() }

func (b *backend) Alloc(n int) compute.Buf {
	buf, err := b.d.Alloc(int64(max(n, 8)) * 2)
	check(err)
	return compute.Buf{Dev: buf.Ptr, N: n, Elem: 2}
}

// Free returns a buffer of Alloc (compute.Freer): a runner's activations are device memory
// that the garbage collector does not see. A kernel still queued may use the buffer, so
// the queue is waited for first (as the storage's Close does).
func (b *backend) Free(x compute.Buf) error {
	syncErr := b.d.Sync()
	if err := b.d.Free(dev(x)); err != nil {
		return err
	}
	return syncErr
}

func (b *backend) Embed(dst compute.Buf, e *tensor.Mat, ids []int) {
	b.ints = b.ints[:0]
	for _, id := range ids {
		b.ints = append(b.ints, int32(id))
	}
	check(b.d.Embedding(dev(dst), b.mat(e), e.Rows, e.Cols, b.ints))
}

func (b *backend) RMSNorm(dst, x compute.Buf, w []float32, eps float32, rows int) {
	check(b.d.RMSNorm(dev(dst), dev(x), b.vec(w), rows, len(w), eps))
}

func (b *backend) Linear(x compute.Buf, rows int, outs ...compute.Out) {
	b.outs = b.outs[:0]
	for _, o := range outs {
		b.outs = append(b.outs, cuda.LinearOut{Out: dev(o.Dst), W: b.mat(o.W), Bias: b.vec(o.Bias), N: o.W.Rows})
	}
	check(b.d.Linears(dev(x), rows, outs[0].W.Cols, b.outs...))
}

// RoPETables writes the positions, not their cosines and sines: the rope kernel computes the
// angles itself from the inverse frequencies uploaded with the weights. Row r's position is
// the int32 at the start of its row of cos (a row of head_dim/2 bf16 values holds it), so that
// a batch's sequences each fill their own rows.
func (b *backend) RoPETables(cos, _ compute.Buf, invFreq []float32, pos, rows int) {
	if len(invFreq) != b.half {
		panic(Fault{fmt.Errorf("rotary tables of %d frequencies for a model of %d", len(invFreq), b.half)})
	}
	if b.invKey != &invFreq[0] {
		check(cuda.Upload(b.d, b.invFreq, invFreq))
		b.invKey = &invFreq[0]
	}
	stride := b.half / 2 // int32s per row
	b.ints = b.ints[:0]
	for r := range rows {
		b.ints = append(b.ints, int32(pos+r))
		for range stride - 1 {
			b.ints = append(b.ints, 0)
		}
	}
	check(b.d.UploadInts(dev(cos), b.ints))
}

func (b *backend) RoPE(x compute.Buf, rows, heads int, cos, _ compute.Buf) {
	check(b.d.RoPE(dev(x), dev(cos), b.half/2, b.invFreq, rows, heads, 2*b.half, 1))
}

func (b *backend) SwiGLU(gate, up compute.Buf) {
	check(b.d.SwiGLU(dev(gate), dev(gate), dev(up), gate.N))
}

func (b *backend) Add(dst, x compute.Buf) { check(b.d.Add(dev(dst), dev(dst), dev(x), dst.N)) }

// GeGLU, Scale and SoftCap are Gemma's; Supports refuses Gemma models at upload, so a
// call means a model that was not checked.
func (b *backend) GeGLU(compute.Buf, compute.Buf) { b.unsupported("GeGLU") }
func (b *backend) Scale(compute.Buf, float32)     { b.unsupported("Scale") }
func (b *backend) SoftCap(compute.Buf, float32)   { b.unsupported("SoftCap") }
func (b *backend) unsupported(op string) {
	panic(Fault{fmt.Errorf("%s has no GPU kernel yet (Gemma models run on the CPU)", op)})
}

func (b *backend) Host(x compute.Buf, dst []float32) []float32 {
	if cap(b.raw) < x.N {
		b.raw = make([]uint16, x.N)
	}
	raw := b.raw[:x.N]
	check(cuda.Download(b.d, raw, dev(x)))
	if cap(dst) < x.N {
		dst = make([]float32, x.N)
	}
	dst = dst[:x.N]
	for i, h := range raw {
		dst[i] = math.Float32frombits(uint32(h) << 16)
	}
	return dst
}

// Share returns a backend that runs, on g's stream, the model whose weights b holds: b is a
// backend another handle (Open) on the same GPU uploaded, and every handle of a GPU shares
// its primary context, so the weights are not copied. A study's workers each have a handle,
// so each has its own stream and launch lock and their kernels run at once. b's handle must
// stay open while the new backend is in use.
func (g *GPU) Share(b compute.Backend) (compute.Backend, error) {
	o, ok := b.(*backend)
	switch {
	case !ok:
		return nil, fmt.Errorf("%s: the backend to share is not a GPU's", g.Name())
	case o.g.ordinal != g.ordinal:
		return nil, fmt.Errorf("%s: the weights to share are on %s", g.Name(), o.g.Name())
	}
	if err := o.d.Sync(); err != nil { // its uploads have landed before g's stream reads them
		return nil, err
	}
	inv, err := g.d.Alloc(int64(o.half) * 4)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", g.Name(), err)
	}
	return &backend{g: g, d: g.d, weights: o.weights, invFreq: inv, half: o.half}, nil
}
