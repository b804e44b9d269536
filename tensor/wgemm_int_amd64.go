//go:build amd64 && !purego

package tensor

import "math"

//go:noescape
func gemmQ8VNNI(a *int8, lda int, meta *uint32, codes *byte, scales *float32, groups int, dst *float32, ldc int)

//go:noescape
func gemmQ6VNNI(a *int8, lda int, meta *uint32, codes *byte, scales *float32, groups int, dst *float32, ldc int)

//go:noescape
func gemmQ4KVNNI(a *int8, lda int, meta *uint32, codes *byte, scales *float32, groups int, dst *float32, ldc int)

//go:noescape
func startSumsQ8(qs *int8, meta *uint32, nb int)

//go:noescape
func repackQ8_0VNNI(src *byte, offs *int32, offs64 *int64, nb int, codes *byte, scales *float32)

//go:noescape
func repackQ4_KVNNI(src *byte, offs *int32, offs64 *int64, nb int, codes *byte, scales, mins *float32)

//go:noescape
func repackQ6_KVNNI(src *byte, offs *int32, offs64 *int64, nb int, codes *byte, scales *float32)

func init() {
	if hasInt8VNNI {
		gemmInts[&BlockQ8_0] = &gemmIntQ8_0
		gemmInts[&BlockQ4_K] = &gemmIntQ4_K
		gemmInts[&BlockQ6_K] = &gemmIntQ6_K
	}
}

// The formats' integer pre-fills, with the activations of their decode dots: the
// unsigned codes VPDPBUSD wants are Q8_0's offset by 128, Q4_K's levels (0…15, with
// the min apart) and Q6_K's (0…63, value level − 32); each group's starting sum
// −offset·Σq_a takes the offset back out. minRows 17 is every product the GEMM gets
// (more rows than smallM): on the Llama-3.2-1B shape's matrices the integer path beat
// the float one at 17, 64 and 512 rows, one and two threads, 2-40x (BenchmarkGemmInt,
// 2-vCPU Zen 5).
var (
	gemmIntQ8_0 = gemmIntFormat{minRows: 17, group: 32, meta: 2, prepare: prepareQ8_0, repack: repackQ8_0,
		kernel: kernelInt(gemmQ8VNNI, 32, 2)}
	gemmIntQ4_K = gemmIntFormat{minRows: 17, group: 32, meta: 3, prepare: prepareQ4_K, repack: repackQ4_K,
		kernel: kernelInt(gemmQ4KVNNI, 32, 3)}
	gemmIntQ6_K = gemmIntFormat{minRows: 17, group: 16, meta: 2, prepare: prepareQ6_K, repack: repackQ6_K,
		kernel: kernelInt(gemmQ6VNNI, 16, 2)}
)

// prepareQ8_0 quantizes x as quantizeActQ8_0 does; a group's starting sum is −128·Σq_a.
func prepareQ8_0(qs []int8, meta []uint32, x []float32, scratch actRow) {
	d := scratch.D[:len(x)/32]
	quantizeActQ8_0(actRow{Qs: qs, D: d}, x)
	if len(d) == 0 {
		return
	}
	_ = meta[(len(d)-1)*2*gemmIntRows+gemmIntRows]
	startSumsQ8(&qs[0], &meta[0], len(d))
	for g, dg := range d {
		meta[g*2*gemmIntRows+gemmIntRows] = math.Float32bits(dg)
	}
}

// prepareQ4_K quantizes x as quantizeActQ8_K does; a group's min term is −dₐ·Σq_a.
func prepareQ4_K(qs []int8, meta []uint32, x []float32, scratch actRow) {
	a := actRow{Qs: qs, D: scratch.D[:len(x)/kBlock], Sums: scratch.Sums[:len(x)/16]}
	quantizeActQ8_K(a, x)
	for g := range len(x) / 32 {
		da := a.D[g/8]
		m := meta[g*3*gemmIntRows:]
		m[0] = 0
		m[gemmIntRows] = math.Float32bits(da)
		m[2*gemmIntRows] = math.Float32bits(-da * float32(int32(a.Sums[2*g])+int32(a.Sums[2*g+1])))
	}
}

