package cuda

import (
	"errors"
	"fmt"
	"math"
)

// Byte sizes of the element types the kernels use.
const (
	bf16Bytes = 2
	f32Bytes  = 4
	i32Bytes  = 4
)

const (
	gemmSharedBytes = 3 * 2 * 128 * 40 * bf16Bytes // stages · (A, W) · 128 rows · padded 40
	gemvMaxRows     = 8                            // gemv_bf16 keeps one accumulator per row
)

// prefillSharedBytes holds 128 rows of Q and two stages of 64 rows of K and of V, padded.
func prefillSharedBytes(dim int) int { return (128 + 2*2*64) * (dim + 8) * bf16Bytes }

// need checks that buffer what holds at least elems elements of size bytes each.
func need(what string, b Buffer, elems, size int) error {
	if b.Ptr == 0 {
		return fmt.Errorf("cuda: %s: no buffer", what)
	}
	if int64(elems)*int64(size) > b.Bytes {
		return fmt.Errorf("cuda: %s: needs %d bytes, buffer has %d", what, int64(elems)*int64(size), b.Bytes)
	}
	return nil
}

// use is a buffer a kernel reads or writes, named for messages, and the elements of size
// bytes it must hold.
type use struct {
	what        string
	b           Buffer
	elems, size int
}

// needAll checks every buffer of uses (need), their names prefixed by op.
func needAll(op string, uses ...use) error {
	for _, u := range uses {
		if err := need(op+" "+u.what, u.b, u.elems, u.size); err != nil {
			return err
		}
	}
	return nil
}

// positive checks that each named size is > 0 and, where mult > 1, divisible by mult.
func positive(op string, mult int, sizes ...any) error {
	for i := 0; i+1 < len(sizes); i += 2 {
		name, v := sizes[i].(string), sizes[i+1].(int)
		if v <= 0 {
			return fmt.Errorf("cuda: %s: %s = %d, must be positive", op, name, v)
		}
		if mult > 1 && v%mult != 0 {
			return fmt.Errorf("cuda: %s: %s = %d, must be divisible by %d", op, name, v, mult)
		}
	}
	return nil
}

// blocksFor is the grid of a grid-stride kernel over count elements, 8 per thread.
func blocksFor(count int) int { return min((count/8+255)/256, 4096) }

// Embedding writes table rows ids[i] ([vocab][dim] bf16) to out[i] ([len(ids)][dim] bf16).
func (d *Device) Embedding(out, table Buffer, vocab, dim int, ids []int32) error {
	if err := positive("embedding", 8, "dim", dim); err != nil {
		return err
	}
	if len(ids) == 0 {
		return fmt.Errorf("cuda: embedding: no token ids")
	}
	for i, id := range ids {
		if id < 0 || int(id) >= vocab {
			return fmt.Errorf("cuda: embedding: token %d has id %d, outside the vocabulary of %d", i, id, vocab)
		}
	}
	if err := need("embedding table", table, vocab*dim, bf16Bytes); err != nil {
		return err
	}
	if err := need("embedding output", out, len(ids)*dim, bf16Bytes); err != nil {
		return err
	}
	idBuf, err := d.StageInts(ids)
	if err != nil {
		return err
	}
	return d.launch("embed_rows", grid1(len(ids), 128), out, table, idBuf, int32(dim))
}

// RMSNorm writes out[r] = x[r] / sqrt(mean(x[r]²) + eps) · weight for rows of dim bf16
// values; out may be x.
func (d *Device) RMSNorm(out, x, weight Buffer, rows, dim int, eps float32) error {
	if err := positive("rmsnorm", 8, "dim", dim); err != nil {
		return err
	}
	if err := positive("rmsnorm", 1, "rows", rows); err != nil {
		return err
	}
	if err := needAll("rmsnorm", use{"input", x, rows * dim, bf16Bytes}, use{"output", out, rows * dim, bf16Bytes},
		use{"weight", weight, dim, bf16Bytes}); err != nil {
		return err
	}
	return d.launch("rmsnorm", grid1(rows, 256), out, x, weight, int32(dim), eps)
}

// RoPE rotates x ([tokens][heads][dim] bf16) in place, rotate-half style: pairs (j, j+dim/2)
// of token t turn by positions[t·posStride]·invFreq[j] (positions int32, invFreq f32 [dim/2],
// both on the device, so every RoPE scaling is the host's choice of invFreq); cos and sin are
// multiplied by scale (YaRN's attention factor, 1 otherwise).
func (d *Device) RoPE(x, positions Buffer, posStride int, invFreq Buffer, tokens, heads, dim int, scale float32) error {
	if err := positive("rope", 2, "dim", dim); err != nil {
		return err
	}
	if err := positive("rope", 1, "tokens", tokens, "heads", heads); err != nil {
		return err
	}
	if err := need("rope input", x, tokens*heads*dim, bf16Bytes); err != nil {
		return err
	}
	if err := positive("rope", 1, "position stride", posStride); err != nil {
		return err
	}
	if err := need("rope positions", positions, (tokens-1)*posStride+1, i32Bytes); err != nil {
		return err
	}
	if err := need("rope inverse frequencies", invFreq, dim/2, f32Bytes); err != nil {
		return err
	}
	return d.launch("rope", grid2(tokens, heads, min(dim/2, 256)), x, positions, int32(posStride), invFreq, int32(heads), int32(dim), scale)
}

// SwiGLU writes out = silu(gate) · up over count bf16 values; out may be gate or up.
func (d *Device) SwiGLU(out, gate, up Buffer, count int) error {
	return d.elementwise("swiglu", out, gate, up, count)
}

