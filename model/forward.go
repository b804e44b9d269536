package model

import (
	"fmt"

	"github.com/kvfoot/kvfoot/tensor"
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

// Runner runs forward passes. It owns the scratch buffers, sized for the largest
// batch seen so far, so that a steady decode loop allocates nothing. A Runner is not
// safe for concurrent use; a Model is, so run one Runner per goroutine.
type Runner struct {
	m    *Model
	rows int // capacity of the buffers, in rows

	x, xb    []float32 // residual stream and normed input, [rows, hidden]
	q, att   []float32 // queries and attention output, [rows, heads·head_dim]
	k, v     []float32 // [rows, kv_heads·head_dim]
	gate, up []float32 // [rows, intermediate]
	cos, sin []float32 // rotary tables of every row's position, [rows, head_dim/2]
	hidden   []float32 // final-normed rows whose logits are asked for
	logits   []float32 // their logits, [rows asked, vocab]

	one      [1]Seq // Forward's batch of one
	decodeID [1]int
	ids      []int // a pre-fill chunk with its patch
}

// NewRunner returns a Runner whose buffers hold forwards of up to rows rows; a larger
// forward grows them once.
func NewRunner(m *Model, rows int) *Runner {
	r := &Runner{m: m}
	r.grow(max(rows, 1))
	return r
}

func (r *Runner) grow(n int) {
	if n <= r.rows {
		return
	}
	c := &r.m.Config
	qd, kvd := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	r.rows = n
	r.x, r.xb = make([]float32, n*c.Hidden), make([]float32, n*c.Hidden)
	r.q, r.att = make([]float32, n*qd), make([]float32, n*qd)
	r.k, r.v = make([]float32, n*kvd), make([]float32, n*kvd)
	r.gate, r.up = make([]float32, n*c.Intermediate), make([]float32, n*c.Intermediate)
	r.cos, r.sin = make([]float32, n*c.HeadDim/2), make([]float32, n*c.HeadDim/2)
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
	m, c := r.m, &r.m.Config
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
	H, qd, kvd, F := c.Hidden, c.Heads*c.HeadDim, c.KVHeads*c.HeadDim, c.Intermediate
	x, xb := r.x[:n*H], r.xb[:n*H]
	q, att, k, v := r.q[:n*qd], r.att[:n*qd], r.k[:n*kvd], r.v[:n*kvd]
	gate, up := r.gate[:n*F], r.up[:n*F]

	row := 0
	for i := range seqs {
		s := &seqs[i]
		if err := s.Cache.Begin(s.Step); err != nil {
			// Only the first Begin can fail for a step that passed check; the caches
			// begun before it are left mid-step, so refuse loudly.
			return fmt.Errorf("model: cache of sequence %d refused its step: %w", i, err)
		}
		for j, id := range s.IDs {
			embedRow(x[(row+j)*H:(row+j+1)*H], &m.Embed, id)
		}
		half := len(m.invFreq)
		tensor.RoPETables(r.cos[row*half:], r.sin[row*half:], m.invFreq, s.Step.Pos, s.Step.Rows)
		row += s.Step.Rows
	}

	for l := range m.Layers {
		L := &m.Layers[l]
		// attention: x += O · attend(rope(Q·norm(x)), rope(K·norm(x)), V·norm(x))
		tensor.RMSNormRows(xb, x, L.AttnNorm, c.NormEps, n)
		tensor.MatMulTs(xb, n, tensor.Proj{Dst: q, W: &L.Q.W}, tensor.Proj{Dst: k, W: &L.K.W}, tensor.Proj{Dst: v, W: &L.V.W})
		addBias(q, n, &L.Q)
		addBias(k, n, &L.K)
		addBias(v, n, &L.V)
		cos, sin := r.cos[:n*len(m.invFreq)], r.sin[:n*len(m.invFreq)]
		tensor.RotateHalf(q, n, c.Heads, cos, sin, false)
		tensor.RotateHalf(k, n, c.KVHeads, cos, sin, false)
		row = 0
		for i := range seqs {
			a, b := row, row+seqs[i].Step.Rows
			seqs[i].Cache.Attend(l, q[a*qd:b*qd], k[a*kvd:b*kvd], v[a*kvd:b*kvd], att[a*qd:b*qd])
			row = b
		}
		linear(xb, att, n, &L.O)
		tensor.Axpy(1, xb, x)
		// MLP: x += Down · (silu(Gate·norm(x)) ⊙ Up·norm(x))
		tensor.RMSNormRows(xb, x, L.MLPNorm, c.NormEps, n)
		tensor.MatMulTs(xb, n, tensor.Proj{Dst: gate, W: &L.Gate.W}, tensor.Proj{Dst: up, W: &L.Up.W})
		addBias(gate, n, &L.Gate)
		addBias(up, n, &L.Up)
		tensor.SiLUMul(gate, up)
		linear(xb, gate, n, &L.Down)
		tensor.Axpy(1, xb, x)
	}
	for i := range seqs {
		seqs[i].Cache.Commit()
	}

	// final norm and LM head for the asked rows of every sequence, as one matrix
	if len(r.hidden) < asked*H {
		r.hidden = make([]float32, asked*H)
	}
	if len(r.logits) < asked*c.Vocab {
		r.logits = make([]float32, asked*c.Vocab)
	}
	hidden, logits := r.hidden[:asked*H], r.logits[:asked*c.Vocab]
	row, out := 0, 0
	for i := range seqs {
		s := &seqs[i]
		a := s.asked()
		first := row + s.Step.Tokens() - a
		tensor.RMSNormRows(hidden[out*H:(out+a)*H], x[first*H:(first+a)*H], m.Norm, c.NormEps, a)
		s.Logits = logits[out*c.Vocab : (out+a)*c.Vocab]
		row += s.Step.Rows
		out += a
	}
	tensor.MatMulT(logits, hidden, asked, &m.Head)
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

// linear computes dst[n, out] = x[n, in] · Wᵀ + bias.
func linear(dst, x []float32, n int, l *Linear) {
	tensor.MatMulT(dst, x, n, &l.W)
	addBias(dst, n, l)
}

// addBias adds l's bias, if it has one, to each of the n rows of dst.
func addBias(dst []float32, n int, l *Linear) {
	if l.Bias == nil {
		return
	}
	out := l.W.Rows
	for i := 0; i < n; i++ {
		tensor.Axpy(1, l.Bias, dst[i*out:(i+1)*out])
	}
}

func embedRow(dst []float32, e *tensor.Mat, id int) {
	h := e.Cols
	if e.F32 != nil {
		copy(dst, e.F32[id*h:(id+1)*h])
		return
	}
	for j, b := range e.BF16[id*h : (id+1)*h] {
		dst[j] = tensor.BF16ToFloat(b)
	}
}
