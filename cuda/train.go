package cuda

import (
	"fmt"
	"math"
)

// Mask training's kernels (kernels/train.cu): attention over a full or streaming band with its
// backward, and the backward passes of the row and element ops, for gpu's twin of train.Net.
// Activations are bf16; lse, delta, gate values, dz, losses and the residual gradient are f32.

// The geometry of kernels/train.cu's attention: tiles of trainTile queries and keys (TILE);
// forward and dQ CTAs of 4 warps (16 query rows each), dK/dV CTAs of two halves of 4 warps (16
// keys each) walking query tiles of trainDKDVRows(dim) rows (QT).
const (
	trainTile        = 64
	trainAttnThreads = 128
	trainDKDVThreads = 256
	trainThreads     = 256
	trainRowBlock    = 1024 // threads of a cross-entropy row and of a KV head's dz sum
)

func trainDKDVRows(dim int) int {
	if dim == 64 {
		return 64
	}
	return 32
}

// The attention kernels' dynamic shared memory: bf16 tiles of dim + 8 values a row (the forward:
// Q and two stages of K and V; dQ adds dout; dK/dV: K, V and two stages of each half's Q and
// dout tiles, with their rows' lse and delta in f32). The largest, dQ's and dK/dV's of 128,
// take 102 and 103 KiB: within the A100's 163 KiB a CTA.
func trainFwdSharedBytes(dim int) int { return 5 * trainTile * (dim + 8) * bf16Bytes }
func trainDQSharedBytes(dim int) int  { return 6 * trainTile * (dim + 8) * bf16Bytes }
func trainDKDVSharedBytes(dim int) int {
	qt := trainDKDVRows(dim)
	return (2*trainTile+8*qt)*(dim+8)*bf16Bytes + 8*qt*f32Bytes
}

// The attention kernels' shared memory is raised at load (all but the forward of 64 take more
// than the default 48 KiB).
func init() {
	for _, dim := range []int{64, 128} {
		dynamicShared[fmt.Sprintf("train_attn_fwd_d%d", dim)] = trainFwdSharedBytes(dim)
		dynamicShared[fmt.Sprintf("train_attn_dq_d%d", dim)] = trainDQSharedBytes(dim)
		dynamicShared[fmt.Sprintf("train_attn_dkdv_d%d", dim)] = trainDKDVSharedBytes(dim)
	}
}

// BandShape describes attention over one sequence for training: queries [N][QHeads][Dim],
// keys and values [N][KVHeads][Dim] (bf16, RoPE already applied), query head h reading KV
// head h/(QHeads/KVHeads). Window == 0 means full causal attention (query i sees keys
// 0..i; Sink is then ignored); Window ≥ 1 means streaming attention: query i sees keys
// j ≤ i with j < Sink or j > i−Window (train/attention.go's band.visible, the CPU trainer's
// definition). Scale multiplies q·k (1/sqrt(Dim) for Llama).
type BandShape struct {
	N, QHeads, KVHeads, Dim int
	Sink, Window            int
	Scale                   float32
}

// check refuses shapes the kernels do not take, naming op and the size.
func (s BandShape) check(op string) error {
	if s.Dim != 64 && s.Dim != 128 {
		return fmt.Errorf("cuda: %s: head dimension %d; the training kernels take 64 or 128", op, s.Dim)
	}
	if err := positive(op, 1, "tokens", s.N, "query heads", s.QHeads, "KV heads", s.KVHeads); err != nil {
		return err
	}
	if s.QHeads%s.KVHeads != 0 {
		return fmt.Errorf("cuda: %s: %d query heads do not divide over %d KV heads", op, s.QHeads, s.KVHeads)
	}
	if s.Sink < 0 || s.Window < 0 {
		return fmt.Errorf("cuda: %s: sink %d and window %d must not be negative", op, s.Sink, s.Window)
	}
	if !(s.Scale > 0) || math.IsInf(float64(s.Scale), 0) {
		return fmt.Errorf("cuda: %s: scale %g must be positive and finite", op, s.Scale)
	}
	if int64(s.N)*int64(s.QHeads)*int64(s.Dim) > math.MaxInt32 {
		return fmt.Errorf("cuda: %s: %d tokens of %d query heads of %d exceed the kernels' 32-bit row indices", op, s.N, s.QHeads, s.Dim)
	}
	return nil
}

