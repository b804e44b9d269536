// Package train computes gradients of Llama-family models on the CPU and trains
// PruLong's and DuoAttention's head masks with them.
//
// The backward pass mirrors package model's forward op by op (ops.go: each op's
// forward next to its backward; attention.go: full and streaming attention). A Net
// runs one sequence at a time: Forward keeps only every layer's input (activation
// checkpointing), Backward recomputes one layer's activations from its input and
// walks it back, so memory grows with layers·tokens·hidden plus one layer's
// activations. Attention probabilities are never stored: the backward recomputes them
// a query block at a time, as FlashAttention does.
//
// Every layer's attention may mix two attentions computed exactly on the same q, k,
// v, per KV head g (PruLong's and DuoAttention's gate):
//
//	out_h = z_g · full_h + (1 − z_g) · streaming_h, h a query head of g's group,
//
// where streaming attention sees the first Sink positions and the Window most recent
// ones (itself included).
package train

import (
	"fmt"
	"time"

	"github.com/kvfoot/kvfoot/model"
	"github.com/kvfoot/kvfoot/tensor"
)

// Options configure a Net.
type Options struct {
	MaxLen       int  // the longest sequence Forward accepts, in tokens
	Sink, Window int  // the streaming attention of gated heads (Window ≥ 1)
	WeightGrads  bool // Backward also accumulates weight gradients into Net.Grad
	// Workers is the number of attention workers (0: tensor.Threads() at New).
	Workers int
}

// Net holds a model's weights in float32 and the buffers of one training sequence.
type Net struct {
	Config model.Config
	Params *Params
	// Grad accumulates weight gradients (nil unless Options.WeightGrads).
	Grad *Params
	// GateGrad accumulates dLoss/dz per (layer, KV head), layer-major.
	GateGrad []float64
	// InputGrad is dLoss/d(embedding output) [n, hidden] of the last Backward.
	InputGrad []float32
	// Timing accumulates the time spent in weight matrix products and in attention
	// (forward, recomputation and backward); the caller resets it.
	Timing struct{ Matmul, Attention time.Duration }

	opts    Options
	invFreq []float32
	// localInvFreq are local layers' rotary frequencies when they differ (Gemma 3)
	localInvFreq []float32
	attn         *attention
	full         band
	stream       band

	n      int
	ids    []int
	gates  []float32
	xs     [][]float32 // the residual stream entering each layer, and leaving the last
	hidden []float32   // final norm output [n, hidden]
	dhid   []float32   // dLoss/dhidden, set by a loss

	cos, sin   []float32
	lcos, lsin []float32 // local layers' (nil unless their RoPE differs)
	// qRaw, kRaw: q and k before their per-head norms (QKNorm); oRaw, dnRaw: attention's
	// and the MLP's outputs before Gemma's norms; dqRaw, dkRaw, do their gradients
	qRaw, kRaw, oRaw, dnRaw, dqRaw, dkRaw, do []float32
	// one layer's activations, recomputed by Backward
	xb, q, k, v, afull, astream, att, h, xb2, gate, up, act []float32
	// gradients of one layer's activations
	dres, dh, dxb, datt, dfull, dstream, dq, dk, dv, dact, dgate, dup []float32
	tmp, tmpW                                                         []float32
	logits, headTmp                                                   []float32
	lseFull, lseStream, delta                                         []float32 // [heads, n]
	rowDz                                                             []float64 // [n, kvHeads]
	rowLoss                                                           []float64 // [ceBlock]
}

// ceBlock is the number of rows whose logits a loss holds at once.
const ceBlock = 256

