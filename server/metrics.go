package server

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the server's Prometheus metrics, on a registry of its own (so that
// several servers, as in tests, do not collide), served at /metrics.
type metrics struct {
	reg              *prometheus.Registry
	requests         *prometheus.CounterVec
	promptTokens     prometheus.Counter
	completionTokens prometheus.Counter
	ttft             prometheus.Histogram
	itl              prometheus.Histogram
	kvInUse          prometheus.Gauge
	kvPeak           prometheus.Gauge
	kvReserved       prometheus.Gauge
	kvBudget         prometheus.Gauge
	evicted          prometheus.Counter
	queued           prometheus.Gauge
	running          prometheus.Gauge
	batchSeqs        prometheus.Histogram
	batchRows        prometheus.Histogram
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvfoot_requests_total", Help: "Requests by endpoint and HTTP status (499: the client went away)."},
			[]string{"endpoint", "code"}),
		promptTokens: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kvfoot_prompt_tokens_total", Help: "Prompt tokens of admitted requests."}),
		completionTokens: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kvfoot_completion_tokens_total", Help: "Generated tokens."}),
		ttft: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "kvfoot_time_to_first_token_seconds", Help: "From the request's arrival to its first generated token.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 16)}),
		itl: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "kvfoot_inter_token_latency_seconds", Help: "Between consecutive generated tokens of a request.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}),
		kvInUse: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kvfoot_kv_bytes_in_use", Help: "KV cache bytes held by running requests after the last forward."}),
		kvPeak: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kvfoot_kv_bytes_peak", Help: "Most KV cache bytes held at once since the start (within forwards included)."}),
		kvReserved: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kvfoot_kv_bytes_reserved", Help: "Predicted KV peaks reserved by running requests."}),
		kvBudget: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kvfoot_kv_budget_bytes", Help: "The KV memory budget (--kv-budget)."}),
		evicted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kvfoot_kv_evicted_entries_total", Help: "KV entries (layer, KV head, token) evicted by the policies."}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kvfoot_queue_length", Help: "Requests waiting for admission."}),
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kvfoot_running_requests", Help: "Admitted requests (pre-filling or decoding)."}),
		batchSeqs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "kvfoot_batch_sequences", Help: "Sequences in one batched forward.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 9)}),
		batchRows: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "kvfoot_batch_rows", Help: "Token rows in one batched forward (decode steps plus pre-fill chunks).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14)}),
	}
	m.reg.MustRegister(m.requests, m.promptTokens, m.completionTokens, m.ttft, m.itl,
		m.kvInUse, m.kvPeak, m.kvReserved, m.kvBudget, m.evicted, m.queued, m.running, m.batchSeqs, m.batchRows,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// count adds n to a counter: the one place counts are added. A counter handed a
// negative number panics, so a count that went backwards (a bug in what it counts)
// is dropped instead of ending the process.
func count(c prometheus.Counter, n int64) {
	if n > 0 {
		c.Add(float64(n))
	}
}
