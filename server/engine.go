package server

import (
	"context"
	"log"
	"math"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvfoot/kvfoot/footprint"
	"github.com/kvfoot/kvfoot/kv"
	"github.com/kvfoot/kvfoot/model"
	"github.com/kvfoot/kvfoot/tokenizer"
)

// job is one admitted request as the engine runs it. The fields above the line are
// set by the handler before the job is handed over; the rest belong to the engine's
// goroutine.
type job struct {
	ctx      context.Context
	arrived  time.Time
	prompt   []int
	max      int // tokens to generate at most
	stopIDs  []int
	stops    []string
	sampler  *model.Sampler
	logprobs bool
	top      int // alternatives per token in logprobs
	policy   string
	meter    *footprint.Meter
	obs      *observer
	reserve  int64 // predicted peak bytes, reserved in the budget
	out      outbox
	// ---
	cache    *kv.Cache  // built when the job starts
	store    kv.Storage // the cache's device storage, closed when the job ends; nil on the host
	patch    int
	decoding bool
	next     [1]int // the token the next decode step feeds
	n        int    // tokens generated
	gen      []int  // the tokens generated, to feed them again in replay
	fed      int    // tokens fed by forwards that completed
	ended    bool   // released: its last event is sent
	stream   *tokenizer.Stream
	pending  string // decoded text held back because a stop string may start in it
	lastTok  time.Time
	evicted  int64 // evicted entries already counted in the metric
	tick     int64 // the last tick j was part of
}

// event is what the engine tells a handler: text completed by the tokens generated
// since the last event (and their logprobs), and at the end the finish reason and
// usage, or an error.
type event struct {
	text     string
	logprobs []tokenLogprob
	finish   string // "stop" or "length" on the last event
	usage    *usage
	err      *apiError
}

func (e *event) last() bool { return e.finish != "" || e.err != nil }

// outbox passes events from the engine to a handler without ever blocking the engine.
type outbox struct {
	mu     sync.Mutex
	events []event
	notify chan struct{} // capacity 1: "there are events"
}

func (o *outbox) push(e event) {
	o.mu.Lock()
	o.events = append(o.events, e)
	o.mu.Unlock()
	select {
	case o.notify <- struct{}{}:
	default:
	}
}

func (o *outbox) take(dst []event) []event {
	o.mu.Lock()
	dst = append(dst, o.events...)
	o.events = o.events[:0]
	o.mu.Unlock()
	return dst
}

// observer passes the cache's reports to the request's footprint.Meter and keeps
// what the engine accounts: the entries and bytes held after the last forward and
// the most bytes held during it.
type observer struct {
	meter                    *footprint.Meter
	entries, bytes, stepPeak int64
}

func (o *observer) Attended(layer, head int, entries int64, last int) {
	o.meter.Attended(layer, head, entries, last)
}

func (o *observer) Step(n int, prefill bool, entries, bytes, peakBytes int64) {
	o.meter.Step(n, prefill, entries, bytes, peakBytes)
	o.entries, o.bytes, o.stepPeak = entries, bytes, peakBytes
}

// engine runs every admitted request in one goroutine: each tick is one batched
// forward of the decode steps of all decoding requests plus pre-fill chunks of
// pre-filling ones (oldest first, up to chunk rows per tick, at least one chunk), so
// a long prompt is fed a chunk at a time between decode steps instead of stalling
// the streams.
type engine struct {
	m       *model.Model
	r       *model.Runner // made by runner
	tok     *tokenizer.Tokenizer
	chunk   int
	adm     *admission
	met     *metrics
	in      chan *job
	quit    chan struct{}
	done    chan struct{}
	running []*job
	seqs    []model.Seq
	batch   []*job
	ticks   int64
	// newCache builds a request's cache when it starts, and again for replay; newMeter
	// its meter, for replay.
	newCache func(spec string, obs kv.Observer) (*kv.Cache, kv.Storage, *apiError)
	newMeter func() (*footprint.Meter, *observer)
	// failure is the error of a request the engine failed on with a panic (Server.failure).
	failure func(policy string, r any) *apiError
	// unusable is set, for good, once the device is found broken after a fault (a sticky
	// CUDA error): every request then fails with it, and /healthz answers 503.
	unusable atomic.Pointer[apiError]
	// busySince is when the step now running began (unix nanoseconds), 0 between steps;
	// hung is closed once the watchdog found a step hanging (Server.watch).
	busySince atomic.Int64
	hung      chan struct{}
	// beforeTick, when set (by tests, before the first request), runs before each tick.
	beforeTick func()

	inUse, peak atomic.Int64 // bytes held after the last tick; most held at once
}

