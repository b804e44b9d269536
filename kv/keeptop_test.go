package kv

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// sortedTop is keepTop's definition: sort [lo, hi) by score descending (cmp.Compare's order,
// NaN lowest), ties by position, and keep the first k in position order.
func sortedTop(score []float32, lo, hi, n, k int) []int {
	k = max(0, min(k, hi-lo))
	var o []int
	for i := lo; i < hi; i++ {
		o = append(o, i)
	}
	slices.SortFunc(o, func(a, b int) int {
		if c := cmp.Compare(score[b-lo], score[a-lo]); c != 0 {
			return c
		}
		return a - b
	})
	top := slices.Sorted(slices.Values(o[:k]))
	var out []int
	for i := range lo {
		out = append(out, i)
	}
	out = append(out, top...)
	for i := hi; i < n; i++ {
		out = append(out, i)
	}
	return out
}

func TestKeepTopMatchesSort(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	special := []float32{0, float32(math.Copysign(0, -1)), float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)),
		-1, 1, 1e-30, -1e-30, math.SmallestNonzeroFloat32}
	for trial := range 400 {
		n := 1 + r.IntN(600)
		lo, hi := r.IntN(n+1), 0
		hi = lo + r.IntN(n-lo+1)
		score := make([]float32, hi-lo)
		levels := 1 + r.IntN(8) // few levels: many ties
		for i := range score {
			switch trial % 4 {
			case 0:
				score[i] = r.Float32()
			case 1:
				score[i] = float32(r.IntN(levels)) / 4
			case 2:
				score[i] = special[r.IntN(len(special))]
			default:
				score[i] = float32(r.NormFloat64() * 1e3)
			}
		}
		k := r.IntN(hi - lo + 3)
		f := &Forward{N: n}
		got := f.keepTop(score, lo, hi, k)
		want := sortedTop(score, lo, hi, n, k)
		if !slices.Equal(got, want) {
			t.Fatalf("trial %d (n %d, [%d,%d), k %d): kept %v, want %v", trial, n, lo, hi, k, got, want)
		}
	}
}

// BenchmarkKeepTop: one head of SnapKV's post-fill eviction at 32K (keep half).
//
//	go test ./kv -run '^$' -bench KeepTop
func BenchmarkKeepTop(b *testing.B) {
	const n = 32768
	r := rand.New(rand.NewPCG(3, 4))
	score := make([]float32, n)
	for i := range score {
		score[i] = r.Float32() * r.Float32()
	}
	f := &Forward{N: n}
	for b.Loop() {
		f.keepTop(score, 0, n-64, n/2-64)
	}
}
