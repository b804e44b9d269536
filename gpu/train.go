package gpu

import (
	"fmt"
	"math"

	"github.com/kvfoot/kvfoot/cuda"
	"github.com/kvfoot/kvfoot/model"
	"github.com/kvfoot/kvfoot/tensor"
	"github.com/kvfoot/kvfoot/train"
)

// Net is train.Net's twin on the GPU, for mask training (a train.Network): the gradient of a
// loss with respect to the gates of a Llama-family model, op for op as the CPU's, in bf16
// with f32 accumulation (the inference backend's precision; gates, their gradients, the
// losses, log-sum-exps and the residual stream's gradient are f32). Weights are frozen: no
// weight gradient is ever made, so each matrix is held twice in bf16, as stored and
// transposed (dX = dY·W is a Linear through Wᵀ). Forward keeps every layer's input (bf16);
// Backward recomputes each layer from it and walks it back. The host sees only the ids,
// the gates, the losses, dLoss/dz and, when asked for, the last hidden states.
//
// Methods return errors; a Net whose device failed keeps returning the first failure.
type Net struct {
	d           trainKernels
	cfg         model.Config
	opts        train.Options
	fingerprint string
	ceRows      int // rows of logits CrossEntropy holds at once

	layers              []trainLayer
	embed, head, headT  cuda.Buffer
	norm                cuda.Buffer
	invFreq, negInvFreq cuda.Buffer // f32; the negated frequencies rotate back (RoPE's backward)
	positions           cuda.Buffer // int32 0 … MaxLen−1
	bufs                []cuda.Buffer

	xs                                  []cuda.Buffer // the residual stream entering each layer, and leaving the last
	hidden, dhid                        cuda.Buffer   // final norm output and its gradient
	xb, q, k, v, afull, astream, att, h cuda.Buffer   // one layer's activations, recomputed by Backward
	xb2, gate, up, act                  cuda.Buffer
	lseFull, lseStream                  cuda.Buffer // f32 [heads][n]
	dres                                cuda.Buffer // f32 [n][hidden]
	dresBF, dx, tmp                     cuda.Buffer
	datt, dfull, dstream, dq, dk, dv    cuda.Buffer
	dqStream, dkStream, dvStream, dact  cuda.Buffer
	work                                cuda.Buffer // AttentionBandBackward's
	logits, rowLoss, targets, rows, tgt cuda.Buffer // the losses'
	z, dz                               cuda.Buffer // f32 [layers][KV heads]

	n        int  // tokens of the last Forward
	gated    bool // the last Forward had gates
	hasLoss  bool // a loss of the last Forward set dhid
	hostHid  bool // hostHidden holds the last Forward's hidden states
	failed   error
	gateGrad []float64
	// host staging
	hostHidden, lossHost, dzHost []float32
	raw                          []uint16
	ints                         []int32
}

// trainKernels are the device's operations a Net uses: *cuda.Device's (cudaKernels). They
// are an interface so that the Net's own part (shapes, transposes, the order of the ops) is
// tested without a GPU, against train.Net, on an emulation of the kernels
// (train_emu_test.go).
type trainKernels interface {
	MemInfo() (free, total uint64, err error)
	Alloc(bytes int64) (cuda.Buffer, error)
	Free(b cuda.Buffer) error
	Memset(b cuda.Buffer, v byte) error
	Sync() error
	UploadInts(dst cuda.Buffer, v []int32) error
	uploadBF16(dst cuda.Buffer, v []uint16) error
	uploadF32(dst cuda.Buffer, v []float32) error
	downloadBF16(dst []uint16, src cuda.Buffer) error
	downloadF32(dst []float32, src cuda.Buffer) error

	Embedding(out, table cuda.Buffer, vocab, dim int, ids []int32) error
	RMSNorm(out, x, weight cuda.Buffer, rows, dim int, eps float32) error
	Linear(out, x, w, bias cuda.Buffer, m, n, k int) error
	Linears(x cuda.Buffer, m, k int, outs ...cuda.LinearOut) error
	RoPE(x, positions cuda.Buffer, posStride int, invFreq cuda.Buffer, tokens, heads, dim int, scale float32) error
	SwiGLU(out, gate, up cuda.Buffer, count int) error
	Add(out, a, b cuda.Buffer, count int) error
	AttentionBand(out, lse, q, k, v cuda.Buffer, s cuda.BandShape) error
	AttentionBandBackward(dq, dk, dv, dout, out, lse, q, k, v cuda.Buffer, s cuda.BandShape, work cuda.Buffer) error
	MixHeads(att, full, stream, z cuda.Buffer, n, qHeads, kvHeads, dim int) error
	MixHeadsBackward(dfull, dstream, dz, datt, full, stream, z cuda.Buffer, n, qHeads, kvHeads, dim int) error
	RMSNormBackward(dres, x, weight, dy cuda.Buffer, rows, dim int, eps float32) error
	SwiGLUBackward(dgate, dup, dact, gate, up cuda.Buffer, count int) error
	CrossEntropy(dlogits, loss, logits, targets cuda.Buffer, rows, vocab int, scale float32) error
	SquaredError(dh, loss, h, t, rows cuda.Buffer, count, dim int, g float32) error
	ToBF16(dst, src cuda.Buffer, count int) error
}

