package tensor

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

var threads = runtime.GOMAXPROCS(0)

// SetThreads sets how many goroutines the kernels split their work over (n ≥ 1).
func SetThreads(n int) {
	if n < 1 {
		n = 1
	}
	threads = n
}

// Threads reports the number of goroutines the kernels use.
func Threads() int { return threads }

// Job is work in phases of units. The units of a phase are independent; every unit
// of a phase is done before any unit of the next phase starts.
type Job interface {
	Phases() int
	Units(phase int) int
	// Do runs one unit. w (< the job's part count) names the part running it, so that
	// a job can keep scratch per part.
	Do(w, phase, unit int)
}

// RunJob runs j on n parts (at most Threads(); 1 when the pool is busy with another
// caller's job or RunJob is called from inside a job) and returns when it is done.
// The calling goroutine is part 0.
//
// Part w takes the units [w·U/n, (w+1)·U/n) of each phase of U units, in order, so a
// part gets the same share of the same work at every call (and its data stays in
// that core's caches); a part that runs out takes units from the back of a part that
// is behind (one whose thread the OS has descheduled, say), so one slow thread does not
// hold up the job. In steady state nothing allocates and no channel is touched: a
// worker waiting for the next job spins, then yields, and parks only after spinWait.
func RunJob(j Job, n int) {
	if n = pool.lock(n); n == 1 {
		for ph := range j.Phases() {
			for u := range j.Units(ph) {
				j.Do(0, ph, u)
			}
		}
		return
	}
	pool.run(j, n)
	pool.mu.Unlock()
}

// Parallel splits [0, n) into at most Threads() contiguous ranges and runs fn on
// each, returning when all are done. Small n runs inline.
func Parallel(n int, fn func(lo, hi int)) { parallelFor(threads, n, fn) }

// parallelFor is Parallel with at most t ranges.
func parallelFor(t, n int, fn func(lo, hi int)) {
	if t = pool.lock(min(t, n)); t == 1 {
		fn(0, n)
		return
	}
	pool.rj = rangeJob{n: n, t: t, fn: fn}
	pool.run(&pool.rj, t)
	pool.rj = rangeJob{}
	pool.mu.Unlock()
}

// rangeJob is Parallel's job: unit u of t is [u·n/t, (u+1)·n/t).
type rangeJob struct {
	n, t int
	fn   func(lo, hi int)
}

func (r *rangeJob) Phases() int    { return 1 }
func (r *rangeJob) Units(int) int  { return r.t }
func (r *rangeJob) Do(_, _, u int) { r.fn(u*r.n/r.t, (u+1)*r.n/r.t) }

// The pool: workers 1…n−1 are goroutines started on first use that live for the
// process; the caller of a job is part 0. A job is announced by bumping state (a
// generation above the low partBits, which hold the part count). A worker that sees
// it enters the job through gate, which the caller closes once every unit is done and
// no worker is inside, so a worker that wakes up late never touches the next job.
const (
	spinLoads = 1 << 10                // plain loads before the first yield
	spinWait  = 200 * time.Microsecond // yielding before a worker parks
	partBits  = 16
	maxParts  = 1 << 10

	// a claim word: the phase (within the job) it describes, then the front and
	// back of its part's remaining units
	claimBits = 20
	claimMask = 1<<claimBits - 1
	// the gate: generation << 32 | sealed | workers inside
	sealed = 1 << 31
)

type workerSlot struct {
	parked atomic.Int32
	wake   chan struct{}
	_      [48]byte // keep slots on separate cache lines
}

type claimWord struct {
	v atomic.Uint64
	_ [56]byte
}

type workerPool struct {
	mu     sync.Mutex // held by the caller of the job in flight
	state  atomic.Uint64
	gate   atomic.Uint64
	job    Job
	parts  int
	done   atomic.Int64 // units done in the job so far
	claims []claimWord  // per part
	caller workerSlot   // the caller parks here while the last units run
	slots  []*workerSlot

	rj rangeJob   // Parallel's
	mv matvecJob  // MatMulTs's at small m
	el elementJob // the element-wise kernels'
}

var pool workerPool

// lock returns how many parts a job of at most n parts gets now: min(n, Threads())
// with mu held, or 1 (mu not held) when that is 1 or the pool is busy.
func (p *workerPool) lock(n int) int {
	if n = min(n, threads, maxParts); n <= 1 || !p.mu.TryLock() {
		return 1
	}
	return n
}