func newEngine(m *model.Model, tok *tokenizer.Tokenizer, chunk, maxRunning int, adm *admission, met *metrics) *engine {
	e := &engine{
		m: m, tok: tok, chunk: chunk, adm: adm, met: met, failure: panicError,
		in: make(chan *job, maxRunning), quit: make(chan struct{}), done: make(chan struct{}),
		hung: make(chan struct{}),
	}
	go e.loop()
	return e
}

func (e *engine) loop() {
	defer close(e.done)
	for e.round() {
	}
}

// round takes the new requests and runs one tick; false once the server closes. A
// panic that no request's guard caught ends every running request, never the
// process.
func (e *engine) round() (more bool) {
	defer func() {
		if r := recover(); r != nil {
			logPanic("engine", r)
			for len(e.running) > 0 {
				j := e.running[0]
				e.fail(j, e.failure(j.policy, r))
			}
			e.dropRunner()
			more = true
		}
	}()
	if len(e.running) == 0 {
		select {
		case j := <-e.in:
			e.start(j)
		case <-e.quit:
			e.failAll()
			return false
		}
	}
	e.busySince.Store(time.Now().UnixNano())
	defer e.busySince.Store(0)
	for more := true; more; {
		select {
		case j := <-e.in:
			e.start(j)
		case <-e.quit:
			e.failAll()
			return false
		default:
			more = false
		}
	}
	if e.beforeTick != nil {
		e.beforeTick()
	}
	e.reap()
	if u := e.unusable.Load(); u != nil {
		// a sticky device error: no forward can succeed any more
		for len(e.running) > 0 {
			e.fail(e.running[0], u)
		}
		e.dropRunner()
	}
	if len(e.running) > 0 {
		e.tick()
	}
	return true
}

// start builds j's cache (on a device, its memory is taken now, not while j was queued)
// and adds j to the running requests.
func (e *engine) start(j *job) {
	e.running = append(e.running, j)
	if u := e.unusable.Load(); u != nil {
		e.fail(j, u) // admitted while the request that broke the device ran
		return
	}
	e.guard(j, func() {
		var ae *apiError
		if j.cache, j.store, ae = e.newCache(j.policy, j.obs); ae != nil {
			e.fail(j, ae)
			return
		}
		j.patch = min(j.cache.PatchLen(), len(j.prompt))
		j.stream = e.tok.NewStream(true)
	})
}

// runner is the batch runner, made anew after a panic, which may have left the old one's
// buffers half grown; making it allocates (device memory on a GPU), so it is called only
// where panics are caught.
func (e *engine) runner() *model.Runner {
	if e.r == nil {
		e.r = model.NewRunner(e.m, e.chunk)
	}
	return e.r
}

// dropRunner frees the runner's buffers (on a GPU, device memory the collector never
// returns: tens of MB a fault on an 8B model) and drops it; the next forward makes another.
func (e *engine) dropRunner() {
	if e.r == nil {
		return
	}
	if err := e.r.Close(); err != nil {
		log.Printf("kvfoot server: freeing the batch buffers after a failure: %v", err)
	}
	e.r = nil
}

// guard runs f for j; a panic in f ends j alone with an error that names its policy
// (failure: 500, or 503 when a device ran out of memory).
func (e *engine) guard(j *job, f func()) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			logPanic(j.policy, r)
			ae, isAPI := r.(*apiError) // replay's: a cache the device could not build again
			if !isAPI {
				ae = e.failure(j.policy, r)
			}
			e.fail(j, ae)
			ok = false
		}
	}()
	f()
	return true
}

// panicError is the 500 a request gets when the engine panicked on it.
func panicError(policy string, r any) *apiError {
	return newError(http.StatusInternalServerError, "kv_policy", "engine_panic",
		"kv_policy %q: the engine failed on this request (panic: %v); the server goes on", policy, r)
}

