package tensor

import (
	"runtime"
	"sync"
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

// Parallel splits [0, n) into at most Threads() contiguous ranges and runs fn on
// each, returning when all are done. Small n runs inline.
func Parallel(n int, fn func(lo, hi int)) { parallelFor(threads, n, fn) }

// parallelFor is Parallel with an explicit goroutine count t; the calling goroutine
// runs the last range itself.
func parallelFor(t, n int, fn func(lo, hi int)) {
	if t > n {
		t = n
	}
	if t <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	for i := 0; i < t-1; i++ {
		lo, hi := i*n/t, (i+1)*n/t
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	fn((t-1)*n/t, n)
	wg.Wait()
}