// New copies m's weights into float32 and sizes every buffer for opts.MaxLen tokens.
func New(m *model.Model, opts Options) (*Net, error) {
	c := m.Config
	if opts.MaxLen < 2 {
		return nil, fmt.Errorf("train: MaxLen %d: need at least 2 tokens", opts.MaxLen)
	}
	if c.MaxPositions > 0 && opts.MaxLen > c.MaxPositions {
		return nil, fmt.Errorf("train: sequence length %d is longer than the model's context (max_position_embeddings %d)", opts.MaxLen, c.MaxPositions)
	}
	if opts.Window < 1 || opts.Sink < 0 {
		return nil, fmt.Errorf("train: streaming attention needs window ≥ 1 and sink ≥ 0; have sink %d, window %d", opts.Sink, opts.Window)
	}
	if c.Heads%c.KVHeads != 0 {
		return nil, fmt.Errorf("train: %d query heads are not a multiple of %d KV heads", c.Heads, c.KVHeads)
	}
	if opts.Workers <= 0 {
		opts.Workers = tensor.Threads()
	}
	T, H, F := opts.MaxLen, c.Hidden, c.Intermediate
	qd, kvd := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	n := &Net{Config: c, Params: paramsOf(m), opts: opts, invFreq: c.Rope.InvFreq(c.HeadDim),
		full: band{full: true}, stream: band{sink: opts.Sink, window: opts.Window}}
	if c.LocalRope.Theta != 0 && c.LocalLayers() > 0 {
		n.localInvFreq = c.LocalRope.InvFreq(c.HeadDim)
	}
	if opts.WeightGrads {
		n.Grad = zerosLike(n.Params)
	}
	n.GateGrad = make([]float64, c.Layers*c.KVHeads)
	n.attn = newAttention(T, attnShape{c.Heads, c.KVHeads, c.HeadDim, c.AttnScale, c.AttnSoftCap}, opts.Workers)
	f := func(k int) []float32 { return make([]float32, k) }
	n.xs = make([][]float32, c.Layers+1)
	for i := range n.xs {
		n.xs[i] = f(T * H)
	}
	n.hidden, n.dhid, n.InputGrad = f(T*H), f(T*H), f(T*H)
	n.cos, n.sin = f(T*c.HeadDim/2), f(T*c.HeadDim/2)
	if n.localInvFreq != nil {
		n.lcos, n.lsin = f(T*c.HeadDim/2), f(T*c.HeadDim/2)
	}
	if c.QKNorm {
		n.qRaw, n.kRaw, n.dqRaw, n.dkRaw = f(T*qd), f(T*kvd), f(T*qd), f(T*kvd)
	}
	if c.Gemma {
		n.oRaw, n.dnRaw, n.do = f(T*H), f(T*H), f(T*H)
	}
	n.xb, n.h, n.xb2 = f(T*H), f(T*H), f(T*H)
	n.q, n.afull, n.astream, n.att = f(T*qd), f(T*qd), f(T*qd), f(T*qd)
	n.k, n.v = f(T*kvd), f(T*kvd)
	n.gate, n.up, n.act = f(T*F), f(T*F), f(T*F)
	n.dres, n.dh, n.dxb = f(T*H), f(T*H), f(T*H)
	n.datt, n.dfull, n.dstream, n.dq = f(T*qd), f(T*qd), f(T*qd), f(T*qd)
	n.dk, n.dv = f(T*kvd), f(T*kvd)
	n.dact, n.dgate, n.dup = f(T*F), f(T*F), f(T*F)
	n.tmp = f(T * max(H, qd, F))
	n.tmpW = f(max(qd*H, F*H))
	n.logits = f(ceBlock * c.Vocab)
	n.lseFull, n.lseStream, n.delta = f(T*c.Heads), f(T*c.Heads), f(T*c.Heads)
	n.rowDz, n.rowLoss = make([]float64, T*c.KVHeads), make([]float64, ceBlock)
	if opts.WeightGrads {
		n.headTmp = f(c.Vocab * H)
	}
	return n, nil
}

// Len is the length of the sequence of the last Forward.
func (n *Net) Len() int { return n.n }

// Hidden is the final norm's output [Len(), hidden] of the last Forward (the "last
// hidden state" of Hugging Face); valid until the next Forward.
func (n *Net) Hidden() []float32 { return n.hidden[:n.n*n.Config.Hidden] }

