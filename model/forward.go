package model

import (
	"fmt"
	"github.com/kvfoot/kvfoot/compute"
)

// Seq is one sequence's part of a batched forward: the rows of several sequences,
// each with its own cache and policy, go through the weight matrices together (each
// matrix is read once per forward for the whole batch) and through attention each
// against its own cache.
type Seq struct {
	Cache Cache
	IDs   []int // the step's rows: len(IDs) == Step.Rows
	Step  Step
	// AllLogits asks for the logits of every row that is a token of the sequence
	// (patch rows excluded); otherwise only the last such row's.
	AllLogits bool
	// Logits is set by ForwardBatch: [vocab], or [Step.Tokens(), vocab] with AllLogits.
	// It is valid until the Runner's next forward.
	Logits []float32
}

// Runner runs forward passes on the model's backend. It owns the activation
// buffers, sized for the largest batch seen so far, so that a steady decode loop
// allocates nothing. A Runner is not safe for concurrent use; a Model is, so run one
// Runner per goroutine.
type Runner struct {
	m    *Model
	b    compute.Backend
	rows int // capacity of the buffers, in rows

	x, xb    compute.Buf // residual stream and normed input, [rows, hidden]
	q, att   compute.Buf // queries and attention output, [rows, heads·head_dim]
	k, v     compute.Buf // [rows, kv_heads·head_dim]
	gate, up compute.Buf // [rows, intermediate]
	cos, sin compute.Buf // rotary tables of every row's position, [rows, head_dim/2]
	// lcos, lsin are local layers' tables when their RoPE differs (Gemma 3)
	lcos, lsin compute.Buf
	hidden     compute.Buf // final-normed rows whose logits are asked for
	logits     compute.Buf // their logits, [rows asked, vocab]
	hostOut    []float32

	one      [1]Seq // Forward's batch of one
	decodeID [1]int
	ids      []int // a pre-fill chunk with its patch
}

// NewRunner returns a Runner on the model's backend whose buffers hold forwards of up
// to rows rows; a larger forward grows them once.
func NewRunner(m *Model, rows int) *Runner {
	r := &Runner{m: m, b: m.Backend()}
	r.grow(max(rows, 1))
	return r
}

func (r *Runner) grow(n int) {
	if n <= r.rows {
		return
	}
	c, b := &r.m.Config, r.b
	qd, kvd := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	// The old buffers go first, on a device too; rows is set only once every new one is
	// allocated, so that an allocation that panics (the device out of memory) leaves a
	// runner that the next grow or Close cleans up.
	r.free(&r.x, &r.xb, &r.q, &r.att, &r.k, &r.v, &r.gate, &r.up, &r.cos, &r.sin, &r.lcos, &r.lsin)
	r.rows = 0
	r.x, r.xb = b.Alloc(n*c.Hidden), b.Alloc(n*c.Hidden)
	r.q, r.att = b.Alloc(n*qd), b.Alloc(n*qd)
	r.k, r.v = b.Alloc(n*kvd), b.Alloc(n*kvd)
	r.gate, r.up = b.Alloc(n*c.Intermediate), b.Alloc(n*c.Intermediate)
	r.cos, r.sin = b.Alloc(n*c.HeadDim/2), b.Alloc(n*c.HeadDim/2)
	if r.m.localInvFreq != nil {
		r.lcos, r.lsin = b.Alloc(n*c.HeadDim/2), b.Alloc(n*c.HeadDim/2)
	}
	r.rows = n
}

// free returns bufs to a backend that holds memory of its own (compute.Freer) and clears
// them; it returns the first error.
func (r *Runner) free(bufs ...*compute.Buf) error {
	f, ok := r.b.(compute.Freer)
	var first error
	for _, x := range bufs {
		if ok && (x.Dev != 0 || x.N > 0) {
			if err := f.Free(*x); err != nil && first == nil {
				first = err
			}
		}
		*x = compute.Buf{}
	}
	return first
}

