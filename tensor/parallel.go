package tensor

import (
	"fmt"
	"runtime"
	"runtime/debug"
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
// worker waiting for the next job spins, and parks only after spinWait.
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
	pool.finish()
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
	pool.finish()
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
// generation above the low partBits, which hold the part count); a waiting worker
// polls it, and parks after spinWait on its channel, which the caller signals only
// when the worker is parked. Every part has a slot of its own (one cache line): a
// worker marks it with the generation while it is inside the job, and every part
// publishes there how many units it has done, so that nothing in a job's hand-off or
// phases is a read-modify-write on a shared line. The caller seals the generation
// once every unit is done and waits until no worker is inside, so a worker that wakes
// up late never touches the next job.
const (
	spinCheck = 1 << 8                 // polls between looks at the clock
	spinWait  = 200 * time.Microsecond // polling for the next job before a worker parks
	spinPhase = 30 * time.Microsecond  // polling for the end of a phase before a part parks
	partBits  = 16
	maxParts  = 1 << 10

	// a claim word: the phase (within the job) it describes, then the front and
	// back of its part's remaining units
	claimBits = 20
	claimMask = 1<<claimBits - 1
)

// partSlot is one part's: its claim word, its progress and its wake-up.
type partSlot struct {
	claim  atomic.Uint64 // see claim
	done   atomic.Int64  // units this part has done in the job so far
	in     atomic.Uint64 // generation of the job the worker is inside, else older
	parked atomic.Int32
	wake   chan struct{}
	_      [24]byte
}

type workerPool struct {
	mu       sync.Mutex // held by the caller of the job in flight
	state    atomic.Uint64
	sealed   atomic.Uint64 // the last generation that is over
	sleepers atomic.Int32  // parts parked until a phase ends
	job      Job
	parts    int
	slots    []partSlot // [0] is the caller's; allocated for maxParts at first use
	nwork    int        // workers started

	rj rangeJob   // Parallel's
	mv matvecJob  // MatMulTs's at small m
	el elementJob // the element-wise kernels'

	fault atomic.Pointer[unitPanic] // the first unit of the job in flight that panicked
}

// unitPanic is a panic of a unit of work, with the stack of the goroutine it ran on.
type unitPanic struct {
	value any
	stack []byte
}

func (u *unitPanic) Error() string {
	return fmt.Sprintf("tensor: a unit of work panicked: %v\n%s", u.value, u.stack)
}

// do runs one unit. A panic is recorded and the unit counted as done, so that the job
// still ends and its caller, not a worker goroutine (whose panic would end the
// process), raises it: a server can then fail one request and go on.
func (p *workerPool) do(j Job, w, ph, u int) {
	defer func() {
		if r := recover(); r != nil {
			p.fault.CompareAndSwap(nil, &unitPanic{value: r, stack: debug.Stack()})
		}
	}()
	j.Do(w, ph, u)
}

// finish releases the pool after a job and raises the panic of any of its units.
func (p *workerPool) finish() {
	f := p.fault.Swap(nil)
	p.mu.Unlock()
	if f != nil {
		panic(f)
	}
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
	if p.slots == nil {
		p.slots = make([]partSlot, maxParts)
		p.slots[0].wake = make(chan struct{}, 1)
	}
	st := p.state.Load()
	for ; p.nwork < n-1; p.nwork++ {
		s := &p.slots[p.nwork+1]
		s.wake = make(chan struct{}, 1)
		go p.work(p.nwork+1, s, st)
	}
	gen := st>>partBits + 1
	p.job, p.parts = j, n
	u0 := j.Units(0)
	for w := range n {
		p.slots[w].claim.Store(uint64(w*u0/n)<<claimBits | uint64((w+1)*u0/n))
		p.slots[w].done.Store(0)
	}
	p.state.Store(gen<<partBits | uint64(n))
	for w := 1; w < n; w++ {
		if s := &p.slots[w]; s.parked.CompareAndSwap(1, 0) {
			s.wake <- struct{}{}
		}
	}
	p.part(0)
	// Every unit is done: seal the generation, then wait for workers still inside
	// (looking for units) to leave.
	p.sealed.Store(gen)
	for w := 1; w < n; w++ {
		s := &p.slots[w]
		wait(func() bool { return s.in.Load() != gen })
	}
	p.job = nil
}

// work is worker w's loop; seen is the state before its first job.
func (p *workerPool) work(w int, s *partSlot, seen uint64) {
	for {
		changed := func() bool { return p.state.Load() != seen }
		if !spin(changed) {
			for !changed() { // a wake-up from a phase's end is not a job
				park(s, changed)
			}
		}
		seen = p.state.Load()
		gen := seen >> partBits
		if n := int(seen & (1<<partBits - 1)); w >= n {
			continue
		}
		// Enter unless the job is over; the caller seals before it reads in, so
		// either it waits for this worker or this worker sees the seal.
		s.in.Store(gen)
		if p.sealed.Load() < gen {
			p.part(w)
		}
		s.in.Store(0)
	}
}

// part is part w's run through the job's phases: its own units, then other parts'
// from their backs; then it waits until the phase is done (the last phase: only the
// caller waits).
func (p *workerPool) part(w int) {
	j, n := p.job, p.parts
	me := &p.slots[w]
	total, did := int64(0), int64(0)
	for ph := range j.Phases() {
		units := j.Units(ph)
		total += int64(units)
		for v := 0; v < n; v++ {
			owner := (w + v) % n
			for {
				u, ok := p.claim(owner, ph, units, n, v == 0)
				if !ok {
					break
				}
				p.do(j, w, ph, u)
				did++
			}
		}
		me.done.Store(did)
		if p.sleepers.Load() > 0 {
			p.wakeSleepers(n)
		}
		if ph == j.Phases()-1 && w != 0 {
			return
		}
		p.waitPhase(me, n, total)
	}
}

// waitPhase waits until the parts have done total units: polling for spinPhase, then
// parked (the OS may have descheduled the thread of the part that holds the last unit;
// a polling wait would keep its core from it), woken by every part that publishes
// progress while some part sleeps.
func (p *workerPool) waitPhase(me *partSlot, n int, total int64) {
	done := func() bool {
		sum := int64(0)
		for v := range n {
			sum += p.slots[v].done.Load()
		}
		return sum >= total
	}
	if spinFor(done, spinPhase) {
		return
	}
	p.sleepers.Add(1)
	for !done() {
		park(me, done)
	}
	p.sleepers.Add(-1)
}

// wakeSleepers wakes the parked parts among the first n.
func (p *workerPool) wakeSleepers(n int) {
	for v := range n {
		if s := &p.slots[v]; s.parked.CompareAndSwap(1, 0) {
			s.wake <- struct{}{}
		}
	}
}

// claim takes a unit of phase ph from owner's range: the front when front is set
// (the owner's own order), else the back. The word is set to the phase's range by
// whoever touches it first in the phase.
func (p *workerPool) claim(owner, ph, units, n int, front bool) (int, bool) {
	c := &p.slots[owner].claim
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

// spin waits up to about spinWait for done, polling with plain loads and a CPU pause
// in between; it reports whether done became true. It never yields to the Go
// scheduler: runtime.Gosched takes the scheduler's global lock, which sixteen
// spinning threads contend for (the cause of slow job starts at 16 threads).
func spin(done func() bool) bool { return spinFor(done, spinWait) }

// spinFor is spin for up to about d.
func spinFor(done func() bool, d time.Duration) bool {
	var start time.Time
	for i := 1; ; i++ {
		if done() {
			return true
		}
		cpuPause()
		if i%spinCheck == 0 {
			if i == spinCheck {
				start = time.Now()
			} else if time.Since(start) > d {
				return false
			}
		}
	}
}

// wait spins until done, yielding to the Go scheduler only every spinCheck polls
// after spinWait (a unit's part that the OS has descheduled).
func wait(done func() bool) {
	if spin(done) {
		return
	}
	for i := 1; !done(); i++ {
		cpuPause()
		if i%spinCheck == 0 {
			runtime.Gosched()
		}
	}
}

// park blocks on s until its waker clears s.parked (and sends), or done is already
// true once s.parked is published; both sides use sequentially consistent atomics,
// so a wake-up is never lost.
func park(s *partSlot, done func() bool) {
	s.parked.Store(1)
	if done() && s.parked.CompareAndSwap(1, 0) {
		return
	}
	<-s.wake
}