// cudaKernels are a GPU's trainKernels.
type cudaKernels struct{ *cuda.Device }

func (d cudaKernels) uploadBF16(dst cuda.Buffer, v []uint16) error {
	return cuda.Upload(d.Device, dst, v)
}
func (d cudaKernels) uploadF32(dst cuda.Buffer, v []float32) error {
	return cuda.Upload(d.Device, dst, v)
}
func (d cudaKernels) downloadBF16(dst []uint16, src cuda.Buffer) error {
	return cuda.Download(d.Device, dst, src)
}
func (d cudaKernels) downloadF32(dst []float32, src cuda.Buffer) error {
	return cuda.Download(d.Device, dst, src)
}

// trainLayer is one block's weights on the device.
type trainLayer struct {
	attnNorm, mlpNorm          cuda.Buffer
	q, k, v, o, gate, up, down trainLinear
}

// trainLinear is a frozen Linear: W [out][in], its transpose [in][out] and the bias.
type trainLinear struct{ w, wT, bias cuda.Buffer }

var _ train.Network = (*Net)(nil)

// TrainSupports says whether NewNet takes a model of config c with opts: the inference
// kernels' models (Supports: Llama, Mistral, Qwen2; no q/k norms, no Gemma, no sliding
// windows) and mask training only (weight gradients are the CPU's).
func TrainSupports(c *model.Config, opts train.Options) error {
	if opts.WeightGrads {
		return fmt.Errorf("gpu: weight training (--train-weights) runs on the CPU only; the GPU trains masks (use --device cpu)")
	}
	if err := Supports(c); err != nil {
		return err
	}
	switch {
	case opts.MaxLen < 2:
		return fmt.Errorf("gpu: MaxLen %d: need at least 2 tokens", opts.MaxLen)
	case c.MaxPositions > 0 && opts.MaxLen > c.MaxPositions:
		return fmt.Errorf("gpu: sequence length %d is longer than the model's context (max_position_embeddings %d)", opts.MaxLen, c.MaxPositions)
	case opts.Window < 1 || opts.Sink < 0:
		return fmt.Errorf("gpu: streaming attention needs window ≥ 1 and sink ≥ 0; have sink %d, window %d", opts.Sink, opts.Window)
	}
	return nil
}

// ceRowsFor is how many rows of logits a loss holds at once: 256 MiB of bf16 logits (the
// whole sequence of a small vocabulary; about 1000 rows of Llama 3's 128K).
func ceRowsFor(vocab, maxLen int) int { return min(maxLen, max(64, (256<<20)/(2*vocab))) }