// Close frees the runner's buffers now: on a GPU they are device memory that the
// garbage collector does not return (a server drops its runner after a device fault).
// The runner must not be used afterwards.
func (r *Runner) Close() error {
	r.rows = 0
	return r.free(&r.x, &r.xb, &r.q, &r.att, &r.k, &r.v, &r.gate, &r.up, &r.cos, &r.sin, &r.lcos, &r.lsin, &r.hidden, &r.logits)
}

// Forward runs one step of one sequence and returns the logits of its last token
// ([vocab]) or, when all is set, of every token of the step ([Tokens, vocab]).
func (r *Runner) Forward(cache Cache, ids []int, step Step, all bool) ([]float32, error) {
	r.one[0] = Seq{Cache: cache, IDs: ids, Step: step, AllLogits: all}
	if err := r.ForwardBatch(r.one[:]); err != nil {
		return nil, err
	}
	return r.one[0].Logits, nil
}

// ForwardBatch runs one step of every sequence in seqs as one forward pass and sets
// each one's Logits. Nothing is fed to any cache unless every step is valid.
func (r *Runner) ForwardBatch(seqs []Seq) error {
	m, c, b := r.m, &r.m.Config, r.b
	n, asked := 0, 0
	for i := range seqs {
		s := &seqs[i]
		if err := r.check(s); err != nil {
			if len(seqs) > 1 {
				return fmt.Errorf("sequence %d of the batch: %w", i, err)
			}
			return err
		}
		n += s.Step.Rows
		asked += s.asked()
	}
	if n == 0 {
		return fmt.Errorf("model: empty batch")
	}
	r.grow(n)
	H, qd, kvd, F, half := c.Hidden, c.Heads*c.HeadDim, c.KVHeads*c.HeadDim, c.Intermediate, len(m.invFreq)
	x, xb := r.x.Slice(0, n*H), r.xb.Slice(0, n*H)
	q, att, k, v := r.q.Slice(0, n*qd), r.att.Slice(0, n*qd), r.k.Slice(0, n*kvd), r.v.Slice(0, n*kvd)
	gate, up := r.gate.Slice(0, n*F), r.up.Slice(0, n*F)
	cos, sin := r.cos.Slice(0, n*half), r.sin.Slice(0, n*half)
	var lcos, lsin compute.Buf
	if m.localInvFreq != nil {
		lcos, lsin = r.lcos.Slice(0, n*half), r.lsin.Slice(0, n*half)
	}

	row := 0
	for i := range seqs {
		s := &seqs[i]
		if err := s.Cache.Begin(s.Step); err != nil {
			// Only the first Begin can fail for a step that passed check; the caches
			// begun before it are left mid-step, so refuse loudly.
			return fmt.Errorf("model: cache of sequence %d refused its step: %w", i, err)
		}
		a, e := row, row+s.Step.Rows
		b.Embed(x.Slice(a*H, e*H), &m.Embed, s.IDs)
		b.RoPETables(cos.Slice(a*half, e*half), sin.Slice(a*half, e*half), m.invFreq, s.Step.Pos, s.Step.Rows)
		if m.localInvFreq != nil {
			b.RoPETables(lcos.Slice(a*half, e*half), lsin.Slice(a*half, e*half), m.localInvFreq, s.Step.Pos, s.Step.Rows)
		}
		row = e
	}

	if c.EmbedScale != 0 {
		b.Scale(x, c.EmbedScale)
	}

	for l := range m.Layers {
		L := &m.Layers[l]
		// attention: x += O · attend(rope(Q·norm(x)), rope(K·norm(x)), V·norm(x)), with
		// q and k normed per head before RoPE (QKNorm) and the output normed (Gemma)
		b.RMSNorm(xb, x, L.AttnNorm, c.NormEps, n)
		b.Linear(xb, n, L.Q.To(q), L.K.To(k), L.V.To(v))
		if L.QNorm != nil {
			b.RMSNorm(q, q, L.QNorm, c.NormEps, n*c.Heads)
			b.RMSNorm(k, k, L.KNorm, c.NormEps, n*c.KVHeads)
		}
		lc, ls := cos, sin
		if m.localInvFreq != nil && c.Window[l] > 0 {
			lc, ls = lcos, lsin
		}
		b.RoPE(q, n, c.Heads, lc, ls)
		b.RoPE(k, n, c.KVHeads, lc, ls)
		row = 0
		for i := range seqs {
			a, e := row, row+seqs[i].Step.Rows
			seqs[i].Cache.Attend(l, q.Slice(a*qd, e*qd), k.Slice(a*kvd, e*kvd), v.Slice(a*kvd, e*kvd), att.Slice(a*qd, e*qd))
			row = e
		}
		b.Linear(att, n, L.O.To(xb))
		if L.PostAttnNorm != nil {
			b.RMSNorm(xb, xb, L.PostAttnNorm, c.NormEps, n)
		}
		b.Add(x, xb)
		// MLP: x += Down · (act(Gate·norm(x)) ⊙ Up·norm(x)), act silu or (Gemma) tanh GELU
		b.RMSNorm(xb, x, L.MLPNorm, c.NormEps, n)
		b.Linear(xb, n, L.Gate.To(gate), L.Up.To(up))
		if c.Gemma {
			b.GeGLU(gate, up)
		} else {
			b.SwiGLU(gate, up)
		}
		b.Linear(gate, n, L.Down.To(xb))
		if L.PostMLPNorm != nil {
			b.RMSNorm(xb, xb, L.PostMLPNorm, c.NormEps, n)
		}
		b.Add(x, xb)
	}
	for i := range seqs {
		seqs[i].Cache.Commit()
	}

	// final norm and LM head for the asked rows of every sequence, as one matrix
	if r.hidden.Len() < asked*H {
		r.free(&r.hidden)
		r.hidden = b.Alloc(asked * H)
	}
	if r.logits.Len() < asked*c.Vocab {
		r.free(&r.logits)
		r.logits = b.Alloc(asked * c.Vocab)
	}
	hidden, logits := r.hidden.Slice(0, asked*H), r.logits.Slice(0, asked*c.Vocab)
	row, out := 0, 0
	for i := range seqs {
		s := &seqs[i]
		a := s.asked()
		first := row + s.Step.Tokens() - a
		b.RMSNorm(hidden.Slice(out*H, (out+a)*H), x.Slice(first*H, (first+a)*H), m.Norm, c.NormEps, a)
		row += s.Step.Rows
		out += a
	}
	b.Linear(hidden, asked, compute.Out{Dst: logits, W: &m.Head})
	if c.FinalSoftCap != 0 {
		b.SoftCap(logits, c.FinalSoftCap)
	}
	r.hostOut = b.Host(logits, r.hostOut)
	out = 0
	for i := range seqs {
		a := seqs[i].asked()
		seqs[i].Logits = r.hostOut[out*c.Vocab : (out+a)*c.Vocab]
		out += a
	}
	return nil
}