// Forward runs the model over ids (positions 0…len(ids)−1). gates, when not nil, holds
// one z ∈ [0, 1] per (layer, KV head), layer-major, and every head's attention becomes
// z·full + (1 − z)·streaming; nil means full attention everywhere. A loss (CrossEntropy,
// HiddenMSE) and Backward may follow.
func (n *Net) Forward(ids []int, gates []float32) error {
	c := &n.Config
	if len(ids) < 1 || len(ids) > n.opts.MaxLen {
		return fmt.Errorf("train: sequence of %d tokens; this Net takes 1 to %d", len(ids), n.opts.MaxLen)
	}
	for i, id := range ids {
		if id < 0 || id >= c.Vocab {
			return fmt.Errorf("train: token id %d at position %d is outside the vocabulary [0, %d)", id, i, c.Vocab)
		}
	}
	if gates != nil {
		if len(gates) != c.Layers*c.KVHeads {
			return fmt.Errorf("train: %d gates, want one per layer and KV head (%d)", len(gates), c.Layers*c.KVHeads)
		}
		for i, z := range gates {
			if !(z >= 0 && z <= 1) {
				return fmt.Errorf("train: gate %d (layer %d, KV head %d) is %v, outside [0, 1]", i, i/c.KVHeads, i%c.KVHeads, z)
			}
		}
	}
	n.n, n.ids, n.gates = len(ids), ids, gates
	T, H := n.n, c.Hidden
	embedForward(n.xs[0], n.Params.Embed, ids, H)
	if c.EmbedScale != 0 {
		scaleVec(n.xs[0][:T*H], c.EmbedScale)
	}
	tensor.RoPETables(n.cos, n.sin, n.invFreq, 0, T)
	if n.localInvFreq != nil {
		tensor.RoPETables(n.lcos, n.lsin, n.localInvFreq, 0, T)
	}
	for l := range c.Layers {
		n.layerForward(l, n.xs[l][:T*H], n.xs[l+1][:T*H])
	}
	rmsNormForward(n.hidden, n.xs[c.Layers], n.Params.Norm, c.NormEps, T)
	clear(n.dhid[:T*H])
	return nil
}

// layerForward runs block l on x, leaving its activations in the Net's buffers;
// out = x + attention + MLP when out is not nil.
func (n *Net) layerForward(l int, x, out []float32) {
	c, L := &n.Config, &n.Params.Layers[l]
	T, H, F := n.n, c.Hidden, c.Intermediate
	qd, kvd := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	xb, q, k, v := n.xb[:T*H], n.q[:T*qd], n.k[:T*kvd], n.v[:T*kvd]
	cos, sin := n.rope(l)
	// attention: h = x + O · mix(attend(rope(Q·norm(x)), rope(K·norm(x)), V·norm(x))),
	// q and k normed per head before RoPE (QKNorm), O's output normed (Gemma)
	rmsNormForward(xb, x, L.AttnNorm, c.NormEps, T)
	t0 := time.Now()
	linearForward(q, xb, T, &L.Q)
	linearForward(k, xb, T, &L.K)
	linearForward(v, xb, T, &L.V)
	n.Timing.Matmul += time.Since(t0)
	if c.QKNorm {
		copy(n.qRaw, q)
		copy(n.kRaw, k)
		rmsNormForward(q, n.qRaw[:T*qd], L.QNorm, c.NormEps, T*c.Heads)
		rmsNormForward(k, n.kRaw[:T*kvd], L.KNorm, c.NormEps, T*c.KVHeads)
	}
	tensor.RotateHalf(q, T, c.Heads, cos, sin, false)
	tensor.RotateHalf(k, T, c.KVHeads, cos, sin, false)
	t0 = time.Now()
	n.attn.forward(n.band(l), n.afull[:T*qd], n.lseFull, q, k, v, T)
	att := n.afull[:T*qd]
	if n.gated(l) {
		n.attn.forward(n.stream, n.astream[:T*qd], n.lseStream, q, k, v, T)
		att = n.att[:T*qd]
		mixForward(att, n.afull[:T*qd], n.astream[:T*qd], n.layerGates(l), T, c.Heads, c.HeadDim)
	}
	t1 := time.Now()
	n.Timing.Attention += t1.Sub(t0)
	h := n.h[:T*H]
	if c.Gemma {
		linearForward(n.oRaw[:T*H], att, T, &L.O)
		rmsNormForward(h, n.oRaw[:T*H], L.PostAttnNorm, c.NormEps, T)
	} else {
		linearForward(h, att, T, &L.O)
	}
	n.Timing.Matmul += time.Since(t1)
	tensor.Axpy(1, x, h)
	// MLP: out = h + Down · (act(Gate·norm(h)) ⊙ Up·norm(h)), act silu or (Gemma) tanh
	// GELU, Down's output normed (Gemma)
	xb2, gate, up, act := n.xb2[:T*H], n.gate[:T*F], n.up[:T*F], n.act[:T*F]
	rmsNormForward(xb2, h, L.MLPNorm, c.NormEps, T)
	t0 = time.Now()
	linearForward(gate, xb2, T, &L.Gate)
	linearForward(up, xb2, T, &L.Up)
	n.Timing.Matmul += time.Since(t0)
	if c.Gemma {
		gegluForward(act, gate, up)
	} else {
		swigluForward(act, gate, up)
	}
	if out == nil {
		return
	}
	t0 = time.Now()
	if c.Gemma {
		linearForward(n.dnRaw[:T*H], act, T, &L.Down)
		rmsNormForward(out, n.dnRaw[:T*H], L.PostMLPNorm, c.NormEps, T)
	} else {
		linearForward(out, act, T, &L.Down)
	}
	n.Timing.Matmul += time.Since(t0)
	tensor.Axpy(1, h, out)
}

