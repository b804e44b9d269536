//go:build amd64 && !purego

package tensor

import "math"

//go:noescape
func gemmQ8VNNI(a *int8, lda int, meta *uint32, codes *byte, scales *float32, groups int, dst *float32, ldc int)

//go:noescape
func repackQ8_0VNNI(src *byte, offs *int32, nb int, codes *byte, scales *float32)

func init() {
	if hasInt8VNNI {
		gemmInts[&BlockQ8_0] = &gemmIntQ8_0
	}
}

// gemmIntQ8_0 is Q8_0's integer pre-fill: activations as its decode dot's (actQ8_0),
// weight codes offset by 128 to the unsigned bytes VPDPBUSD wants, which each group's
// starting sum −128·Σq_a takes back out.
var gemmIntQ8_0 = gemmIntFormat{minRows: 17, group: 32, prepare: prepareQ8_0, repack: repackQ8_0, kernel: kernelQ8}

// prepareQ8_0 quantizes x as quantizeActQ8_0 does.
func prepareQ8_0(qs []int8, meta []uint32, x []float32, d []float32) {
	quantizeActQ8_0(actRow{Qs: qs, D: d}, x)
	for g, dg := range d[:len(x)/32] {
		var s int32
		for _, q := range qs[32*g : 32*g+32] {
			s += int32(q)
		}
		meta[g*2*gemmIntRows] = uint32(-128 * s)
		meta[g*2*gemmIntRows+gemmIntRows] = math.Float32bits(dg)
	}
}

func repackQ8_0(codes []byte, scales []float32, rows []byte, rb, n, k int) {
	var offs [gemmIntPanel]int32
	for r := range offs {
		offs[r] = int32(min(r, n-1) * rb)
	}
	nb := k / 32
	_, _, _ = codes[gemmIntPanel*k-1], scales[gemmIntPanel*nb-1], rows[(n-1)*rb+nb*34-1]
	repackQ8_0VNNI(&rows[0], &offs[0], nb, &codes[0], &scales[0])
}

// kernelQ8 is the kernel of the formats whose groups are 32 values without a min.
func kernelQ8(a []int8, lda int, meta []uint32, codes []byte, scales []float32, k int, dst []float32, ldc int) {
	groups := k / 32
	_, _, _ = a[(gemmIntRows-1)*lda+k-1], meta[groups*2*gemmIntRows-1], codes[gemmIntPanel*k-1]
	_, _ = scales[gemmIntPanel*groups-1], dst[(gemmIntRows-1)*ldc+gemmIntPanel-1]
	gemmQ8VNNI(&a[0], lda, &meta[0], &codes[0], &scales[0], groups, &dst[0], ldc)
}