// TrainBytes is the device memory NewNet allocates for a model of config c and sequences of
// up to maxLen tokens: the weights (every matrix as stored and transposed, bf16; a tied
// embedding once plus its transpose) and the activations.
func TrainBytes(c *model.Config, maxLen int) (weights, activations int64) {
	T, H, F, V := int64(maxLen), int64(c.Hidden), int64(c.Intermediate), int64(c.Vocab)
	qd, kvd := int64(c.Heads*c.HeadDim), int64(c.KVHeads*c.HeadDim)
	const bf, f32 = 2, 4
	perLayer := 2 * (H*qd + 2*H*kvd + qd*H + 3*H*F) // as stored and transposed
	perLayer += 2 * H                               // norms
	if c.QKVBias {
		perLayer += qd + 2*kvd
	}
	if c.OBias {
		perLayer += H
	}
	if c.MLPBias {
		perLayer += 2*F + H
	}
	embed := V * H
	if !c.TieEmbeddings {
		embed *= 2 // the head
	}
	weights = bf*(int64(c.Layers)*perLayer+embed+V*H+H) + 2*f32*int64(c.HeadDim/2) + 4*T // + the head's transpose, final norm, frequencies, positions
	acts := (int64(c.Layers)+1)*T*H + 2*T*H                                              // xs, hidden, dhid
	acts += 3*T*H + 4*T*qd + 2*T*kvd + 3*T*F                                             // xb, h, xb2; q, afull, astream, att; k, v; gate, up, act
	acts += 3*T*H + 5*T*qd + 4*T*kvd + T*F                                               // dresBF, dx, tmp; datt, dfull, dstream, dq, dqStream; dk, dv, dkStream, dvStream; dact
	activations = bf * acts
	activations += f32 * (2*int64(c.Heads)*T + T*H + 2*int64(c.Layers*c.KVHeads)) // lse ×2, dres, z, dz
	activations += cuda.AttentionBandWorkBytes(bandShape(c, maxLen, 0, 0))
	activations += bf*int64(ceRowsFor(c.Vocab, maxLen))*V + f32*(3*T+T*H) // logits; row losses, targets, rows; the MSE's target
	return weights, activations
}

func bandShape(c *model.Config, n, sink, window int) cuda.BandShape {
	return cuda.BandShape{N: n, QHeads: c.Heads, KVHeads: c.KVHeads, Dim: c.HeadDim, Sink: sink, Window: window,
		Scale: float32(1 / math.Sqrt(float64(c.HeadDim)))}
}

// NewNet uploads m's weights for mask training on sequences of up to opts.MaxLen tokens
// with streaming heads of opts.Sink and opts.Window, after checking that the model is
// supported (TrainSupports) and that weights and activations fit in the free memory.
// Close frees it; the GPU stays open.
func (g *GPU) NewNet(m *model.Model, opts train.Options) (*Net, error) {
	return newNet(g.Name(), cudaKernels{g.d}, m, opts)
}

func newNet(name string, d trainKernels, m *model.Model, opts train.Options) (n *Net, err error) {
	c := &m.Config
	if err := TrainSupports(c, opts); err != nil {
		return nil, err
	}
	weights, acts := TrainBytes(c, opts.MaxLen)
	free, total, err := d.MemInfo()
	if err != nil {
		return nil, err
	}
	if uint64(weights+acts)+Headroom > free {
		return nil, fmt.Errorf("%s: mask training of %d-token sequences needs %s: the weights as stored and transposed in bf16 %s, activations %s (plus %s of working memory); the GPU has %s free of %s; lower --seq-len",
			name, opts.MaxLen, gib(uint64(weights+acts)), gib(uint64(weights)), gib(uint64(acts)), gib(Headroom), gib(free), gib(total))
	}
	n = &Net{d: d, cfg: *c, opts: opts, fingerprint: train.ModelFingerprint(m), ceRows: ceRowsFor(c.Vocab, opts.MaxLen),
		gateGrad: make([]float64, c.Layers*c.KVHeads)}
	defer func() {
		if err != nil {
			n.Close()
			n, err = nil, fmt.Errorf("%s: setting up mask training: %w", name, err)
		}
	}()
	defer Recover(&err)
	n.uploadWeights(m)
	n.allocActivations()
	return n, nil
}

// alloc allocates device memory that Close frees.
func (n *Net) alloc(bytes int64) cuda.Buffer {
	b, err := n.d.Alloc(bytes)
	check(err)
	n.bufs = append(n.bufs, b)
	return b
}

// uploadBF16 and uploadF32 copy v to new device memory (none for no values).
func (n *Net) uploadBF16(v []uint16) cuda.Buffer {
	if len(v) == 0 {
		return cuda.Buffer{}
	}
	b := n.alloc(int64(len(v)) * 2)
	check(n.d.uploadBF16(b, v))
	return b
}

func (n *Net) uploadF32(v []float32) cuda.Buffer {
	b := n.alloc(int64(len(v)) * 4)
	check(n.d.uploadF32(b, v))
	return b
}

