package kv

import (
	"math"
	"slices"
	"strconv"

	"github.com/kvfoot/kvfoot/tensor"
)

// quant is KIVI-style quantized storage (docs/METHODS.md §5.7): asymmetric min-max
// quantization, keys per channel over groups of `group` consecutive tokens, values per
// token over groups of `group` channels, and a full-precision residual of recent
// tokens. Spec: quant:bits=2|4|8,group=G,residual=R (defaults 4, 32, 32).
//
// One simplification of KIVI: a token's key and value are quantized at the same time,
// when `group` tokens older than the `residual` most recent ones have accumulated, so
// between residual and residual+group−1 recent tokens are held in float32.
type quant struct{ bits, group, residual int }

func init() {
	mustAdd(Registration{Name: "quant", Kind: Stored, Example: "quant:bits=4,group=32,residual=32",
		Doc: "KIVI: keys quantized per channel, values per token, recent tokens in float32",
		Params: []Param{
			{Key: "bits", Type: Choice, Default: "4", Choices: []string{"2", "4", "8"}, Doc: "bits per code"},
			{Key: "group", Type: Int, Default: "32", Min: 1, Max: 1 << 20, Doc: "tokens (keys) or channels (values) per scale"},
			{Key: "residual", Type: Int, Default: "32", Min: 0, Max: 1 << 30, Doc: "most recent tokens held in float32"},
		},
		newStorage: func(a Args) (Precision, error) {
			bits, _ := strconv.Atoi(a.Text("bits"))
			return Precision{Name: "quant", Bits: bits, Group: a.Int("group"), Residual: a.Int("residual")}, nil
		}})
}

func (q quant) newStore(d int) store {
	ng := (d + q.group - 1) / q.group
	return &quantStore{quant: q, d: d, rowBytes: (d*q.bits + 7) / 8, vGroups: ng}
}

// quantStore holds quantized rows (older tokens) followed by residual float32 rows.
// Decode dequantizes it a tile at a time (rowStore); view dequantizes every row.
type quantStore struct {
	quant
	d, rowBytes, vGroups int

	kc, vc    []uint8   // packed codes, rowBytes per quantized row
	kg        []int32   // key group of each quantized row
	kmin, ksc []float32 // per key group: d minima and d scales
	vmin, vsc []float32 // per quantized row: vGroups minima and scales
	rk, rv    []float32 // residual rows in float32
	codes     []float32 // scratch
	idx       []int     // drop's scratch
}

var _ rowStore = (*quantStore)(nil)

// quantScratch is one decode part's scratch for the fused kernels.
type quantScratch struct {
	scores []float32 // a key group's scores of every query
	p      []float32 // the query heads' probabilities of a piece's quantized rows, one after another
	qn     []float32 // 4-bit value sums in natural order
	on     []float32 // 4-bit value sums in nibble order
}

// fused reports whether decode can score and sum straight on the packed codes
// (scoreRows, sumRows) instead of dequantizing tiles: 8-bit codes, or 4-bit ones whose
// head dim and value groups are whole blocks of 32 (tensor.NibbleOrder).
func (s *quantStore) fused() bool {
	return s.bits == 8 || s.bits == 4 && s.d%32 == 0 && s.group%32 == 0
}

// scoreRows sets scr[h][t] = q_h·key(t) for the m = len(scr) query heads of one KV
// head (q [m, d]) and keys [j0, j1): over each run of rows of one key group,
// q·(code·scale + min), tensor.DotRowsU8/U4 for all the heads at once (they share each
// row's widening).
func (s *quantStore) scoreRows(scr [][]float32, q []float32, j0, j1 int, sc *quantScratch) {
	d, nq, m := s.d, s.nq(), len(scr)
	q = q[:m*d]
	for t := j0; t < min(j1, nq); {
		g := s.kg[t]
		e := t + 1
		for e < min(j1, nq) && s.kg[e] == g {
			e++
		}
		ksc, kmin := s.ksc[int(g)*d:int(g+1)*d], s.kmin[int(g)*d:int(g+1)*d]
		n, codes, all := e-t, s.kc[t*s.rowBytes:e*s.rowBytes], grow(&sc.scores, m*(e-t))
		if s.bits == 8 {
			tensor.DotRowsU8(all, q, m, codes, s.rowBytes, ksc, kmin)
		} else {
			tensor.DotRowsU4(all, q, m, codes, s.rowBytes, ksc, kmin)
		}
		for h := range m {
			copy(scr[h][t:e], all[h*n:(h+1)*n])
		}
		t = e
	}
	if j1 > nq {
		a := max(j0, nq)
		for h := range m {
			tensor.DotRows(scr[h][a:j1], s.rk[(a-nq)*d:(j1-nq)*d], q[h*d:(h+1)*d])
		}
	}
}

