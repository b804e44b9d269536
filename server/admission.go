package server

import (
	"context"
	"net/http"
	"sync"
)

// admission decides when a request may start: when its predicted KV peak fits in the
// budget beside the running requests' reservations and fewer than maxRunning run.
// Otherwise it waits in a FIFO queue of at most maxQueue requests (the head is
// admitted first, so a large request is not starved by small ones); past the queue
// the request is refused with 429. A request whose prediction exceeds the whole
// budget is refused before it gets here (422).
type admission struct {
	mu         sync.Mutex
	budget     int64
	reserved   int64
	running    int
	maxRunning int
	maxQueue   int
	queue      []*ticket
	draining   bool
	idle       chan struct{} // closed when draining and nothing runs; see drain
	onChange   func(reserved int64, running, queued int)
}

// ticket is one request's place: its reservation and the channel closed when it is
// admitted (err is then nil) or turned away while queued (err set).
type ticket struct {
	bytes int64
	ready chan struct{}
	err   *apiError
}

func newAdmission(budget int64, maxRunning, maxQueue int, onChange func(int64, int, int)) *admission {
	return &admission{budget: budget, maxRunning: maxRunning, maxQueue: maxQueue, onChange: onChange}
}

var (
	errDraining = newError(http.StatusServiceUnavailable, "", "server_draining", "the server is shutting down and accepts no new requests")
	errQueue    = &apiError{Status: http.StatusTooManyRequests, Type: "rate_limit_error", Code: "queue_full",
		Message: "the server is at its KV memory budget or concurrency limit and its queue is full; retry later", RetryAfter: 1}
)

// acquire reserves bytes of the budget, waiting in the queue if need be. It returns
// nil once admitted; the caller must then call release(bytes) exactly once.
func (a *admission) acquire(ctx context.Context, bytes int64) *apiError {
	a.mu.Lock()
	if a.draining {
		a.mu.Unlock()
		return errDraining
	}
	if len(a.queue) == 0 && a.fits(bytes) {
		a.take(bytes)
		a.changed()
		a.mu.Unlock()
		return nil
	}
	if len(a.queue) >= a.maxQueue {
		a.mu.Unlock()
		return errQueue
	}
	t := &ticket{bytes: bytes, ready: make(chan struct{})}
	a.queue = append(a.queue, t)
	a.changed()
	a.mu.Unlock()

	select {
	case <-t.ready:
		return t.err
	case <-ctx.Done():
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, q := range a.queue {
		if q == t {
			a.queue = append(a.queue[:i], a.queue[i+1:]...)
			a.admitHead()
			a.changed()
			return newError(499, "", "cancelled", "the client went away while the request was queued")
		}
	}
	// admitted (or turned away) just as the client left
	if t.err == nil {
		a.put(bytes)
		a.admitHead()
		a.changed()
	}
	return newError(499, "", "cancelled", "the client went away while the request was queued")
}

// turnAway fails every queued request with err (the device hangs: nothing running will
// release its reservation).
func (a *admission) turnAway(err *apiError) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, t := range a.queue {
		t.err = err
		close(t.ready)
	}
	a.queue = nil
	a.changed()
}

func (a *admission) fits(bytes int64) bool {
	return a.running < a.maxRunning && a.reserved+bytes <= a.budget
}

func (a *admission) take(bytes int64) { a.reserved += bytes; a.running++ }

func (a *admission) put(bytes int64) {
	a.reserved -= bytes
	a.running--
	if a.draining && a.running == 0 && a.idle != nil {
		close(a.idle)
		a.idle = nil
	}
}

// admitHead admits queued requests from the head while they fit.
func (a *admission) admitHead() {
	for len(a.queue) > 0 && a.fits(a.queue[0].bytes) {
		t := a.queue[0]
		a.queue = a.queue[1:]
		a.take(t.bytes)
		close(t.ready)
	}
}

// release returns a finished request's reservation and admits what now fits.
func (a *admission) release(bytes int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.put(bytes)
	a.admitHead()
	a.changed()
}

// drain refuses new requests and every queued one (503) and returns a channel closed
// once no request runs.
func (a *admission) drain() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.draining = true
	for _, t := range a.queue {
		t.err = errDraining
		close(t.ready)
	}
	a.queue = nil
	a.changed()
	idle := make(chan struct{})
	if a.running == 0 {
		close(idle)
	} else {
		a.idle = idle
	}
	return idle
}

func (a *admission) isDraining() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.draining
}

func (a *admission) changed() {
	if a.onChange != nil {
		a.onChange(a.reserved, a.running, len(a.queue))
	}
}