func (n *Net) uploadWeights(m *model.Model) {
	c := &n.cfg
	vec := func(v []float32) cuda.Buffer { return n.uploadBF16(toBF16(v)) }
	lin := func(l *model.Linear) trainLinear {
		return trainLinear{w: n.uploadBF16(matBF16(&l.W)), wT: n.uploadBF16(transposedBF16(&l.W)), bias: vec(l.Bias)}
	}
	n.embed = n.uploadBF16(matBF16(&m.Embed))
	head := &m.Embed
	n.head = n.embed
	if !c.TieEmbeddings {
		head = &m.Head
		n.head = n.uploadBF16(matBF16(head))
	}
	n.headT = n.uploadBF16(transposedBF16(head))
	n.norm = vec(m.Norm)
	n.layers = make([]trainLayer, c.Layers)
	for i := range m.Layers {
		L := &m.Layers[i]
		n.layers[i] = trainLayer{attnNorm: vec(L.AttnNorm), mlpNorm: vec(L.MLPNorm),
			q: lin(&L.Q), k: lin(&L.K), v: lin(&L.V), o: lin(&L.O), gate: lin(&L.Gate), up: lin(&L.Up), down: lin(&L.Down)}
	}
	inv := c.Rope.InvFreq(c.HeadDim)
	neg := make([]float32, len(inv))
	for i, f := range inv {
		neg[i] = -f
	}
	n.invFreq, n.negInvFreq = n.uploadF32(inv), n.uploadF32(neg)
	pos := make([]int32, n.opts.MaxLen)
	for i := range pos {
		pos[i] = int32(i)
	}
	n.positions = n.alloc(4 * int64(len(pos)))
	check(n.d.UploadInts(n.positions, pos))
}

func (n *Net) allocActivations() {
	c := &n.cfg
	T, H, F, V := int64(n.opts.MaxLen), int64(c.Hidden), int64(c.Intermediate), int64(c.Vocab)
	qd, kvd := int64(c.Heads*c.HeadDim), int64(c.KVHeads*c.HeadDim)
	bf := func(count int64) cuda.Buffer { return n.alloc(2 * count) }
	f32 := func(count int64) cuda.Buffer { return n.alloc(4 * count) }
	n.xs = make([]cuda.Buffer, c.Layers+1)
	for i := range n.xs {
		n.xs[i] = bf(T * H)
	}
	n.hidden, n.dhid = bf(T*H), bf(T*H)
	n.xb, n.h, n.xb2 = bf(T*H), bf(T*H), bf(T*H)
	n.q, n.afull, n.astream, n.att = bf(T*qd), bf(T*qd), bf(T*qd), bf(T*qd)
	n.k, n.v = bf(T*kvd), bf(T*kvd)
	n.gate, n.up, n.act = bf(T*F), bf(T*F), bf(T*F)
	n.dresBF, n.dx, n.tmp = bf(T*H), bf(T*H), bf(T*H)
	n.datt, n.dfull, n.dstream, n.dq, n.dqStream = bf(T*qd), bf(T*qd), bf(T*qd), bf(T*qd), bf(T*qd)
	n.dk, n.dv, n.dkStream, n.dvStream = bf(T*kvd), bf(T*kvd), bf(T*kvd), bf(T*kvd)
	n.dact = bf(T * F)
	n.lseFull, n.lseStream = f32(int64(c.Heads)*T), f32(int64(c.Heads)*T)
	n.dres = f32(T * H)
	n.z, n.dz = f32(int64(c.Layers*c.KVHeads)), f32(int64(c.Layers*c.KVHeads))
	n.work = n.alloc(max(8, cuda.AttentionBandWorkBytes(bandShape(c, n.opts.MaxLen, 0, 0))))
	n.logits = bf(int64(n.ceRows) * V)
	n.rowLoss, n.targets, n.rows = f32(T), n.alloc(4*T), n.alloc(4*T)
	n.tgt = f32(T * H)
}

// Close frees the Net's device memory (after the queued work); the GPU stays open.
func (n *Net) Close() error {
	err := n.d.Sync()
	for _, b := range n.bufs {
		if e := n.d.Free(b); err == nil {
			err = e
		}
	}
	n.bufs = nil
	if n.failed == nil {
		n.failed = fmt.Errorf("gpu: the training network is closed")
	}
	return err
}

