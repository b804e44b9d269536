package cuda

// TEMPORARY (branch train-gpu): the signatures of the training kernels (the shared API of
// issue 23, point 1) until engineer K's cuda/train.go is merged; delete this file then.

import "errors"

var errTrainNotBuilt = errors.New("cuda: the training kernels are not built yet (cuda/train_stub.go)")

// BandShape describes attention over one sequence for training: queries [N][QHeads][Dim],
// keys and values [N][KVHeads][Dim] (bf16, RoPE already applied), query head h reading KV
// head h/(QHeads/KVHeads). Window == 0 means full causal attention; Window ≥ 1 streaming
// attention: query i sees keys j ≤ i with j < Sink or j > i−Window. Scale multiplies q·k.
type BandShape struct {
	N, QHeads, KVHeads, Dim int
	Sink, Window            int
	Scale                   float32
}

func (d *Device) AttentionBand(out, lse, q, k, v Buffer, s BandShape) error {
	return errTrainNotBuilt
}

func AttentionBandWorkBytes(s BandShape) int64 { return int64(s.QHeads) * int64(s.N) * f32Bytes }

func (d *Device) AttentionBandBackward(dq, dk, dv, dout, out, lse, q, k, v Buffer, s BandShape, work Buffer) error {
	return errTrainNotBuilt
}

func (d *Device) MixHeads(att, full, stream, z Buffer, n, qHeads, kvHeads, dim int) error {
	return errTrainNotBuilt
}

func (d *Device) MixHeadsBackward(dfull, dstream, dz, datt, full, stream, z Buffer, n, qHeads, kvHeads, dim int) error {
	return errTrainNotBuilt
}

func (d *Device) RMSNormBackward(dres, x, weight, dy Buffer, rows, dim int, eps float32) error {
	return errTrainNotBuilt
}

func (d *Device) SwiGLUBackward(dgate, dup, dact, gate, up Buffer, count int) error {
	return errTrainNotBuilt
}

func (d *Device) CrossEntropy(dlogits, loss, logits, targets Buffer, rows, vocab int, scale float32) error {
	return errTrainNotBuilt
}

func (d *Device) SquaredError(dh, loss, h, t, rows Buffer, count, dim int, g float32) error {
	return errTrainNotBuilt
}

func (d *Device) ToBF16(dst, src Buffer, count int) error { return errTrainNotBuilt }

func (d *Device) AddBF16(dst, src Buffer, count int) error { return errTrainNotBuilt }