func logPanic(where string, r any) {
	log.Printf("kvfoot server: panic in %s: %v\n%s", where, r, debug.Stack())
}

// fail ends j with e's error.
func (e *engine) fail(j *job, err *apiError) {
	e.release(j) // before the client can see its end, so that the stats it reads then are settled
	j.out.push(event{err: err})
}

// reap drops the requests whose client went away: their caches are freed now.
func (e *engine) reap() {
	for i := 0; i < len(e.running); {
		j := e.running[i]
		if j.ctx.Err() != nil {
			e.release(j)
			continue
		}
		i++
	}
}

// failAll ends every request with 503 (the server is closing).
func (e *engine) failAll() {
	for len(e.running) > 0 {
		e.fail(e.running[0], newError(http.StatusServiceUnavailable, "", "server_shutdown", "the server shut down before the request finished"))
	}
	for {
		select {
		case j := <-e.in:
			j.out.push(event{err: newError(http.StatusServiceUnavailable, "", "server_shutdown", "the server shut down before the request started")})
			e.adm.release(j.reserve)
		default:
			return
		}
	}
}

func (e *engine) tick() {
	e.seqs, e.batch = e.seqs[:0], e.batch[:0]
	for _, j := range e.running {
		if j.decoding {
			e.seqs = append(e.seqs, e.seqOf(j))
			e.batch = append(e.batch, j)
		}
	}
	rows := 0
	for _, j := range e.running {
		if j.decoding {
			continue
		}
		s := e.chunkOf(j)
		if rows > 0 && rows+s.Step.Rows > e.chunk {
			break
		}
		rows += s.Step.Rows
		e.seqs = append(e.seqs, s)
		e.batch = append(e.batch, j)
	}
	e.ticks++
	rows = 0
	for i, s := range e.seqs {
		rows += s.Step.Rows
		e.batch[i].tick = e.ticks
	}
	e.met.batchSeqs.Observe(float64(len(e.seqs)))
	e.met.batchRows.Observe(float64(rows))
	err, panicked := e.forwardBatch()
	switch {
	case panicked:
		// The caches of the batch may hold part of this step: each is built again from
		// what it was fed, then every step runs alone, so that only the request the
		// panic comes from fails.
		for _, j := range slices.Clone(e.batch) {
			if e.unusable.Load() != nil {
				break // the next round fails the rest with the device's error
			}
			if !e.guard(j, func() { e.replay(j) }) {
				e.dropRunner()
				continue
			}
			e.alone(j)
		}
	case err != nil:
		// The model checks every step before it feeds any cache, so the others can
		// still go, one by one, and only the failing request ends.
		for _, j := range slices.Clone(e.batch) {
			e.alone(j)
		}
	default:
		e.account()
		for i := range e.seqs {
			j, s := e.batch[i], &e.seqs[i]
			e.guard(j, func() { e.advance(j, s) })
		}
	}
}

// forwardBatch runs the batched forward, reporting a panic instead of passing it on.
func (e *engine) forwardBatch() (err error, panicked bool) {
	defer func() {
		if r := recover(); r != nil {
			logPanic("a batched forward", r)
			e.dropRunner() // its buffers may be half grown
			panicked = true
		}
	}()
	return e.runner().ForwardBatch(e.seqs), false
}

// alone runs j's next step by itself and advances it.
func (e *engine) alone(j *job) {
	s := e.seqOf(j)
	var err error
	if !e.guard(j, func() { s.Logits, err = e.runner().Forward(s.Cache, s.IDs, s.Step, false) }) {
		e.dropRunner()
		return
	}
	if err != nil {
		e.fail(j, newError(http.StatusInternalServerError, "kv_policy", "engine_error", "kv_policy %q: forward: %v", j.policy, err))
		return
	}
	e.account()
	e.guard(j, func() { e.advance(j, &s) })
}