// matBF16 is w's values in bf16 (w's own storage when it is bf16).
func matBF16(w *tensor.Mat) []uint16 {
	if w.Type() == tensor.BF16 {
		return w.BF16
	}
	return toBF16(w.Float32s())
}

// transposedBF16 is wᵀ [cols][rows] in bf16, read a tile of rows at a time so that the
// writes run along rows of the transpose.
func transposedBF16(w *tensor.Mat) []uint16 {
	R, C := w.Rows, w.Cols
	t := make([]uint16, R*C)
	const tile = 64
	rows := make([]float32, tile*C)
	for i0 := 0; i0 < R; i0 += tile {
		i1 := min(i0+tile, R)
		for i := i0; i < i1; i++ {
			w.Row(rows[(i-i0)*C:(i-i0+1)*C], i)
		}
		for j := range C {
			dst := t[j*R+i0 : j*R+i1]
			for r := range dst {
				dst[r] = tensor.FloatToBF16(rows[r*C+j])
			}
		}
	}
	return t
}

// ModelConfig is the model's configuration (train.Network).
func (n *Net) ModelConfig() *model.Config { return &n.cfg }

// Local is false: TrainSupports refuses sliding-window layers.
func (n *Net) Local(int) bool { return false }

// Fingerprint is the model's, as a train.Net of it has (train.ModelFingerprint).
func (n *Net) Fingerprint() string { return n.fingerprint }

// GateGrads is dLoss/dz per (layer, KV head), layer-major, accumulated by Backward.
func (n *Net) GateGrads() []float64 { return n.gateGrad }

// rowsOf is rows [r0, r0+count) of a buffer of rows of rowBytes.
func rowsOf(b cuda.Buffer, r0, count, rowBytes int) cuda.Buffer {
	s, err := b.Slice(int64(r0)*int64(rowBytes), int64(count)*int64(rowBytes))
	check(err)
	return s
}

// gatesOf is layer l's part of a [layers][KV heads] f32 buffer.
func (n *Net) gatesOf(b cuda.Buffer, l int) cuda.Buffer {
	return rowsOf(b, l, 1, 4*n.cfg.KVHeads)
}

// Forward runs the model over ids (positions 0…len(ids)−1) with gates (one z ∈ [0, 1] per
// layer and KV head, layer-major; nil: full attention), as train.Net.Forward.
func (n *Net) Forward(ids []int, gates []float32) (err error) {
	c := &n.cfg
	if n.failed != nil {
		return n.failed
	}
	if len(ids) < 1 || len(ids) > n.opts.MaxLen {
		return fmt.Errorf("gpu: sequence of %d tokens; this Net takes 1 to %d", len(ids), n.opts.MaxLen)
	}
	n.ints = n.ints[:0]
	for i, id := range ids {
		if id < 0 || id >= c.Vocab {
			return fmt.Errorf("gpu: token id %d at position %d is outside the vocabulary [0, %d)", id, i, c.Vocab)
		}
		n.ints = append(n.ints, int32(id))
	}
	if gates != nil {
		if len(gates) != c.Layers*c.KVHeads {
			return fmt.Errorf("gpu: %d gates, want one per layer and KV head (%d)", len(gates), c.Layers*c.KVHeads)
		}
		for i, z := range gates {
			if !(z >= 0 && z <= 1) {
				return fmt.Errorf("gpu: gate %d (layer %d, KV head %d) is %v, outside [0, 1]", i, i/c.KVHeads, i%c.KVHeads, z)
			}
		}
	}
	defer n.fail(&err)
	n.n, n.gated, n.hasLoss, n.hostHid = len(ids), gates != nil, false, false
	if n.gated {
		check(n.d.uploadF32(n.z, gates))
	}
	check(n.d.Embedding(n.xs[0], n.embed, c.Vocab, c.Hidden, n.ints))
	for l := range c.Layers {
		n.layerForward(l, n.xs[l], n.xs[l+1])
	}
	check(n.d.RMSNorm(n.hidden, n.xs[c.Layers], n.norm, n.n, c.Hidden, c.NormEps))
	return nil
}

// fail, deferred, turns a Fault into *err and keeps it: a device that failed once is not
// trusted with the next step.
func (n *Net) fail(err *error) {
	r := recover()
	if r == nil {
		return
	}
	f, ok := r.(Fault)
	if !ok {
		panic(r)
	}
	*err, n.failed = f, f
}

