package kv

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"github.com/kvfoot/kvfoot/compute"
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

// BenchmarkKeepTop: one head of SnapKV's post-fill eviction at 32K (keep half), by keepTop's
// selection and by the sort it replaced (sortedTop, its definition above).
//
//	go test ./kv -run '^$' -bench KeepTop
func BenchmarkKeepTop(b *testing.B) {
	const n = 32768
	r := rand.New(rand.NewPCG(3, 4))
	score := make([]float32, n)
	for i := range score {
		score[i] = r.Float32() * r.Float32()
	}
	b.Run("select", func(b *testing.B) {
		f := &Forward{N: n}
		for b.Loop() {
			f.keepTop(score, 0, n-64, n/2-64)
		}
	})
	b.Run("sort", func(b *testing.B) {
		for b.Loop() {
			sortedTop(score, 0, n-64, n, n/2-64)
		}
	})
}

// headScores is a null storage that gives each asked head its own pseudo-random scores and
// records the Keeps in order.
type headScores struct {
	nullStorage
	seed  uint64
	kept  *[]string
	layer *int
}

func (s headScores) Attend(layer int, _, _ compute.Buf, a *AttendArgs) {
	for g, r := range a.Req {
		if r.none() {
			continue
		}
		rng := rand.New(rand.NewPCG(s.seed, uint64(layer*1000+g)))
		sc := a.Scores[g][:0]
		for range a.Past[g] + a.Tokens {
			sc = append(sc, rng.Float32())
		}
		a.Scores[g] = sc
	}
}

func (s headScores) Keep(layer, head int, idx []int) {
	*s.kept = append(*s.kept, fmt.Sprint(layer, head, len(idx), idx[len(idx)/2]))
}

// The heads' Keeps of a large pre-fill run at once on every core (keepAtOnce) and leave what
// they leave run one after the other: the same lists to the storage, in the same order, and
// the same positions.
func TestKeepAtOnceMatchesInOrder(t *testing.T) {
	s := Shape{Layers: 2, Heads: 8, KVHeads: 4, HeadDim: 8}
	run := func(procs int) ([]string, [][][]int32) {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		var kept []string
		st := headScores{seed: 3, kept: &kept}
		c, err := New(s, "snapkv:sparsity=0.6,window=64", WithStorage(func(Shape, int, Precision) (Storage, error) { return st, nil }))
		if err != nil {
			t.Fatal(err)
		}
		mustBegin(c, prefillStep(c, 16384, true)) // 8 stored heads x 16K entries: keepAtOnce's size
		for l := range s.Layers {
			c.Attend(l, compute.Host(nil), compute.Host(nil), compute.Host(nil), compute.Host(nil))
		}
		c.Commit()
		return kept, c.heads
	}
	seqKept, seqPos := run(1)
	parKept, parPos := run(4)
	if len(seqKept) != s.Layers*s.Heads || !slices.Equal(seqKept, parKept) {
		t.Fatalf("Keeps in order %v, at once %v", seqKept, parKept)
	}
	for l := range seqPos {
		for g := range seqPos[l] {
			if !slices.Equal(seqPos[l][g], parPos[l][g]) {
				t.Fatalf("layer %d head %d: positions differ", l, g)
			}
		}
	}
}

// panicKeeper is SnapKV whose Keep of one head panics, as a policy fed a storage's bad
// scores might.
type panicKeeper struct{ *snapkv }

func (p panicKeeper) Keep(f *Forward) []int {
	if f.Layer == 1 && f.Head == 5 {
		panic("bad scores")
	}
	return p.snapkv.Keep(f)
}

// A Keep that panics on one of keepAtOnce's goroutines panics in Attend's caller, where a
// server's request recovers it, instead of stopping the process.
func TestKeepAtOnceRaisesPanicsInCaller(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	s := Shape{Layers: 2, Heads: 8, KVHeads: 4, HeadDim: 8}
	var kept []string
	st := headScores{seed: 3, kept: &kept}
	c, err := New(s, "snapkv:sparsity=0.6,window=64", WithStorage(func(Shape, int, Precision) (Storage, error) { return st, nil }))
	if err != nil {
		t.Fatal(err)
	}
	c.pol = panicKeeper{c.pol.(*snapkv)}
	mustBegin(c, prefillStep(c, 16384, true))
	c.Attend(0, compute.Host(nil), compute.Host(nil), compute.Host(nil), compute.Host(nil))
	defer func() {
		if r := recover(); r != "bad scores" {
			t.Fatalf("recovered %v, want the Keep's panic", r)
		}
	}()
	c.Attend(1, compute.Host(nil), compute.Host(nil), compute.Host(nil), compute.Host(nil))
	t.Fatal("Attend returned")
}