// local is layer l's sliding window (0: a global layer).
func (n *Net) local(l int) int {
	if n.Config.Window == nil {
		return 0
	}
	return n.Config.Window[l]
}

// band is layer l's own attention: full, or a local layer's window. Gates mix streaming
// attention into global layers only: a local layer has no full cache to give up.
func (n *Net) band(l int) band {
	if w := n.local(l); w > 0 {
		return band{window: w}
	}
	return n.full
}

func (n *Net) gated(l int) bool { return n.gates != nil && n.local(l) == 0 }

// rope is layer l's rotary tables.
func (n *Net) rope(l int) (cos, sin []float32) {
	T, half := n.n, n.Config.HeadDim/2
	if n.lcos != nil && n.local(l) > 0 {
		return n.lcos[:T*half], n.lsin[:T*half]
	}
	return n.cos[:T*half], n.sin[:T*half]
}

// scaleVec sets x *= s.
func scaleVec(x []float32, s float32) {
	for i := range x {
		x[i] *= s
	}
}

func (n *Net) layerGates(l int) []float32 {
	kv := n.Config.KVHeads
	return n.gates[l*kv : (l+1)*kv]
}

// mixForward sets att = z·full + (1 − z)·stream per query head, z of its KV head.
func mixForward(att, full, stream, z []float32, T, heads, d int) {
	group := heads / len(z)
	tensor.Parallel(T, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			for h := 0; h < heads; h++ {
				zg := z[h/group]
				o := (i*heads + h) * d
				for j := o; j < o+d; j++ {
					att[j] = zg*full[j] + (1-zg)*stream[j]
				}
			}
		}
	})
}

// ZeroGrad clears the accumulated gate and weight gradients.
func (n *Net) ZeroGrad() {
	clear(n.GateGrad)
	if n.Grad != nil {
		n.Grad.Zero()
	}
}