// layerForward runs block l on x, leaving its activations in the Net's buffers;
// out = x + attention + MLP when out is not the zero Buffer.
func (n *Net) layerForward(l int, x, out cuda.Buffer) {
	c, L, d := &n.cfg, &n.layers[l], n.d
	T, H, F := n.n, c.Hidden, c.Intermediate
	qd, kvd := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	// attention: h = x + O · mix(attend(rope(Q·norm(x)), rope(K·norm(x)), V·norm(x)))
	check(d.RMSNorm(n.xb, x, L.attnNorm, T, H, c.NormEps))
	check(d.Linears(n.xb, T, H, cuda.LinearOut{Out: n.q, W: L.q.w, Bias: L.q.bias, N: qd},
		cuda.LinearOut{Out: n.k, W: L.k.w, Bias: L.k.bias, N: kvd}, cuda.LinearOut{Out: n.v, W: L.v.w, Bias: L.v.bias, N: kvd}))
	check(d.RoPE(n.q, n.positions, 1, n.invFreq, T, c.Heads, c.HeadDim, 1))
	check(d.RoPE(n.k, n.positions, 1, n.invFreq, T, c.KVHeads, c.HeadDim, 1))
	check(d.AttentionBand(n.afull, n.lseFull, n.q, n.k, n.v, bandShape(c, T, 0, 0)))
	att := n.afull
	if n.gated {
		check(d.AttentionBand(n.astream, n.lseStream, n.q, n.k, n.v, bandShape(c, T, n.opts.Sink, n.opts.Window)))
		check(d.MixHeads(n.att, n.afull, n.astream, n.gatesOf(n.z, l), T, c.Heads, c.KVHeads, c.HeadDim))
		att = n.att
	}
	check(d.Linear(n.h, att, L.o.w, L.o.bias, T, H, qd))
	check(d.Add(n.h, n.h, x, T*H))
	// MLP: out = h + Down · (silu(Gate·norm(h)) ⊙ Up·norm(h))
	check(d.RMSNorm(n.xb2, n.h, L.mlpNorm, T, H, c.NormEps))
	check(d.Linears(n.xb2, T, H, cuda.LinearOut{Out: n.gate, W: L.gate.w, Bias: L.gate.bias, N: F},
		cuda.LinearOut{Out: n.up, W: L.up.w, Bias: L.up.bias, N: F}))
	check(d.SwiGLU(n.act, n.gate, n.up, T*F))
	if out.Ptr == 0 {
		return
	}
	check(d.Linear(out, n.act, L.down.w, L.down.bias, T, H, F))
	check(d.Add(out, out, n.h, T*H))
}

// ready checks that a loss may follow.
func (n *Net) ready() error {
	switch {
	case n.failed != nil:
		return n.failed
	case n.n == 0:
		return fmt.Errorf("gpu: a loss needs a Forward first")
	case n.hasLoss:
		// dhid is set, not added to, by the kernels: one loss per Forward
		return fmt.Errorf("gpu: the last Forward already has a loss; the GPU network takes one loss per Forward")
	}
	return nil
}