// bandBuffers checks the buffers every attention call reads: q, k, v and lse.
func (s BandShape) bandBuffers(op string, q, k, v, lse Buffer) error {
	return needAll(op, use{"queries", q, s.N * s.QHeads * s.Dim, bf16Bytes}, use{"keys", k, s.N * s.KVHeads * s.Dim, bf16Bytes},
		use{"values", v, s.N * s.KVHeads * s.Dim, bf16Bytes}, use{"lse", lse, s.QHeads * s.N, f32Bytes})
}

// sinkWindow is the kernels' sink and window: 0 and 0 for a full band.
func (s BandShape) sinkWindow() (int32, int32) {
	if s.Window == 0 {
		return 0, 0
	}
	return int32(s.Sink), int32(s.Window)
}

// AttentionBand writes out [N][QHeads][Dim] bf16 = softmax(scale·q·kᵀ over the visible keys)·v
// and lse [QHeads][N] f32 = the natural-log log-sum-exp of each query's scaled scores.
func (d *Device) AttentionBand(out, lse, q, k, v Buffer, s BandShape) error {
	const op = "band attention"
	if err := s.check(op); err != nil {
		return err
	}
	if err := s.bandBuffers(op, q, k, v, lse); err != nil {
		return err
	}
	if err := need(op+" output", out, s.N*s.QHeads*s.Dim, bf16Bytes); err != nil {
		return err
	}
	sink, window := s.sinkWindow()
	dims := grid2((s.N+trainTile-1)/trainTile, s.QHeads, trainAttnThreads)
	dims.shared = uint32(trainFwdSharedBytes(s.Dim))
	return d.launch(fmt.Sprintf("train_attn_fwd_d%d", s.Dim), dims,
		out, lse, q, k, v, int32(s.N), int32(s.QHeads), int32(s.KVHeads), sink, window, softmaxScaleLog2(s.Scale))
}

// AttentionBandWorkBytes is the f32 scratch AttentionBandBackward needs (delta: QHeads·N).
func AttentionBandWorkBytes(s BandShape) int64 { return int64(s.QHeads) * int64(s.N) * f32Bytes }

// AttentionBandBackward writes dq [N][QHeads][Dim], dk and dv [N][KVHeads][Dim] (bf16,
// overwritten, not accumulated; dk/dv summed over each KV head's query heads) from dout
// [N][QHeads][Dim] bf16, the forward's out and lse, and q, k, v. work holds
// AttentionBandWorkBytes(s) bytes.
func (d *Device) AttentionBandBackward(dq, dk, dv, dout, out, lse, q, k, v Buffer, s BandShape, work Buffer) error {
	const op = "band attention backward"
	if err := s.check(op); err != nil {
		return err
	}
	if err := s.bandBuffers(op, q, k, v, lse); err != nil {
		return err
	}
	qs, ks := s.N*s.QHeads*s.Dim, s.N*s.KVHeads*s.Dim
	if err := needAll(op, use{"output gradient", dout, qs, bf16Bytes}, use{"forward output", out, qs, bf16Bytes},
		use{"query gradient", dq, qs, bf16Bytes}, use{"key gradient", dk, ks, bf16Bytes}, use{"value gradient", dv, ks, bf16Bytes},
		use{"workspace", work, int(AttentionBandWorkBytes(s)), 1}); err != nil {
		return err
	}
	delta := Buffer{Ptr: work.Ptr, Bytes: AttentionBandWorkBytes(s)}
	rows := s.N * s.QHeads
	if err := d.launch("train_attn_delta", grid1((rows+7)/8, trainThreads), delta, dout, out, int32(s.N), int32(s.QHeads), int32(s.Dim)); err != nil {
		return err
	}
	sink, window := s.sinkWindow()
	tiles := (s.N + trainTile - 1) / trainTile
	scale, scaleLog2 := s.Scale, softmaxScaleLog2(s.Scale)
	dkdv := grid2(tiles, s.KVHeads, trainDKDVThreads)
	dkdv.shared = uint32(trainDKDVSharedBytes(s.Dim))
	if err := d.launch(fmt.Sprintf("train_attn_dkdv_d%d", s.Dim), dkdv, dk, dv, dout, lse, delta, q, k, v,
		int32(s.N), int32(s.QHeads), int32(s.KVHeads), sink, window, scale, scaleLog2); err != nil {
		return err
	}
	dqd := grid2(tiles, s.QHeads, trainAttnThreads)
	dqd.shared = uint32(trainDQSharedBytes(s.Dim))
	return d.launch(fmt.Sprintf("train_attn_dq_d%d", s.Dim), dqd, dq, dout, lse, delta, q, k, v,
		int32(s.N), int32(s.QHeads), int32(s.KVHeads), sink, window, scale, scaleLog2)
}

