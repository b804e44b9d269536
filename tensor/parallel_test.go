package tensor

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// phaseJob: unit u of phase p writes p+1 into slot u after checking that every slot
// holds p (all of the previous phase is done); it records which part ran each unit.
type phaseJob struct {
	phases, units int
	slots         [64]atomic.Int32
	ranBy         [8][64]atomic.Int32 // [phase][unit]: part+1
	bad           atomic.Int32
	slow          int // part that sleeps in each unit (-1: none)
}

func (j *phaseJob) Phases() int   { return j.phases }
func (j *phaseJob) Units(int) int { return j.units }
func (j *phaseJob) Do(w, ph, u int) {
	if j.ranBy[ph][u].Swap(int32(w+1)) != 0 {
		j.bad.Add(1) // a unit ran twice
	}
	for v := range j.units {
		if got := j.slots[v].Load(); got < int32(ph) {
			j.bad.Add(1)
		}
	}
	if w == j.slow {
		time.Sleep(10 * time.Millisecond)
	}
	j.slots[u].Store(int32(ph + 1))
}

func withThreads(t *testing.T, n int) {
	saved := threads
	threads = n
	t.Cleanup(func() { threads = saved })
}

// Every unit of every phase runs exactly once, after the whole previous phase, and
// with the units assigned in order (part w's own range first), whether the workers
// are spinning (back-to-back jobs) or parked (after a pause longer than their spin).
func TestRunJobPhases(t *testing.T) {
	withThreads(t, 6)
	for i, pause := range []time.Duration{0, 0, 2 * spinWait, 0, 3 * spinWait, 0} {
		time.Sleep(pause)
		for _, ask := range []int{1, 2, 6, 9} {
			j := &phaseJob{phases: 5, units: 23, slow: -1}
			RunJob(j, ask)
			for ph := range j.phases {
				for u := range j.units {
					if j.ranBy[ph][u].Load() == 0 {
						t.Fatalf("round %d, %d parts: phase %d unit %d did not run", i, ask, ph, u)
					}
				}
			}
			if j.bad.Load() != 0 {
				t.Fatalf("round %d, %d parts: %d units ran twice or before the previous phase ended", i, ask, j.bad.Load())
			}
		}
	}
}

// A part that is slow (here: sleeps in every unit) does not keep its whole share:
// the others take its units from the back.
func TestRunJobSteals(t *testing.T) {
	withThreads(t, 2)
	j := &phaseJob{phases: 1, units: 40, slow: 1}
	RunJob(j, 2)
	n := 0
	for u := range j.units {
		if j.ranBy[0][u].Load() == 2 {
			n++
		}
	}
	if n >= 20 {
		t.Fatalf("the slow part ran %d of 40 units, its whole share", n)
	}
}