// CrossEntropy is the next-token loss of the last Forward, as train.Net.CrossEntropy: the
// mean over labelled positions (targets[i] ≥ 0; −1 for none) of −log softmax(Head·hidden_i)
// [targets[i]], its gradient scaled by scale; logits are made ceRows rows at a time.
func (n *Net) CrossEntropy(targets []int, scale float32) (loss float64, count int, err error) {
	if err := n.ready(); err != nil {
		return 0, 0, err
	}
	c := &n.cfg
	T, H, V := n.n, c.Hidden, c.Vocab
	if len(targets) != T {
		return 0, 0, fmt.Errorf("gpu: %d targets for %d tokens", len(targets), T)
	}
	n.ints = n.ints[:0]
	for i, t := range targets {
		if t >= V {
			return 0, 0, fmt.Errorf("gpu: target %d at position %d is outside the vocabulary [0, %d)", t, i, V)
		}
		if t >= 0 {
			count++
		}
		n.ints = append(n.ints, int32(max(t, -1)))
	}
	if count == 0 {
		return 0, 0, fmt.Errorf("gpu: no labelled position among %d", T)
	}
	defer n.fail(&err)
	d := n.d
	check(d.UploadInts(n.targets, n.ints))
	g := scale / float32(count)
	for b0 := 0; b0 < T; b0 += n.ceRows {
		m := min(n.ceRows, T-b0)
		check(d.Linear(n.logits, rowsOf(n.hidden, b0, m, 2*H), n.head, cuda.Buffer{}, m, V, H))
		check(d.CrossEntropy(n.logits, rowsOf(n.rowLoss, b0, m, 4), n.logits, rowsOf(n.targets, b0, m, 4), m, V, g))
		// the logits now hold dLoss/dlogits: dhidden = dlogits · Head
		check(d.Linear(rowsOf(n.dhid, b0, m, 2*H), n.logits, n.headT, cuda.Buffer{}, m, H, V))
	}
	n.lossHost = grow(n.lossHost, T)
	check(d.downloadF32(n.lossHost, n.rowLoss))
	var total float64
	for _, l := range n.lossHost {
		total += float64(l)
	}
	n.hasLoss = true
	return total / float64(count), count, nil
}

// HiddenMSE is DuoAttention's distillation loss on the last Forward, as
// train.Net.HiddenMSE: for the rows listed (each once), the squared distance between the
// final hidden state and target's row, averaged over the hidden dimension and the rows.
func (n *Net) HiddenMSE(target []float32, rows []int, scale float32) (loss float64, err error) {
	if err := n.ready(); err != nil {
		return 0, err
	}
	T, H := n.n, n.cfg.Hidden
	if len(target) < T*H {
		return 0, fmt.Errorf("gpu: target holds %d values, want %d (%d rows of %d)", len(target), T*H, T, H)
	}
	if len(rows) == 0 {
		return 0, fmt.Errorf("gpu: no rows to compare")
	}
	seen := make(map[int]bool, len(rows))
	n.ints = n.ints[:0]
	for _, i := range rows {
		if i < 0 || i >= T {
			return 0, fmt.Errorf("gpu: row %d outside the sequence of %d", i, T)
		}
		if seen[i] {
			return 0, fmt.Errorf("gpu: row %d is listed twice; the GPU's loss takes each row once", i)
		}
		seen[i] = true
		n.ints = append(n.ints, int32(i))
	}
	defer n.fail(&err)
	d := n.d
	check(d.Memset(n.dhid, 0)) // the rows not listed have no gradient
	check(d.uploadF32(n.tgt, target[:T*H]))
	check(d.UploadInts(n.rows, n.ints))
	g := 2 * scale / float32(H*len(rows))
	check(d.SquaredError(n.dhid, n.rowLoss, n.hidden, n.tgt, n.rows, len(rows), H, g))
	n.lossHost = grow(n.lossHost, len(rows))
	check(d.downloadF32(n.lossHost, n.rowLoss))
	var total float64
	for _, l := range n.lossHost {
		total += float64(l) / float64(H)
	}
	n.hasLoss = true
	return total / float64(len(rows)), nil
}

// Hidden is the final norm's output [n, hidden] of the last Forward, downloaded (bf16
// widened to float32); valid until the next Forward. A failed download returns nil and
// fails the Net's next call.
func (n *Net) Hidden() []float32 {
	if n.failed != nil || n.n == 0 {
		return nil
	}
	if !n.hostHid {
		count := n.n * n.cfg.Hidden
		n.raw = growU16(n.raw, count)
		if err := n.d.downloadBF16(n.raw, n.hidden); err != nil {
			n.failed = fmt.Errorf("gpu: downloading the hidden states: %w", err)
			return nil
		}
		n.hostHidden = grow(n.hostHidden, count)
		for i, h := range n.raw {
			n.hostHidden[i] = math.Float32frombits(uint32(h) << 16)
		}
		n.hostHid = true
	}
	return n.hostHidden
}