// sumRows adds Σ_t scr[h][t]·value(t) over values [j0, j1) into o[h*d:(h+1)*d] for
// every query head h of the KV head (len(scr) of them), the quantized rows dequantized
// in registers with their groups' scales and minima, once for all the heads.
func (s *quantStore) sumRows(o []float32, scr [][]float32, j0, j1 int, sc *quantScratch) {
	d, nq, ng, m := s.d, s.nq(), s.vGroups, len(scr)
	if q1 := min(j1, nq); j0 < q1 {
		n := q1 - j0
		p := grow(&sc.p, m*n)
		for h, row := range scr {
			copy(p[h*n:(h+1)*n], row[j0:q1])
		}
		codes, vsc, vmin := s.vc[j0*s.rowBytes:q1*s.rowBytes], s.vsc[j0*ng:q1*ng], s.vmin[j0*ng:q1*ng]
		if s.bits == 8 {
			tensor.AxpyDequantU8(o[:m*d], p, m, codes, s.rowBytes, vsc, vmin, s.group)
		} else {
			on := grow(&sc.on, m*d)
			clear(on)
			tensor.AxpyDequantU4(on, p, m, codes, s.rowBytes, vsc, vmin, s.group)
			qn := grow(&sc.qn, m*d)
			tensor.NibbleUnorder(qn, on)
			tensor.Axpy(1, qn, o[:m*d])
		}
	}
	if j1 > nq {
		a := max(j0, nq)
		for h, row := range scr {
			tensor.AxpyRows(o[h*d:(h+1)*d], row[a:j1], s.rv[(a-nq)*d:(j1-nq)*d])
		}
	}
}

func (s *quantStore) nq() int { return len(s.kg) }
func (s *quantStore) nr() int { return len(s.rk) / s.d }

func (s *quantStore) appendRows(k, v []float32, n, stride int) {
	d := s.d
	s.rk, s.rv = slices.Grow(s.rk, n*d), slices.Grow(s.rv, n*d)
	for i := 0; i < n; i++ {
		s.rk = append(s.rk, k[i*stride:i*stride+d]...)
		s.rv = append(s.rv, v[i*stride:i*stride+d]...)
	}
	// Quantize every whole group past the residual, then move the rest down once, so
	// that a long append (a pre-fill chunk) stays linear in its length.
	off := 0
	for s.nr()-off/d >= s.residual+s.group {
		s.flush(off)
		off += s.group * d
	}
	if off > 0 {
		s.rk = s.rk[:copy(s.rk, s.rk[off:])]
		s.rv = s.rv[:copy(s.rv, s.rv[off:])]
	}
}

// flush quantizes the `group` residual rows that start at float off.
func (s *quantStore) flush(off int) {
	d, g := s.d, s.group
	rk, rv := s.rk[off:], s.rv[off:]
	levels := float32(int(1)<<s.bits - 1)
	gid := int32(len(s.kmin) / d)
	// Keys: one min/scale per channel over the g tokens.
	for c := 0; c < d; c++ {
		lo, hi := float32(math.Inf(1)), float32(math.Inf(-1))
		for t := 0; t < g; t++ {
			x := rk[t*d+c]
			lo, hi = min(lo, x), max(hi, x)
		}
		s.kmin = append(s.kmin, lo)
		s.ksc = append(s.ksc, (hi-lo)/levels)
	}
	kmin, ksc := s.kmin[int(gid)*d:], s.ksc[int(gid)*d:]
	s.codes = grow(&s.codes, d)
	for t := 0; t < g; t++ {
		row := rk[t*d : (t+1)*d]
		for c, x := range row {
			s.codes[c] = quantize(x, kmin[c], ksc[c], levels)
		}
		s.kc = s.pack(s.kc, s.codes)
		s.kg = append(s.kg, gid)
		// Values: per token, one min/scale per group of channels.
		row = rv[t*d : (t+1)*d]
		for c0 := 0; c0 < d; c0 += g {
			part := row[c0:min(c0+g, d)]
			lo, hi := part[0], part[0]
			for _, x := range part {
				lo, hi = min(lo, x), max(hi, x)
			}
			sc := (hi - lo) / levels
			s.vmin = append(s.vmin, lo)
			s.vsc = append(s.vsc, sc)
			for c, x := range part {
				s.codes[c0+c] = quantize(x, lo, sc, levels)
			}
		}
		s.vc = s.pack(s.vc, s.codes)
	}
}

func quantize(x, lo, sc, levels float32) float32 {
	if sc == 0 {
		return 0
	}
	return min(max(float32(math.RoundToEven(float64((x-lo)/sc))), 0), levels)
}