// Backward adds the gradients of the last loss into GateGrad (when Forward had gates)
// and Grad (when weight gradients are on), and sets InputGrad. It never fails on the CPU
// (the error is Network's).
func (n *Net) Backward() error {
	c := &n.Config
	T, H, F := n.n, c.Hidden, c.Intermediate
	qd, kvd := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	g := n.Grad
	dres := n.dres[:T*H]
	clear(dres)
	var dNorm []float32
	if g != nil {
		dNorm = g.Norm
	}
	rmsNormBackward(dres, dNorm, n.dhid[:T*H], n.xs[c.Layers][:T*H], n.Params.Norm, c.NormEps, T)
	for l := c.Layers - 1; l >= 0; l-- {
		L := &n.Params.Layers[l]
		var G *LayerParams
		if g != nil {
			G = &g.Layers[l]
		}
		x := n.xs[l][:T*H]
		n.layerForward(l, x, nil)
		xb, q, k, v := n.xb[:T*H], n.q[:T*qd], n.k[:T*kvd], n.v[:T*kvd]
		h, xb2, gate, up, act := n.h[:T*H], n.xb2[:T*H], n.gate[:T*F], n.up[:T*F], n.act[:T*F]
		cos, sin := n.rope(l)
		dh, dxb, dact, dgate, dup := n.dh[:T*H], n.dxb[:T*H], n.dact[:T*F], n.dgate[:T*F], n.dup[:T*F]
		datt, dq, dk, dv := n.datt[:T*qd], n.dq[:T*qd], n.dk[:T*kvd], n.dv[:T*kvd]

		// MLP, in reverse: out = h + [norm](Down·act), act = act(gate) ⊙ up, gate|up = W·norm(h)
		copy(dh, dres)
		clear(dact)
		ddown := dres
		if c.Gemma {
			linearForward(n.dnRaw[:T*H], act, T, &L.Down)
			ddown = n.do[:T*H]
			clear(ddown)
			rmsNormBackward(ddown, gradVec(G, func(p *LayerParams) []float32 { return p.PostMLPNorm }), dres, n.dnRaw[:T*H], L.PostMLPNorm, c.NormEps, T)
		}
		n.linearBackward(dact, ddown, act, T, &L.Down, gradLin(G, func(p *LayerParams) *Linear { return &p.Down }), n.tmp, n.tmpW)
		if c.Gemma {
			gegluBackward(dgate, dup, dact, gate, up)
		} else {
			swigluBackward(dgate, dup, dact, gate, up)
		}
		clear(dxb)
		n.linearBackward(dxb, dgate, xb2, T, &L.Gate, gradLin(G, func(p *LayerParams) *Linear { return &p.Gate }), n.tmp, n.tmpW)
		n.linearBackward(dxb, dup, xb2, T, &L.Up, gradLin(G, func(p *LayerParams) *Linear { return &p.Up }), n.tmp, n.tmpW)
		rmsNormBackward(dh, gradVec(G, func(p *LayerParams) []float32 { return p.MLPNorm }), dxb, h, L.MLPNorm, c.NormEps, T)

		// attention, in reverse: h = x + [norm](O·att)
		clear(datt)
		att := n.afull[:T*qd]
		if n.gated(l) {
			att = n.att[:T*qd]
		}
		dO := dh
		if c.Gemma {
			dO = n.do[:T*H]
			clear(dO)
			rmsNormBackward(dO, gradVec(G, func(p *LayerParams) []float32 { return p.PostAttnNorm }), dh, n.oRaw[:T*H], L.PostAttnNorm, c.NormEps, T)
		}
		n.linearBackward(datt, dO, att, T, &L.O, gradLin(G, func(p *LayerParams) *Linear { return &p.O }), n.tmp, n.tmpW)
		clear(dq)
		clear(dk)
		clear(dv)
		t0 := time.Now()
		if !n.gated(l) {
			n.attn.backward(n.band(l), dq, dk, dv, datt, n.afull, n.lseFull, n.delta, q, k, v, T)
		} else {
			dfull, dstream := n.dfull[:T*qd], n.dstream[:T*qd]
			n.mixBackward(l, dfull, dstream, datt)
			n.attn.backward(n.full, dq, dk, dv, dfull, n.afull, n.lseFull, n.delta, q, k, v, T)
			n.attn.backward(n.stream, dq, dk, dv, dstream, n.astream, n.lseStream, n.delta, q, k, v, T)
		}
		n.Timing.Attention += time.Since(t0)
		tensor.RotateHalf(dq, T, c.Heads, cos, sin, true)
		tensor.RotateHalf(dk, T, c.KVHeads, cos, sin, true)
		if c.QKNorm {
			dqr, dkr := n.dqRaw[:T*qd], n.dkRaw[:T*kvd]
			clear(dqr)
			clear(dkr)
			rmsNormBackward(dqr, gradVec(G, func(p *LayerParams) []float32 { return p.QNorm }), dq, n.qRaw[:T*qd], L.QNorm, c.NormEps, T*c.Heads)
			rmsNormBackward(dkr, gradVec(G, func(p *LayerParams) []float32 { return p.KNorm }), dk, n.kRaw[:T*kvd], L.KNorm, c.NormEps, T*c.KVHeads)
			dq, dk = dqr, dkr
		}
		clear(dxb)
		n.linearBackward(dxb, dq, xb, T, &L.Q, gradLin(G, func(p *LayerParams) *Linear { return &p.Q }), n.tmp, n.tmpW)
		n.linearBackward(dxb, dk, xb, T, &L.K, gradLin(G, func(p *LayerParams) *Linear { return &p.K }), n.tmp, n.tmpW)
		n.linearBackward(dxb, dv, xb, T, &L.V, gradLin(G, func(p *LayerParams) *Linear { return &p.V }), n.tmp, n.tmpW)
		copy(dres, dh)
		rmsNormBackward(dres, gradVec(G, func(p *LayerParams) []float32 { return p.AttnNorm }), dxb, x, L.AttnNorm, c.NormEps, T)
	}
	copy(n.InputGrad[:T*H], dres)
	if g != nil {
		if c.EmbedScale != 0 {
			scaleVec(dres, c.EmbedScale) // the lookup's rows were scaled
		}
		embedBackward(g.Embed, dres, n.ids, H)
	}
	return nil
}