// Add writes out = a + b over count bf16 values (the residual add); out may be a or b.
func (d *Device) Add(out, a, b Buffer, count int) error {
	return d.elementwise("add", out, a, b, count)
}

func (d *Device) elementwise(kernel string, out, a, b Buffer, count int) error {
	if err := positive(kernel, 8, "count", count); err != nil {
		return err
	}
	if err := needAll(kernel, use{"output", out, count, bf16Bytes}, use{"first input", a, count, bf16Bytes},
		use{"second input", b, count, bf16Bytes}); err != nil {
		return err
	}
	return d.launch(kernel, grid1(blocksFor(count), 256), out, a, b, int64(count))
}

// BiasAdd adds bias ([cols] bf16) to every row of x ([rows][cols] bf16) in place.
func (d *Device) BiasAdd(x, bias Buffer, rows, cols int) error {
	if err := positive("bias add", 8, "cols", cols); err != nil {
		return err
	}
	if err := positive("bias add", 1, "rows", rows); err != nil {
		return err
	}
	if err := need("bias add input", x, rows*cols, bf16Bytes); err != nil {
		return err
	}
	if err := need("bias", bias, cols, bf16Bytes); err != nil {
		return err
	}
	return d.launch("bias_add", grid1(rows, min(cols/8, 256)), x, bias, int32(cols))
}

// Linear writes out[m][n] = x[m][k] · w[n][k]ᵀ (+ bias[n] when bias is not the zero Buffer),
// all bf16, w row-major as a Hugging Face Linear stores it. n and k must be divisible by 8.
// Up to 8 rows take the matrix-vector kernel, which reads w once at memory speed; more rows
// take cuBLASLt when it loaded, else (or where it failed on the shape) kvfoot's tensor-core
// GEMM. out must not overlap x.
func (d *Device) Linear(out, x, w, bias Buffer, m, n, k int) error {
	return d.linear(gemmAuto, out, x, w, bias, m, n, k)
}

// LinearOut is one output of Linears: Out[m][N] = x·Wᵀ (+ Bias).
type LinearOut struct {
	Out, W, Bias Buffer
	N            int
}

// Linears computes several Linear outputs of the same input x[m][k] (q, k and v; gate and up).
// Up to 8 rows, every three take one matrix-vector launch: a decode step's small projections
// then read their weights in one pass instead of three short ones.
func (d *Device) Linears(x Buffer, m, k int, outs ...LinearOut) error {
	if m > gemvMaxRows {
		for _, o := range outs {
			if err := d.Linear(o.Out, x, o.W, o.Bias, m, o.N, k); err != nil {
				return err
			}
		}
		return nil
	}
	for _, o := range outs {
		if err := checkLinear(o.Out, x, o.W, o.Bias, m, o.N, k); err != nil {
			return err
		}
	}
	for len(outs) > 0 {
		g := outs[:min(3, len(outs))]
		outs = outs[len(g):]
		if err := d.gemv(x, m, k, g); err != nil {
			return err
		}
	}
	return nil
}

// gemv launches the matrix-vector kernel for up to three checked outputs.
func (d *Device) gemv(x Buffer, m, k int, outs []LinearOut) error {
	var o [3]LinearOut
	copy(o[:], outs)
	cols := o[0].N + o[1].N + o[2].N
	return d.launch("gemv_bf16", grid1((cols+7)/8, 256),
		o[0].Out, o[0].W, o[0].Bias, int32(o[0].N), o[1].Out, o[1].W, o[1].Bias, int32(o[1].N),
		o[2].Out, o[2].W, o[2].Bias, int32(o[2].N), x, int32(m), int32(k))
}

// gemmKind picks the GEMM of linear: Linear's choice, or one of the two for tests and
// benchmarks (gemmCublasLt returns cuBLASLt's error instead of falling back).
type gemmKind int

const (
	gemmAuto gemmKind = iota
	gemmOwn
	gemmCublasLt
)

func (d *Device) linear(kind gemmKind, out, x, w, bias Buffer, m, n, k int) error {
	if err := checkLinear(out, x, w, bias, m, n, k); err != nil {
		return err
	}
	if m <= gemvMaxRows {
		return d.gemv(x, m, k, []LinearOut{{out, w, bias, n}})
	}
	if kind == gemmCublasLt && d.lt == nil {
		return fmt.Errorf("cuda: linear: no cuBLASLt (%s)", d.gemmNote)
	}
	if kind != gemmOwn && d.lt != nil {
		err := d.ltLinear(out, x, w, bias, m, n, k)
		var ltErr *ltError
		if err == nil || kind == gemmCublasLt || !errors.As(err, &ltErr) {
			return err
		}
	}
	dims := grid2((n+127)/128, (m+127)/128, 256)
	dims.shared = gemmSharedBytes
	return d.launch("gemm_bf16", dims, out, x, w, bias, int32(m), int32(n), int32(k))
}

// checkLinear checks a Linear's sizes against its buffers.
func checkLinear(out, x, w, bias Buffer, m, n, k int) error {
	if err := positive("linear", 8, "n", n, "k", k); err != nil {
		return err
	}
	if err := positive("linear", 1, "m", m); err != nil {
		return err
	}
	if err := needAll("linear", use{"input", x, m * k, bf16Bytes}, use{"weight", w, n * k, bf16Bytes},
		use{"output", out, m * n, bf16Bytes}); err != nil {
		return err
	}
	if bias.Ptr != 0 {
		if err := need("linear bias", bias, n, bf16Bytes); err != nil {
			return err
		}
	}
	return nil
}

// softmaxScaleLog2 turns an attention scale into the kernels' base-2 exponent scale.
func softmaxScaleLog2(scale float32) float32 { return scale * float32(math.Log2E) }
