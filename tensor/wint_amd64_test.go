//go:build amd64 && !purego

package tensor

import (
	"math"
	"math/rand/v2"
	"testing"
)

// Every vector integer kernel the CPU can run joins TestIntDot, TestIntDotExtremes
// and TestActQuantize, not only the one init installed.
func init() {
	add := func(format, isa string, k *intKernel) {
		extraDotActs[format] = append(extraDotActs[format], namedDotAct{isa, k.dot})
	}
	if hasInt8AVX2 {
		add("Q4_K", "AVX2", q4KAVX2)
		add("Q6_K", "AVX2", q6KAVX2)
		add("Q5_K", "AVX2", q5KAVX2)
		add("Q8_0", "AVX2", q8_0AVX2)
		add("Q4_0", "AVX2", q4_0AVX2)
		add("Q5_0", "AVX2", q5_0AVX2)
		add("Q4_1", "AVX2", q4_1AVX2)
		add("Q5_1", "AVX2", q5_1AVX2)
	}
	if hasInt8VNNI {
		extraActQuantizers[actQ8_K] = append(extraActQuantizers[actQ8_K], quantizeActQ8_KFast)
		extraActQuantizers[actQ8_0] = append(extraActQuantizers[actQ8_0], quantizeActQ8_0Fast)
		add("Q8_0", "VNNI", q8_0VNNI)
		add("Q4_K", "VNNI", q4KVNNI)
		add("Q6_K", "VNNI", q6KVNNI)
		add("Q5_K", "VNNI", q5KVNNI)
		add("Q4_0", "VNNI", q4_0VNNI)
		add("Q5_0", "VNNI", q5_0VNNI)
		add("Q4_1", "VNNI", q4_1VNNI)
		add("Q5_1", "VNNI", q5_1VNNI)
	}
}

// A kernel's dotRows over many rows gives each row's dot bit for bit, and writes exactly
// the rows asked for.
func TestIntDotRows(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	formats := map[*intKernel]*BlockFormat{
		q4KAVX2: &BlockQ4_K, q5KAVX2: &BlockQ5_K, q6KAVX2: &BlockQ6_K, q8_0AVX2: &BlockQ8_0,
		q4_0AVX2: &BlockQ4_0, q5_0AVX2: &BlockQ5_0, q4_1AVX2: &BlockQ4_1, q5_1AVX2: &BlockQ5_1,
		q4KVNNI: &BlockQ4_K, q5KVNNI: &BlockQ5_K, q6KVNNI: &BlockQ6_K, q8_0VNNI: &BlockQ8_0,
		q4_0VNNI: &BlockQ4_0, q5_0VNNI: &BlockQ5_0, q4_1VNNI: &BlockQ4_1, q5_1VNNI: &BlockQ5_1,
	}
	for k, f := range formats {
		if !hasInt8AVX2 || (k == q4KVNNI || k == q5KVNNI || k == q6KVNNI || k == q8_0VNNI || k == q4_0VNNI ||
			k == q5_0VNNI || k == q4_1VNNI || k == q5_1VNNI) && !hasInt8VNNI {
			continue
		}
		for _, nb := range []int{1, 3} {
			n, rb := nb*f.Values, nb*f.Bytes
			a := quantizedRow(f.act, gaussRow(r, n, 1))
			for _, count := range []int{0, 1, 5, 17} {
				rows := make([]byte, count*rb)
				for i := 0; i < count; i++ {
					f.Quantize(rows[i*rb:(i+1)*rb], gaussRow(r, n, 1))
				}
				dst := make([]float32, count+1)
				dst[count] = 42 // past the rows: untouched
				k.dotRows(dst[:count], rows, rb, a)
				for i := 0; i < count; i++ {
					if want := k.dot(rows[i*rb:(i+1)*rb], a); math.Float32bits(dst[i]) != math.Float32bits(want) {
						t.Fatalf("%s, %d blocks, row %d of %d: rows %g, one at a time %g", k.name, nb, i, count, dst[i], want)
					}
				}
				if dst[count] != 42 {
					t.Fatalf("%s wrote past its %d rows", k.name, count)
				}
			}
		}
	}
}