// replay builds j's cache and meter again and feeds them what the old ones were fed
// by completed forwards, in the same steps: the pre-fill chunks, then one decode step
// per generated token but the last. The old cache's device memory is freed first.
func (e *engine) replay(j *job) {
	closeStorage(j.store)
	j.cache, j.store = nil, nil
	meter, obs := e.newMeter()
	cache, store, ae := e.newCache(j.policy, obs)
	if ae != nil {
		panic(ae) // it was built once from the same spec: the device failed (an *apiError names it)
	}
	fed := j.fed
	j.cache, j.store, j.meter, j.obs, j.fed = cache, store, meter, obs, 0
	for j.cache.Pos() < fed {
		var s model.Seq
		if pos := j.cache.Pos(); pos < len(j.prompt) {
			s = e.chunkOf(j)
		} else {
			s = model.Seq{Cache: j.cache, IDs: j.gen[pos-len(j.prompt):][:1], Step: model.Step{Pos: pos, Rows: 1}}
		}
		if _, err := e.runner().Forward(s.Cache, s.IDs, s.Step, false); err != nil {
			panic(err)
		}
	}
	j.fed = fed
}

// seqOf is j's next step: a decode step or its next pre-fill chunk.
func (e *engine) seqOf(j *job) model.Seq {
	if j.decoding {
		return model.Seq{Cache: j.cache, IDs: j.next[:], Step: model.Step{Pos: j.cache.Pos(), Rows: 1}}
	}
	return e.chunkOf(j)
}

// chunkOf is the next pre-fill chunk of j, as model.PlanChunks plans every pre-fill,
// with the prompt's last patch tokens appended when it is not the last chunk.
func (e *engine) chunkOf(j *job) model.Seq {
	pos, p := j.cache.Pos(), len(j.prompt)
	end := model.PlanChunks(p, e.chunk, j.cache.LocalChunk()).End(pos)
	ids := j.prompt[pos:end]
	st := model.Step{Pos: pos, Rows: end - pos, Prefill: true, Final: end == p}
	if j.patch > 0 && !st.Final {
		ids = append(ids[:len(ids):len(ids)], j.prompt[p-j.patch:]...)
		st.Rows += j.patch
		st.Patch = j.patch
	}
	return model.Seq{Cache: j.cache, IDs: ids, Step: st}
}

// account updates the bytes in use and the most bytes held at once: during this
// forward each batched cache held at most its own peak, and the others what they
// held before it.
func (e *engine) account() {
	var now, peak int64
	for _, j := range e.running {
		now += j.obs.bytes
		if j.tick == e.ticks {
			peak += j.obs.stepPeak
		} else {
			peak += j.obs.bytes
		}
		// entries of every stored head (a gqa=expand cache stores each KV head once
		// per query head)
		ev := int64(j.cache.Pos())*int64(e.m.Config.Layers*j.cache.Heads()) - j.obs.entries
		count(e.met.evicted, ev-j.evicted)
		j.evicted = max(j.evicted, ev)
	}
	e.inUse.Store(now)
	e.met.kvInUse.Set(float64(now))
	if peak > e.peak.Load() {
		e.peak.Store(peak)
		e.met.kvPeak.Set(float64(peak))
	}
}

// advance handles the logits of j's forward: a finished pre-fill or a decode step
// yields the next token.
func (e *engine) advance(j *job, s *model.Seq) {
	j.fed = s.Step.Pos + s.Step.Tokens()
	if s.Step.Prefill {
		if !s.Step.Final {
			return
		}
		j.decoding = true
	}
	if err := model.CheckFinite(s.Logits, j.cache.Pos()-1); err != nil {
		e.fail(j, newError(http.StatusInternalServerError, "kv_policy", "engine_error", "kv_policy %q: %v", j.policy, err))
		return
	}
	id := j.sampler.Sample(s.Logits)
	j.gen = append(j.gen, id)
	var ev event
	if j.logprobs {
		ev.logprobs = []tokenLogprob{e.logprob(s.Logits, id, j.top)}
	}
	j.n++
	now := time.Now()
	if j.n == 1 {
		e.met.ttft.Observe(now.Sub(j.arrived).Seconds())
	} else {
		e.met.itl.Observe(now.Sub(j.lastTok).Seconds())
	}
	j.lastTok = now
	j.next[0] = id
	count(e.met.completionTokens, 1)

	if slices.Contains(j.stopIDs, id) {
		ev.text = j.pending + j.stream.Flush()
		e.finish(j, "stop", ev)
		return
	}
	text, hit := j.cut(j.stream.Next(id))
	ev.text = text
	switch {
	case hit:
		e.finish(j, "stop", ev)
	case j.n >= j.max:
		ev.text += j.pending + j.stream.Flush()
		e.finish(j, "length", ev)
	default:
		j.out.push(ev)
	}
}

