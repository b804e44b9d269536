//go:build amd64 && !purego

package tensor

import (
	"encoding/binary"
	"math"
)

// The integer pre-fills of Q4_0, Q5_0, Q4_1, Q5_1 and Q5_K run on the kernels of
// wgemm_int_amd64.go: their levels (0…15 or 0…31) are unsigned codes as they stand, so
// only the repacking and the activations' metadata are their own. Q4_0 and Q5_0 are
// Q8_0's kernel with the level offset 8 or 16 taken out by the starting sum; Q4_1, Q5_1
// (value d·q + m) and Q5_K (d·sc·q − dmin·m) are Q4_K's, their min times a min term of
// the activations. The repacking is Go: per 32 values of a row it builds the levels as
// four 64-bit words and stores them as the panel's eight 4-byte steps.

func init() {
	if hasInt8VNNI {
		gemmInts[&BlockQ4_0] = &gemmIntQ4_0
		gemmInts[&BlockQ5_0] = &gemmIntQ5_0
		gemmInts[&BlockQ4_1] = &gemmIntQ4_1
		gemmInts[&BlockQ5_1] = &gemmIntQ5_1
		gemmInts[&BlockQ5_K] = &gemmIntQ5_K
	}
}

// minRows 17 (every product the GEMM gets): the integer path beat the float one at 17,
// 64 and 512 rows, one thread, 1.3-12x (medians of 3), on SmolLM2-135M's matrices and the 2048x2048 one
// (BenchmarkGemmInt, 2-vCPU Zen 5).
var (
	gemmIntQ4_0 = gemmIntFormat{minRows: 17, group: 32, meta: 2, prepare: prepareQ4_0, repack: repackQ4_0,
		kernel: kernelInt(gemmQ8VNNI, 32, 2)}
	gemmIntQ5_0 = gemmIntFormat{minRows: 17, group: 32, meta: 2, prepare: prepareQ5_0, repack: repackQ5_0,
		kernel: kernelInt(gemmQ8VNNI, 32, 2)}
	gemmIntQ4_1 = gemmIntFormat{minRows: 17, group: 32, meta: 3, prepare: prepareMin32, repack: repackQ4_1,
		kernel: kernelInt(gemmQ4KVNNI, 32, 3)}
	gemmIntQ5_1 = gemmIntFormat{minRows: 17, group: 32, meta: 3, prepare: prepareMin32, repack: repackQ5_1,
		kernel: kernelInt(gemmQ4KVNNI, 32, 3)}
	gemmIntQ5_K = gemmIntFormat{minRows: 17, group: 32, meta: 3, prepare: prepareQ4_K, repack: repackQ5_K,
		kernel: kernelInt(gemmQ4KVNNI, 32, 3)}
)

// repackLevels32 writes the 32 levels of one group of row r (lv, bytes in value order)
// into the panel's group at codes (the layout of wgemm_int_amd64.s: step s of row r
// at 128s + 4r).
func repackLevels32(codes []byte, r int, lv *[4]uint64) {
	c := codes[4*r : 4*r+7*128+4]
	binary.LittleEndian.PutUint32(c[0*128:], uint32(lv[0]))
	binary.LittleEndian.PutUint32(c[1*128:], uint32(lv[0]>>32))
	binary.LittleEndian.PutUint32(c[2*128:], uint32(lv[1]))
	binary.LittleEndian.PutUint32(c[3*128:], uint32(lv[1]>>32))
	binary.LittleEndian.PutUint32(c[4*128:], uint32(lv[2]))
	binary.LittleEndian.PutUint32(c[5*128:], uint32(lv[2]>>32))
	binary.LittleEndian.PutUint32(c[6*128:], uint32(lv[3]))
	binary.LittleEndian.PutUint32(c[7*128:], uint32(lv[3]>>32))
}

const lowNibbles = 0x0f0f0f0f0f0f0f0f

// fifthBits[b] has bit i of b at bit 4 of byte i: a Q5 block's high bits of 8 values.
var fifthBits = func() (t [256]uint64) {
	for b := range t {
		for i := range 8 {
			t[b] |= uint64(b>>i&1) << (8*i + 4)
		}
	}
	return t
}()

// nibbleLevels are the 32 levels of 16 bytes of nibbles: the low nibbles values 0…15,
// the high ones 16…31 (Q4_0, Q4_1, Q5_0, Q5_1); a 5-bit format adds its fifth bits.
func nibbleLevels(qs []byte) [4]uint64 {
	a, b := binary.LittleEndian.Uint64(qs), binary.LittleEndian.Uint64(qs[8:])
	return [4]uint64{a & lowNibbles, b & lowNibbles, a >> 4 & lowNibbles, b >> 4 & lowNibbles}
}

// addFifthBits puts bit i of qh at bit 4 of level i.
func addFifthBits(lv *[4]uint64, qh uint32) {
	for j := range lv {
		lv[j] |= fifthBits[byte(qh>>(8*j))]
	}
}