// Jobs from several goroutines at once, and jobs started from inside a part, run
// (inline when the pool is busy) and give the right sums.
func TestParallelConcurrentAndNested(t *testing.T) {
	withThreads(t, 4)
	x := make([]int64, 10000)
	var want int64
	for i := range x {
		x[i] = int64(i * i % 977)
		want += x[i]
	}
	sum := func() int64 {
		var s atomic.Int64
		Parallel(len(x), func(lo, hi int) {
			var p int64
			for _, v := range x[lo:hi] {
				p += v
			}
			s.Add(p)
		})
		return s.Load()
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				if got := sum(); got != want {
					errs <- fmt.Sprintf("goroutine %d, job %d: sum %d, want %d", g, i, got, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	var inner atomic.Int64
	Parallel(8, func(lo, hi int) {
		for range hi - lo {
			inner.Add(sum())
		}
	})
	if inner.Load() != 8*want {
		t.Fatalf("nested: %d, want %d", inner.Load(), 8*want)
	}
}

// The element-wise kernels and the products give bit-identical results whatever the
// part count (each element's arithmetic does not depend on the partition), and fused
// products equal separate ones.
func TestPartitionInvariance(t *testing.T) {
	r := rand.New(rand.NewPCG(40, 41))
	const rows, h = 37, 1000
	x, y, wt := randSlice(r, rows*h), randSlice(r, rows*h), randSlice(r, h)
	type result struct {
		axpy, silu, norm []float32
		sum              float32
	}
	run := func(th int) result {
		withThreads(t, th)
		var res result
		res.axpy = append([]float32(nil), y...)
		Axpy(0.37, x, res.axpy)
		res.silu = append([]float32(nil), x...)
		SiLUMul(res.silu, y)
		res.norm = make([]float32, len(x))
		RMSNormRows(res.norm, x, wt, 1e-5, rows)
		res.sum = Sum(x)
		return res
	}
	ref := run(1)
	// the serial reference, element by element
	for i := range x {
		if want := y[i] + 0.37*x[i]; ref.axpy[i] != want && abs32(ref.axpy[i]-want) > 2*u*(abs32(want)+abs32(y[i])) {
			t.Fatalf("Axpy[%d] = %v, want %v", i, ref.axpy[i], want)
		}
	}
	norm := make([]float32, h)
	for i := range rows {
		RMSNorm(norm, x[i*h:(i+1)*h], wt, 1e-5)
		for c, v := range norm {
			if ref.norm[i*h+c] != v {
				t.Fatalf("RMSNormRows row %d [%d] = %v, RMSNorm %v", i, c, ref.norm[i*h+c], v)
			}
		}
	}
	var want, abs float64
	for _, v := range x {
		want += float64(v)
		abs += float64(abs32(v))
	}
	checkSum(t, "Sum", ref.sum, want, abs, len(x))
	for _, th := range []int{2, 3, 7} {
		got := run(th)
		if got.sum != ref.sum {
			t.Fatalf("threads %d: Sum %v, on one thread %v", th, got.sum, ref.sum)
		}
		for i := range x {
			if got.axpy[i] != ref.axpy[i] || got.silu[i] != ref.silu[i] || got.norm[i] != ref.norm[i] {
				t.Fatalf("threads %d, element %d: axpy %v/%v silu %v/%v norm %v/%v", th, i,
					got.axpy[i], ref.axpy[i], got.silu[i], ref.silu[i], got.norm[i], ref.norm[i])
			}
		}
	}

	for _, m := range []int{1, 3, 8, 9, 40} {
		k := 300
		xs := randSlice(r, m*k)
		ws := []*Mat{{Rows: 70, Cols: k, F32: randSlice(r, 70*k)}, {Rows: 5, Cols: k}, {Rows: 33, Cols: k, F32: randSlice(r, 33*k)}}
		ws[1].BF16 = make([]uint16, 5*k)
		for i := range ws[1].BF16 {
			ws[1].BF16[i] = FloatToBF16(float32(r.NormFloat64()))
		}
		sep := make([][]float32, len(ws))
		withThreads(t, 1)
		for i, w := range ws {
			sep[i] = make([]float32, m*w.Rows)
			MatMulT(sep[i], xs, m, w)
		}
		for _, th := range []int{1, 2, 5} {
			withThreads(t, th)
			ps := make([]Proj, len(ws))
			for i, w := range ws {
				ps[i] = Proj{Dst: make([]float32, m*w.Rows), W: w}
			}
			MatMulTs(xs, m, ps...)
			for i := range ps {
				for e, v := range ps[i].Dst {
					if v != sep[i][e] {
						t.Fatalf("m=%d threads %d: fused product %d [%d] = %v, separate %v", m, th, i, e, v, sep[i][e])
					}
				}
			}
		}
	}
}

// TestUnitPanicReachesCaller: a unit that panics on a worker goroutine (which would end
// the process) is raised in the caller, after the job's other units ran, and the pool
// serves the next job.
func TestUnitPanicReachesCaller(t *testing.T) {
	defer SetThreads(Threads())
	SetThreads(4)
	var ran atomic.Int64
	got := func() (r any) {
		defer func() { r = recover() }()
		Parallel(64, func(lo, hi int) {
			ran.Add(int64(hi - lo))
			if lo > 0 { // a worker's range, not the caller's
				panic("boom")
			}
		})
		return nil
	}()
	if got == nil || !strings.Contains(fmt.Sprint(got), "boom") {
		t.Fatalf("recovered %v, want the unit's panic", got)
	}
	if ran.Load() != 64 {
		t.Errorf("%d of 64 values ran", ran.Load())
	}
	var sum atomic.Int64
	Parallel(64, func(lo, hi int) { sum.Add(int64(hi - lo)) })
	if sum.Load() != 64 {
		t.Errorf("the next job ran %d of 64 values", sum.Load())
	}
}