// cut appends newly decoded text to what is held back and returns what can be sent:
// everything before the first stop string (hit), or everything except a tail that
// may be the start of a stop string.
func (j *job) cut(text string) (out string, hit bool) {
	if len(j.stops) == 0 {
		return text, false
	}
	p := j.pending + text
	first := -1
	for _, s := range j.stops {
		if i := strings.Index(p, s); i >= 0 && (first < 0 || i < first) {
			first = i
		}
	}
	if first >= 0 {
		j.pending = ""
		return p[:first], true
	}
	hold := 0
	for _, s := range j.stops {
		for k := min(len(s)-1, len(p)); k > hold; k-- {
			if strings.HasSuffix(p, s[:k]) {
				hold = k
				break
			}
		}
	}
	j.pending = p[len(p)-hold:]
	return p[:len(p)-hold], false
}

// logprob is id's log-probability under logits, with the top most likely tokens.
func (e *engine) logprob(logits []float32, id, top int) tokenLogprob {
	mx := logits[0]
	for _, v := range logits {
		mx = max(mx, v)
	}
	var sum float64
	for _, v := range logits {
		sum += math.Exp(float64(v - mx))
	}
	lse := float64(mx) + math.Log(sum)
	lp := tokenLogprob{Logprob: finite(float64(logits[id]) - lse), TopLogprobs: []topLogprob{}}
	lp.Token, lp.Bytes = e.tokenText(id)
	best := make([]int, 0, top)
	for i, v := range logits {
		if top == 0 {
			break
		}
		if len(best) < top || v > logits[best[len(best)-1]] {
			at, _ := slices.BinarySearchFunc(best, v, func(b int, v float32) int {
				if logits[b] >= v {
					return -1
				}
				return 1
			})
			best = slices.Insert(best, at, i)
			if len(best) > top {
				best = best[:top]
			}
		}
	}
	for _, b := range best {
		t, by := e.tokenText(b)
		lp.TopLogprobs = append(lp.TopLogprobs, topLogprob{Token: t, Logprob: finite(float64(logits[b]) - lse), Bytes: by})
	}
	return lp
}

func (e *engine) tokenText(id int) (string, []int) {
	s := e.tok.Decode([]int{id})
	b := make([]int, len(s))
	for i := 0; i < len(s); i++ {
		b[i] = int(s[i])
	}
	return s, b
}

// finish sends j's last event with its usage and frees its cache.
func (e *engine) finish(j *job, reason string, ev event) {
	rep := j.meter.Report(false)
	ev.finish = reason
	ev.usage = &usage{
		PromptTokens: len(j.prompt), CompletionTokens: j.n, TotalTokens: len(j.prompt) + j.n,
		KV: &kvUsage{
			Policy: j.policy, Footprint: rep.Footprint, Peak: rep.Peak, PeakEntries: rep.PeakEntries,
			PeakBytes: rep.PeakBytes, EvictedEntries: j.evicted, ReservedBytes: j.reserve, PrefillChunk: e.chunk,
		},
	}
	e.release(j) // before the client can see its end, so that the stats it reads then are settled
	j.out.push(ev)
}

// release removes j from the running set, drops its cache and returns its
// reservation to the budget.
func (e *engine) release(j *job) {
	if j.ended {
		return
	}
	j.ended = true
	if i := slices.Index(e.running, j); i >= 0 {
		e.running = slices.Delete(e.running, i, i+1)
	}
	var now int64
	for _, r := range e.running {
		now += r.obs.bytes
	}
	e.inUse.Store(now)
	e.met.kvInUse.Set(float64(now))
	closeStorage(j.store)
	j.cache, j.store, j.meter, j.obs.meter = nil, nil, nil, nil
	e.adm.release(j.reserve)
}