// asked is the number of rows whose logits s wants.
func (s *Seq) asked() int {
	if s.AllLogits {
		return s.Step.Tokens()
	}
	return 1
}

func (r *Runner) check(s *Seq) error {
	c := &r.m.Config
	if s.Cache == nil {
		return fmt.Errorf("model: no cache")
	}
	if err := s.Step.Check(); err != nil {
		return fmt.Errorf("model: %w", err)
	}
	if len(s.IDs) != s.Step.Rows {
		return fmt.Errorf("model: %d ids for a step of %d rows", len(s.IDs), s.Step.Rows)
	}
	if p := s.Cache.PatchLen(); s.Step.Patch > p {
		return fmt.Errorf("model: a step with %d patch rows for a cache that asks for %d", s.Step.Patch, p)
	}
	if ctx := c.MaxPositions; ctx > 0 && s.Step.Pos+s.Step.Rows > ctx {
		return fmt.Errorf("model: positions %d…%d pass the model's context of %d", s.Step.Pos, s.Step.Pos+s.Step.Rows-1, ctx)
	}
	if s.Step.Pos != s.Cache.Pos() {
		return fmt.Errorf("model: step at position %d, but the cache is at %d", s.Step.Pos, s.Cache.Pos())
	}
	for i, id := range s.IDs {
		if id < 0 || id >= c.Vocab {
			return fmt.Errorf("model: token id %d at position %d is outside the vocabulary [0, %d)", id, s.Step.Pos+i, c.Vocab)
		}
	}
	return nil
}