// mixShape checks MixHeads' sizes and returns the values count.
func mixShape(op string, n, qHeads, kvHeads, dim int) (int, error) {
	if err := positive(op, 1, "tokens", n, "query heads", qHeads, "KV heads", kvHeads); err != nil {
		return 0, err
	}
	if err := positive(op, 8, "dim", dim); err != nil {
		return 0, err
	}
	if qHeads%kvHeads != 0 {
		return 0, fmt.Errorf("cuda: %s: %d query heads do not divide over %d KV heads", op, qHeads, kvHeads)
	}
	return n * qHeads * dim, nil
}

// MixHeads writes att = z[g]·full + (1−z[g])·stream for every query head of KV head g
// (att, full, stream [N][QHeads][Dim] bf16; z [KVHeads] f32); att may not alias the inputs.
func (d *Device) MixHeads(att, full, stream, z Buffer, n, qHeads, kvHeads, dim int) error {
	const op = "mix heads"
	count, err := mixShape(op, n, qHeads, kvHeads, dim)
	if err != nil {
		return err
	}
	if err := needAll(op, use{"output", att, count, bf16Bytes}, use{"full attention", full, count, bf16Bytes},
		use{"streaming attention", stream, count, bf16Bytes}, use{"gates", z, kvHeads, f32Bytes}); err != nil {
		return err
	}
	return d.launch("train_mix_heads", grid1(blocksFor(count), trainThreads), att, full, stream, z,
		int64(count), int32(dim), int32(qHeads), int32(qHeads/kvHeads))
}

// MixHeadsBackward writes dfull = z[g]·datt and dstream = (1−z[g])·datt (bf16) and ADDS
// Σ over tokens, g's query heads and dim of datt·(full − stream) to dz[g] (f32 [KVHeads]).
// One CTA a KV head sums its dz, so the sum is the same from run to run.
func (d *Device) MixHeadsBackward(dfull, dstream, dz, datt, full, stream, z Buffer, n, qHeads, kvHeads, dim int) error {
	const op = "mix heads backward"
	count, err := mixShape(op, n, qHeads, kvHeads, dim)
	if err != nil {
		return err
	}
	if err := needAll(op, use{"full gradient", dfull, count, bf16Bytes}, use{"streaming gradient", dstream, count, bf16Bytes},
		use{"output gradient", datt, count, bf16Bytes}, use{"full attention", full, count, bf16Bytes},
		use{"streaming attention", stream, count, bf16Bytes}, use{"gates", z, kvHeads, f32Bytes},
		use{"gate gradient", dz, kvHeads, f32Bytes}); err != nil {
		return err
	}
	return d.launch("train_mix_heads_backward", grid1(kvHeads, trainRowBlock), dfull, dstream, dz, datt, full, stream, z,
		int32(n), int32(dim), int32(qHeads), int32(qHeads/kvHeads))
}

// RMSNormBackward ADDS to dres (f32 [rows][dim]) the gradient with respect to x of
// y = x / sqrt(mean(x²)+eps) · weight, given dy (bf16), x (bf16) and weight (bf16 [dim]).
func (d *Device) RMSNormBackward(dres, x, weight, dy Buffer, rows, dim int, eps float32) error {
	const op = "rmsnorm backward"
	if err := positive(op, 1, "rows", rows, "dim", dim); err != nil {
		return err
	}
	if err := needAll(op, use{"input", x, rows * dim, bf16Bytes}, use{"output gradient", dy, rows * dim, bf16Bytes},
		use{"weight", weight, dim, bf16Bytes}, use{"residual gradient", dres, rows * dim, f32Bytes}); err != nil {
		return err
	}
	return d.launch("train_rmsnorm_backward", grid1(rows, trainThreads), dres, x, weight, dy, int32(dim), eps)
}