// pack appends d codes of s.bits bits each, little-end first within a byte.
func (s *quantStore) pack(dst []uint8, codes []float32) []uint8 {
	per := 8 / s.bits
	for i := 0; i < len(codes); i += per {
		var b uint8
		for j := 0; j < per && i+j < len(codes); j++ {
			b |= uint8(codes[i+j]) << (j * s.bits)
		}
		dst = append(dst, b)
	}
	return dst
}

// unpack writes the d codes of one packed row into codes.
func (s *quantStore) unpack(codes []float32, row []uint8) {
	per, mask := 8/s.bits, uint8(int(1)<<s.bits-1)
	c := 0
	for _, b := range row {
		for j := 0; j < per && c < len(codes); j++ {
			codes[c] = float32(b & mask)
			b >>= s.bits
			c++
		}
	}
}

func (s *quantStore) view(kbuf, vbuf *[]float32) ([]float32, []float32) {
	d, nq := s.d, s.nq()
	n := nq + s.nr()
	k, v := grow(kbuf, n*d), grow(vbuf, n*d)
	codes := grow(&s.codes, d)
	for t := 0; t < nq; t++ {
		s.unpack(codes, s.kc[t*s.rowBytes:(t+1)*s.rowBytes])
		g := int(s.kg[t]) * d
		kmin, ksc := s.kmin[g:g+d], s.ksc[g:g+d]
		for c, x := range codes {
			k[t*d+c] = x*ksc[c] + kmin[c]
		}
		s.unpack(codes, s.vc[t*s.rowBytes:(t+1)*s.rowBytes])
		vmin, vsc := s.vmin[t*s.vGroups:], s.vsc[t*s.vGroups:]
		for c0, vg := 0, 0; c0 < d; c0, vg = c0+s.group, vg+1 {
			for c := c0; c < min(c0+s.group, d); c++ {
				v[t*d+c] = codes[c]*vsc[vg] + vmin[vg]
			}
		}
	}
	copy(k[nq*d:], s.rk)
	copy(v[nq*d:], s.rv)
	return k, v
}

func (s *quantStore) keep(idx []int) {
	nq := s.nq()
	split := 0
	for split < len(idx) && idx[split] < nq {
		split++
	}
	qi, ri := idx[:split], idx[split:]
	s.kc = keepRows(s.kc, qi, s.rowBytes)
	s.vc = keepRows(s.vc, qi, s.rowBytes)
	s.kg = keepRows(s.kg, qi, 1)
	s.vmin = keepRows(s.vmin, qi, s.vGroups)
	s.vsc = keepRows(s.vsc, qi, s.vGroups)
	for i, j := range ri {
		copy(s.rk[i*s.d:(i+1)*s.d], s.rk[(j-nq)*s.d:(j-nq+1)*s.d])
		copy(s.rv[i*s.d:(i+1)*s.d], s.rv[(j-nq)*s.d:(j-nq+1)*s.d])
	}
	s.rk, s.rv = s.rk[:len(ri)*s.d], s.rv[:len(ri)*s.d]
	s.compactGroups()
}

// compactGroups drops key groups that lost all their rows; groups stay in row order.
func (s *quantStore) compactGroups() {
	d := s.d
	next, last := int32(0), int32(-1)
	for t, g := range s.kg {
		if g != last {
			last = g
			if g != next {
				copy(s.kmin[int(next)*d:int(next+1)*d], s.kmin[int(g)*d:int(g+1)*d])
				copy(s.ksc[int(next)*d:int(next+1)*d], s.ksc[int(g)*d:int(g+1)*d])
			}
			next++
		}
		s.kg[t] = next - 1
	}
	s.kmin, s.ksc = s.kmin[:int(next)*d], s.ksc[:int(next)*d]
}

// drop keeps the rest by keep: a quantized run's rows share their groups' scales.
func (s *quantStore) drop(lo, hi int) {
	s.idx = AppendKept(s.idx[:0], s.nq()+s.nr(), lo, hi)
	s.keep(s.idx)
}

func (s *quantStore) truncate(n int) { s.drop(n, s.nq()+s.nr()) }

func (s *quantStore) bytes() int64 {
	return int64(len(s.kc)+len(s.vc)) + 4*int64(len(s.kmin)+len(s.ksc)+len(s.vmin)+len(s.vsc)+len(s.rk)+len(s.rv))
}