// prepareQ6_K quantizes x as quantizeActQ8_K does.
func prepareQ6_K(qs []int8, meta []uint32, x []float32, scratch actRow) {
	a := actRow{Qs: qs, D: scratch.D[:len(x)/kBlock], Sums: scratch.Sums[:len(x)/16]}
	quantizeActQ8_K(a, x)
	for g, s := range a.Sums {
		meta[g*2*gemmIntRows] = uint32(-32 * int32(s))
		meta[g*2*gemmIntRows+gemmIntRows] = math.Float32bits(a.D[g/16])
	}
}

// panelOffsets are the byte offsets of a panel's rows, the missing ones the last's.
func panelOffsets(rb, n int) (offs [gemmIntPanel]int32) {
	for r := range offs {
		offs[r] = int32(min(r, n-1) * rb)
	}
	return offs
}

// panelOffsets64 are panelOffsets as int64.
func panelOffsets64(rb, n int) (offs [gemmIntPanel]int64) {
	for r := range offs {
		offs[r] = int64(min(r, n-1) * rb)
	}
	return offs
}

func repackQ8_0(codes []byte, scales []float32, rows []byte, rb, n, k int) {
	offs := panelOffsets(rb, n)
	nb := k / 32
	_, _, _ = codes[gemmIntPanel*k-1], scales[gemmIntPanel*nb-1], rows[(n-1)*rb+nb*34-1]
	offs64 := panelOffsets64(rb, n)
	repackQ8_0VNNI(&rows[0], &offs[0], &offs64[0], nb, &codes[0], &scales[0])
}

// repackQ4_K's scales are d·sc and its mins dmin·m per sub-block of 32, both exact in
// float32 (11 bits times 6).
func repackQ4_K(codes []byte, scales []float32, rows []byte, rb, n, k int) {
	offs, offs64 := panelOffsets(rb, n), panelOffsets64(rb, n)
	nb := k / kBlock
	_, _, _ = codes[gemmIntPanel*k-1], scales[2*gemmIntPanel*nb*8-1], rows[(n-1)*rb+nb*144-1]
	repackQ4_KVNNI(&rows[0], &offs[0], &offs64[0], nb, &codes[0], &scales[0], &scales[gemmIntPanel*nb*8])
}

// repackQ6_K's scales are d·sc per sub-block of 16, exact in float32 (11 bits times 8).
func repackQ6_K(codes []byte, scales []float32, rows []byte, rb, n, k int) {
	offs, offs64 := panelOffsets(rb, n), panelOffsets64(rb, n)
	nb := k / kBlock
	_, _, _ = codes[gemmIntPanel*k-1], scales[gemmIntPanel*nb*16-1], rows[(n-1)*rb+nb*210-1]
	repackQ6_KVNNI(&rows[0], &offs[0], &offs64[0], nb, &codes[0], &scales[0])
}

// kernelInt checks a kernel's operands for groups of the given values and metadata
// (3: the panel's mins follow its scales).
func kernelInt(kernel func(a *int8, lda int, meta *uint32, codes *byte, scales *float32, groups int, dst *float32, ldc int), group, metaN int) func([]int8, int, []uint32, []byte, []float32, int, []float32, int) {
	return func(a []int8, lda int, meta []uint32, codes []byte, scales []float32, k int, dst []float32, ldc int) {
		groups := k / group
		_, _, _ = a[(gemmIntRows-1)*lda+k-1], meta[groups*metaN*gemmIntRows-1], codes[gemmIntPanel*k-1]
		_, _ = scales[(metaN-1)*gemmIntPanel*groups-1], dst[(gemmIntRows-1)*ldc+gemmIntPanel-1]
		kernel(&a[0], lda, &meta[0], &codes[0], &scales[0], groups, &dst[0], ldc)
	}
}