// SwiGLUBackward writes dgate and dup (bf16) for act = silu(gate)·up from dact, gate, up
// (bf16, count values); dgate/dup may alias gate/up (each element is read before written).
// count must be divisible by 8.
func (d *Device) SwiGLUBackward(dgate, dup, dact, gate, up Buffer, count int) error {
	const op = "swiglu backward"
	if err := positive(op, 8, "count", count); err != nil {
		return err
	}
	if err := needAll(op, use{"gate gradient", dgate, count, bf16Bytes}, use{"up gradient", dup, count, bf16Bytes},
		use{"output gradient", dact, count, bf16Bytes}, use{"gate", gate, count, bf16Bytes}, use{"up", up, count, bf16Bytes}); err != nil {
		return err
	}
	return d.launch("train_swiglu_backward", grid1(blocksFor(count), trainThreads), dgate, dup, dact, gate, up, int64(count))
}

// CrossEntropy, for rows of logits [rows][vocab] bf16 and targets [rows] int32 (−1: no
// label), writes loss [rows] f32 = −log softmax(row)[target] (0 where no label) and
// dlogits [rows][vocab] bf16 = scale·(softmax(row) − onehot(target)) (all 0 where no
// label). dlogits may alias logits. The targets are on the device, so a target outside
// [−1, vocab) cannot be refused here: its row's loss is NaN and its dlogits 0.
func (d *Device) CrossEntropy(dlogits, loss, logits, targets Buffer, rows, vocab int, scale float32) error {
	const op = "cross-entropy"
	if err := positive(op, 1, "rows", rows, "vocab", vocab); err != nil {
		return err
	}
	if err := needAll(op, use{"logits", logits, rows * vocab, bf16Bytes}, use{"logit gradient", dlogits, rows * vocab, bf16Bytes},
		use{"targets", targets, rows, i32Bytes}, use{"loss", loss, rows, f32Bytes}); err != nil {
		return err
	}
	return d.launch("train_cross_entropy", grid1(rows, trainRowBlock), dlogits, loss, logits, targets, int32(vocab), scale)
}

// SquaredError, for the listed rows (rows [count] int32 of [0, n)), writes loss[i] f32 =
// Σ_j (h[r][j] − t[r][j])² over dim for each listed row r = rows[i], and sets
// dh[r] = g·(h[r] − t[r]) (bf16; other rows of dh untouched). h bf16, t f32 ([n][dim]).
// The row list is on the device and cannot be checked here: a row outside [0, n) (n the rows
// that h, t and dh all hold) gets loss NaN and writes nothing.
func (d *Device) SquaredError(dh, loss, h, t, rows Buffer, count, dim int, g float32) error {
	const op = "squared error"
	if err := positive(op, 1, "rows", count, "dim", dim); err != nil {
		return err
	}
	n := int(min(h.Bytes/int64(dim*bf16Bytes), dh.Bytes/int64(dim*bf16Bytes), t.Bytes/int64(dim*f32Bytes)))
	if n == 0 {
		return fmt.Errorf("cuda: %s: hidden states (%d bytes), targets (%d) and gradient (%d) do not all hold a row of %d values", op, h.Bytes, t.Bytes, dh.Bytes, dim)
	}
	if err := needAll(op, use{"hidden states", h, n * dim, bf16Bytes}, use{"gradient", dh, n * dim, bf16Bytes},
		use{"targets", t, n * dim, f32Bytes}, use{"row list", rows, count, i32Bytes}, use{"loss", loss, count, f32Bytes}); err != nil {
		return err
	}
	return d.launch("train_squared_error", grid1(count, trainThreads), dh, loss, h, t, rows, int32(n), int32(dim), g)
}

// ToBF16 writes dst (bf16) = src (f32) over count values.
func (d *Device) ToBF16(dst, src Buffer, count int) error {
	if err := convertShape("to bf16", dst, bf16Bytes, src, f32Bytes, count); err != nil {
		return err
	}
	return d.launch("train_to_bf16", grid1(min((count+trainThreads-1)/trainThreads, 4096), trainThreads), dst, src, int64(count))
}

// AddBF16 adds src (bf16) into dst (f32) over count values.
func (d *Device) AddBF16(dst, src Buffer, count int) error {
	if err := convertShape("add bf16", dst, f32Bytes, src, bf16Bytes, count); err != nil {
		return err
	}
	return d.launch("train_add_bf16", grid1(min((count+trainThreads-1)/trainThreads, 4096), trainThreads), dst, src, int64(count))
}

func convertShape(op string, dst Buffer, dstSize int, src Buffer, srcSize int, count int) error {
	if err := positive(op, 1, "count", count); err != nil {
		return err
	}
	if err := need(op+" destination", dst, count, dstSize); err != nil {
		return err
	}
	return need(op+" source", src, count, srcSize)
}