// mixBackward splits datt into the gradients of the full and the streaming attention
// of layer l and adds dLoss/dz = Σ datt ⊙ (full − streaming) into GateGrad (summed
// per row in parallel, then over rows in order, so the sum does not depend on threads).
func (n *Net) mixBackward(l int, dfull, dstream, datt []float32) {
	c := &n.Config
	T, heads, d, kv := n.n, c.Heads, c.HeadDim, c.KVHeads
	z := n.layerGates(l)
	group := heads / kv
	full, stream := n.afull[:T*heads*d], n.astream[:T*heads*d]
	rows := n.rowDz[:T*kv]
	tensor.Parallel(T, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			clear(rows[i*kv : (i+1)*kv])
			for h := 0; h < heads; h++ {
				zg := z[h/group]
				o := (i*heads + h) * d
				var s float64
				for j := o; j < o+d; j++ {
					dfull[j] = zg * datt[j]
					dstream[j] = (1 - zg) * datt[j]
					s += float64(datt[j]) * float64(full[j]-stream[j])
				}
				rows[i*kv+h/group] += s
			}
		}
	})
	for i := 0; i < T; i++ {
		for g := 0; g < kv; g++ {
			n.GateGrad[l*kv+g] += rows[i*kv+g]
		}
	}
}

// linearBackward is linearBackward (ops.go) on the Net's buffers, timed.
func (n *Net) linearBackward(dx, dy, x []float32, T int, l, g *Linear, tmp, tmpW []float32) {
	t0 := time.Now()
	linearBackward(dx, dy, x, T, l, g, tmp, tmpW)
	n.Timing.Matmul += time.Since(t0)
}

func gradLin(G *LayerParams, f func(*LayerParams) *Linear) *Linear {
	if G == nil {
		return nil
	}
	return f(G)
}

func gradVec(G *LayerParams, f func(*LayerParams) []float32) []float32 {
	if G == nil {
		return nil
	}
	return f(G)
}