// run runs j on parts 0…n−1; the caller holds mu.
func (p *workerPool) run(j Job, n int) {
	if p.caller.wake == nil {
		p.caller.wake = make(chan struct{}, 1)
	}
	st := p.state.Load()
	for len(p.slots) < n-1 {
		s := &workerSlot{wake: make(chan struct{}, 1)}
		p.slots = append(p.slots, s)
		go p.work(len(p.slots), s, st)
	}
	if len(p.claims) < n {
		p.claims = make([]claimWord, maxParts)
	}
	gen := st>>partBits + 1
	p.job, p.parts = j, n
	p.done.Store(0)
	u0 := j.Units(0)
	for w := range n {
		p.claims[w].v.Store(uint64(w*u0/n)<<claimBits | uint64((w+1)*u0/n))
	}
	p.gate.Store(gen << 32)
	p.state.Store(gen<<partBits | uint64(n))
	for _, s := range p.slots[:n-1] {
		if s.parked.CompareAndSwap(1, 0) {
			s.wake <- struct{}{}
		}
	}
	p.part(0)
	// Every unit is done; wait for workers still inside (looking for units), then
	// seal the gate so that no late one enters.
	for i := 0; !p.gate.CompareAndSwap(gen<<32, gen<<32|sealed); i++ {
		if i >= spinLoads {
			runtime.Gosched()
		}
	}
	p.job = nil
}

// work is worker w's loop; seen is the state before its first job.
func (p *workerPool) work(w int, s *workerSlot, seen uint64) {
	for {
		changed := func() bool { return p.state.Load() != seen }
		if !spin(changed) {
			park(s, changed)
		}
		seen = p.state.Load()
		if n := int(seen & (1<<partBits - 1)); w < n && p.enter(seen>>partBits) {
			p.part(w)
			p.gate.Add(^uint64(0)) // leave
		}
	}
}

// enter lets a worker into the job of generation gen unless it is over.
func (p *workerPool) enter(gen uint64) bool {
	for {
		g := p.gate.Load()
		if g>>32 != gen || g&sealed != 0 {
			return false
		}
		if p.gate.CompareAndSwap(g, g+1) {
			return true
		}
	}
}

// part is part w's run through the job's phases: its own units, then other parts'
// from their backs; then it waits until the phase is done.
func (p *workerPool) part(w int) {
	j, n := p.job, p.parts
	total := int64(0)
	for ph := range j.Phases() {
		units := j.Units(ph)
		total += int64(units)
		did := 0
		for v := 0; v < n; v++ {
			owner := (w + v) % n
			for {
				u, ok := p.claim(owner, ph, units, n, v == 0)
				if !ok {
					break
				}
				j.Do(w, ph, u)
				did++
			}
		}
		last := ph == j.Phases()-1
		if p.done.Add(int64(did)) == total && last && p.caller.parked.CompareAndSwap(1, 0) {
			p.caller.wake <- struct{}{}
		}
		if last && w != 0 {
			return // only the caller waits for the end
		}
		phaseDone := func() bool { return p.done.Load() >= total }
		if spin(phaseDone) {
			continue
		}
		if last {
			park(&p.caller, phaseDone)
			return
		}
		for !phaseDone() {
			runtime.Gosched()
		}
	}
}

// claim takes a unit of phase ph from owner's range: the front when front is set
// (the owner's own order), else the back. The word is set to the phase's range by
// whoever touches it first in the phase.
func (p *workerPool) claim(owner, ph, units, n int, front bool) (int, bool) {
	c := &p.claims[owner].v
	for {
		x := c.Load()
		tag := int(x >> (2 * claimBits))
		if tag > ph {
			return 0, false
		}
		if tag < ph {
			y := uint64(ph)<<(2*claimBits) | uint64(owner*units/n)<<claimBits | uint64((owner+1)*units/n)
			c.CompareAndSwap(x, y)
			continue
		}
		f, b := int(x>>claimBits&claimMask), int(x&claimMask)
		if f >= b {
			return 0, false
		}
		if front {
			if c.CompareAndSwap(x, x+1<<claimBits) {
				return f, true
			}
		} else if c.CompareAndSwap(x, x-1) {
			return b - 1, true
		}
	}
}

// spin waits up to about spinWait for done, first with plain loads, then yielding
// the processor between checks; it reports whether done became true.
func spin(done func() bool) bool {
	for range spinLoads {
		if done() {
			return true
		}
	}
	start := time.Now()
	for i := 0; ; i++ {
		if done() {
			return true
		}
		runtime.Gosched()
		if i%16 == 15 && time.Since(start) > spinWait {
			return false
		}
	}
}

// park blocks on s until its waker clears s.parked (and sends), or done is already
// true once s.parked is published; both sides use sequentially consistent atomics,
// so a wake-up is never lost.
func park(s *workerSlot, done func() bool) {
	s.parked.Store(1)
	if done() && s.parked.CompareAndSwap(1, 0) {
		return
	}
	<-s.wake
}