// Backward adds dLoss/dz of the last loss into GateGrads (when Forward had gates): each
// layer, last first, is recomputed from its input and walked back, the residual stream's
// gradient held in f32.
func (n *Net) Backward() (err error) {
	if n.failed != nil {
		return n.failed
	}
	if !n.hasLoss {
		return fmt.Errorf("gpu: Backward needs a loss (CrossEntropy or HiddenMSE) of the last Forward")
	}
	defer n.fail(&err)
	c, d := &n.cfg, n.d
	T, H, F := n.n, c.Hidden, c.Intermediate
	qd, kvd := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	none := cuda.Buffer{}
	check(d.Memset(n.dres, 0))
	if n.gated {
		check(d.Memset(n.dz, 0))
	}
	check(d.RMSNormBackward(n.dres, n.xs[c.Layers], n.norm, n.dhid, T, H, c.NormEps))
	full, stream := bandShape(c, T, 0, 0), bandShape(c, T, n.opts.Sink, n.opts.Window)
	for l := c.Layers - 1; l >= 0; l-- {
		L, x := &n.layers[l], n.xs[l]
		n.layerForward(l, x, none)
		// MLP, in reverse: out = h + Down·act, act = silu(gate) ⊙ up, gate|up = W·norm(h)
		check(d.ToBF16(n.dresBF, n.dres, T*H))
		check(d.Linear(n.dact, n.dresBF, L.down.wT, none, T, F, H))
		check(d.SwiGLUBackward(n.gate, n.up, n.dact, n.gate, n.up, T*F)) // gate, up now hold their gradients
		check(d.Linear(n.dx, n.gate, L.gate.wT, none, T, H, F))
		check(d.Linear(n.tmp, n.up, L.up.wT, none, T, H, F))
		check(d.Add(n.dx, n.dx, n.tmp, T*H))
		check(d.RMSNormBackward(n.dres, n.h, L.mlpNorm, n.dx, T, H, c.NormEps))
		// attention, in reverse: h = x + O·att
		check(d.ToBF16(n.dresBF, n.dres, T*H))
		check(d.Linear(n.datt, n.dresBF, L.o.wT, none, T, qd, H))
		if n.gated {
			check(d.MixHeadsBackward(n.dfull, n.dstream, n.gatesOf(n.dz, l), n.datt, n.afull, n.astream, n.gatesOf(n.z, l), T, c.Heads, c.KVHeads, c.HeadDim))
			check(d.AttentionBandBackward(n.dq, n.dk, n.dv, n.dfull, n.afull, n.lseFull, n.q, n.k, n.v, full, n.work))
			check(d.AttentionBandBackward(n.dqStream, n.dkStream, n.dvStream, n.dstream, n.astream, n.lseStream, n.q, n.k, n.v, stream, n.work))
			check(d.Add(n.dq, n.dq, n.dqStream, T*qd))
			check(d.Add(n.dk, n.dk, n.dkStream, T*kvd))
			check(d.Add(n.dv, n.dv, n.dvStream, T*kvd))
		} else {
			check(d.AttentionBandBackward(n.dq, n.dk, n.dv, n.datt, n.afull, n.lseFull, n.q, n.k, n.v, full, n.work))
		}
		// a rotation's backward is the rotation by the opposite angle
		check(d.RoPE(n.dq, n.positions, 1, n.negInvFreq, T, c.Heads, c.HeadDim, 1))
		check(d.RoPE(n.dk, n.positions, 1, n.negInvFreq, T, c.KVHeads, c.HeadDim, 1))
		check(d.Linear(n.dx, n.dq, L.q.wT, none, T, H, qd))
		check(d.Linear(n.tmp, n.dk, L.k.wT, none, T, H, kvd))
		check(d.Add(n.dx, n.dx, n.tmp, T*H))
		check(d.Linear(n.tmp, n.dv, L.v.wT, none, T, H, kvd))
		check(d.Add(n.dx, n.dx, n.tmp, T*H))
		check(d.RMSNormBackward(n.dres, x, L.attnNorm, n.dx, T, H, c.NormEps))
	}
	if !n.gated {
		check(d.Sync()) // a failure of the queued kernels surfaces here
		return nil
	}
	n.dzHost = grow(n.dzHost, len(n.gateGrad))
	check(d.downloadF32(n.dzHost, n.dz))
	for i, g := range n.dzHost {
		n.gateGrad[i] += float64(g)
	}
	return nil
}

func grow(v []float32, n int) []float32 {
	if cap(v) < n {
		return make([]float32, n)
	}
	return v[:n]
}

func growU16(v []uint16, n int) []uint16 {
	if cap(v) < n {
		return make([]uint16, n)
	}
	return v[:n]
}