// repackLegacy repacks a panel of a 32-value format whose block has its half-precision
// d at 0, for mins ≥ 0 a half-precision min m at mins, for qhAt ≥ 0 the fifth bits at
// qhAt, and the nibbles at qsAt; the mins follow the scales, as Q4_K's.
func repackLegacy(codes []byte, scales []float32, rows []byte, rb, n, k, bytes, minAt, qhAt, qsAt int) {
	nb := k / 32
	_, _ = codes[gemmIntPanel*k-1], scales[gemmIntPanel*nb-1]
	if minAt >= 0 {
		_ = scales[2*gemmIntPanel*nb-1]
	}
	for r := range gemmIntPanel {
		row := rows[min(r, n-1)*rb:]
		_ = row[nb*bytes-1]
		for b := range nb {
			blk := row[b*bytes : b*bytes+bytes]
			lv := nibbleLevels(blk[qsAt:])
			if qhAt >= 0 {
				addFifthBits(&lv, binary.LittleEndian.Uint32(blk[qhAt:]))
			}
			repackLevels32(codes[b*1024:], r, &lv)
			scales[b*gemmIntPanel+r] = f16At(blk)
			if minAt >= 0 {
				scales[(nb+b)*gemmIntPanel+r] = f16At(blk[minAt:])
			}
		}
	}
}

func repackQ4_0(codes []byte, scales []float32, rows []byte, rb, n, k int) {
	repackLegacy(codes, scales, rows, rb, n, k, 18, -1, -1, 2)
}

func repackQ5_0(codes []byte, scales []float32, rows []byte, rb, n, k int) {
	repackLegacy(codes, scales, rows, rb, n, k, 22, -1, 2, 6)
}

func repackQ4_1(codes []byte, scales []float32, rows []byte, rb, n, k int) {
	repackLegacy(codes, scales, rows, rb, n, k, 20, 2, -1, 4)
}

func repackQ5_1(codes []byte, scales []float32, rows []byte, rb, n, k int) {
	repackLegacy(codes, scales, rows, rb, n, k, 24, 2, 4, 8)
}

// repackQ5_K: per sub-block pair c of a super-block, the 32 bytes at 48+32c hold group
// 2c in their low nibbles and 2c+1 in their high ones, the fifth bits at bits 2c and
// 2c+1 of the 32 qh bytes; scales d·sc and mins dmin·m as Q4_K's, exact in float32.
func repackQ5_K(codes []byte, scales []float32, rows []byte, rb, n, k int) {
	nb := k / kBlock
	groups := 8 * nb
	_, _ = codes[gemmIntPanel*k-1], scales[2*gemmIntPanel*groups-1]
	for r := range gemmIntPanel {
		row := rows[min(r, n-1)*rb:]
		_ = row[nb*176-1]
		for b := range nb {
			blk := row[b*176 : b*176+176]
			d, dmin := f16At(blk), f16At(blk[2:])
			var qs, qh [4]uint64
			for j := range 4 {
				qh[j] = binary.LittleEndian.Uint64(blk[16+8*j:])
			}
			for c := range 4 {
				for j := range 4 {
					qs[j] = binary.LittleEndian.Uint64(blk[48+32*c+8*j:])
				}
				for half := range 2 {
					sh := uint(2*c + half)
					var lv [4]uint64
					for j := range 4 {
						lv[j] = qs[j]>>(4*half)&lowNibbles | (qh[j]>>sh&0x0101010101010101)<<4
					}
					g := 8*b + 2*c + half
					repackLevels32(codes[g*1024:], r, &lv)
					sc, m := scaleMinK4(2*c+half, blk[4:16])
					scales[g*gemmIntPanel+r] = d * float32(sc)
					scales[(groups+g)*gemmIntPanel+r] = dmin * float32(m)
				}
			}
		}
	}
}

// prepareOffset32 quantizes x as quantizeActQ8_0 does; a group's starting sum is
// −offset·Σq_a, the weights' level offset (Q4_0 8, Q5_0 16) taken out: startSumsQ8's
// −128·Σq_a divided exactly by 128/offset.
func prepareOffset32(qs []int8, meta []uint32, x []float32, scratch actRow, offset int32) {
	d := scratch.D[:len(x)/32]
	quantizeActQ8_0(actRow{Qs: qs, D: d}, x)
	if len(d) == 0 {
		return
	}
	_ = meta[(len(d)-1)*2*gemmIntRows+gemmIntRows]
	startSumsQ8(&qs[0], &meta[0], len(d))
	for g, dg := range d {
		meta[g*2*gemmIntRows] = uint32(int32(meta[g*2*gemmIntRows]) / (128 / offset))
		meta[g*2*gemmIntRows+gemmIntRows] = math.Float32bits(dg)
	}
}

func prepareQ4_0(qs []int8, meta []uint32, x []float32, scratch actRow) {
	prepareOffset32(qs, meta, x, scratch, 8)
}

func prepareQ5_0(qs []int8, meta []uint32, x []float32, scratch actRow) {
	prepareOffset32(qs, meta, x, scratch, 16)
}

// prepareMin32 quantizes x as actQ8_1 (quantizeActQ8_0 and the code sums); a group's
// min term is dₐ·Σq_a, which the weights' min m multiplies.
func prepareMin32(qs []int8, meta []uint32, x []float32, scratch actRow) {
	a := actRow{Qs: qs, D: scratch.D[:len(x)/32], Sums: scratch.Sums[:len(x)/32]}
	quantizeActQ8_0(a, x)
	sumBlocks32(a)
	for g, da := range a.D {
		m := meta[g*3*gemmIntRows:]
		m[0] = 0
		m[gemmIntRows] = math.Float32bits(da)
		m[2*gemmIntRows] = math.Float32bits(da * float32(a.Sums[g]))
	}
}