// keyRows dequantizes keys [j0, j1) into dst (the decode kernel's tile), each row with
// its own key group's scales, so a tile may start and end anywhere (pieces and evictions
// leave groups cut); rows past the quantized ones come from the residual.
func (s *quantStore) keyRows(dst []float32, j0, j1 int) {
	d, nq := s.d, s.nq()
	for t := j0; t < min(j1, nq); t++ {
		g := int(s.kg[t]) * d
		s.dequant(dst[(t-j0)*d:(t-j0+1)*d], s.kc[t*s.rowBytes:(t+1)*s.rowBytes], s.ksc[g:g+d], s.kmin[g:g+d])
	}
	if j1 > nq {
		a := max(j0, nq)
		copy(dst[(a-j0)*d:(j1-j0)*d], s.rk[(a-nq)*d:(j1-nq)*d])
	}
}

// valueRows dequantizes values [j0, j1) into dst: per row, one scale and minimum per
// group of channels.
func (s *quantStore) valueRows(dst []float32, j0, j1 int) {
	d, nq, G := s.d, s.nq(), s.group
	for t := j0; t < min(j1, nq); t++ {
		row := dst[(t-j0)*d : (t-j0+1)*d]
		codes := s.vc[t*s.rowBytes : (t+1)*s.rowBytes]
		vmin, vsc := s.vmin[t*s.vGroups:(t+1)*s.vGroups], s.vsc[t*s.vGroups:(t+1)*s.vGroups]
		for vg, c0 := 0, 0; c0 < d; vg, c0 = vg+1, c0+G {
			c1 := min(c0+G, d)
			if per := 8 / s.bits; c0%per == 0 && (c1%per == 0 || c1 == d) {
				s.dequant1(row[c0:c1], codes[c0/per:], vsc[vg], vmin[vg])
				continue
			}
			for c := c0; c < c1; c++ { // a group that splits a byte (G not a multiple of 8/bits)
				row[c] = s.code(codes, c)*vsc[vg] + vmin[vg]
			}
		}
	}
	if j1 > nq {
		a := max(j0, nq)
		copy(dst[(a-j0)*d:(j1-j0)*d], s.rv[(a-nq)*d:(j1-nq)*d])
	}
}

// code is code number c of a packed row.
func (s *quantStore) code(row []uint8, c int) float32 {
	per := 8 / s.bits
	return float32(row[c/per] >> (c % per * s.bits) & uint8(int(1)<<s.bits-1))
}

// dequant writes dst[c] = code[c]·sc[c] + mn[c] for the len(dst) codes packed in row
// (per-channel scales: keys).
func (s *quantStore) dequant(dst []float32, row []uint8, sc, mn []float32) {
	n := len(dst)
	sc, mn = sc[:n], mn[:n]
	switch s.bits {
	case 8:
		row = row[:n]
		for c, b := range row {
			dst[c] = float32(b)*sc[c] + mn[c]
		}
	case 4:
		c := 0
		for _, b := range row[:n/2] {
			dst[c] = float32(b&15)*sc[c] + mn[c]
			dst[c+1] = float32(b>>4)*sc[c+1] + mn[c+1]
			c += 2
		}
		for ; c < n; c++ {
			dst[c] = s.code(row, c)*sc[c] + mn[c]
		}
	default: // 2
		c := 0
		for _, b := range row[:n/4] {
			dst[c] = float32(b&3)*sc[c] + mn[c]
			dst[c+1] = float32(b>>2&3)*sc[c+1] + mn[c+1]
			dst[c+2] = float32(b>>4&3)*sc[c+2] + mn[c+2]
			dst[c+3] = float32(b>>6)*sc[c+3] + mn[c+3]
			c += 4
		}
		for ; c < n; c++ {
			dst[c] = s.code(row, c)*sc[c] + mn[c]
		}
	}
}

// dequant1 is dequant with one scale and minimum for all len(dst) codes (a value group),
// the codes starting at a byte boundary of row.
func (s *quantStore) dequant1(dst []float32, row []uint8, sc, mn float32) {
	n := len(dst)
	switch s.bits {
	case 8:
		for c, b := range row[:n] {
			dst[c] = float32(b)*sc + mn
		}
	case 4:
		c := 0
		for _, b := range row[:n/2] {
			dst[c] = float32(b&15)*sc + mn
			dst[c+1] = float32(b>>4)*sc + mn
			c += 2
		}
		if c < n {
			dst[c] = float32(row[c/2]&15)*sc + mn
		}
	default: // 2
		c := 0
		for _, b := range row[:n/4] {
			dst[c] = float32(b&3)*sc + mn
			dst[c+1] = float32(b>>2&3)*sc + mn
			dst[c+2] = float32(b>>4&3)*sc + mn
			dst[c+3] = float32(b>>6)*sc + mn
			c += 4
		}
		for ; c < n; c++ {
			dst[c] = s.code(row, c)*sc + mn
		}
	}
}
