package footprint

import "fmt"

// Bytes turns a footprint into memory for a model whose full cache takes
// bytesPerToken per token (K and V, every layer and KV head).
type Bytes struct {
	PerToken int64   `json:"bytes_per_token"`
	Peak     float64 `json:"peak_bytes"` // peak × (P+R) tokens
	// Mean is the KV memory averaged over query tokens: footprint × (P+R+1)/2 tokens
	// (full attention's query t sees t+1 entries, causal(P+R)/(P+R) on average).
	Mean    float64 `json:"mean_bytes"`
	PeakGiB float64 `json:"peak_gib"`
	MeanGiB float64 `json:"mean_gib"`
}

// KVBytes is the memory of result r for a generation of total = P+R tokens.
func KVBytes(r Result, total int, bytesPerToken int64) Bytes {
	b := Bytes{PerToken: bytesPerToken}
	b.Peak = r.Peak * float64(total) * float64(bytesPerToken)
	b.Mean = r.Footprint * causal(total) / float64(total) * float64(bytesPerToken)
	b.PeakGiB, b.MeanGiB = b.Peak/(1<<30), b.Mean/(1<<30)
	return b
}

// BytesPerToken is the K and V storage of one token in a full cache:
// 2 · layers · KV heads · head_dim · element size.
func BytesPerToken(layers, kvHeads, headDim int, dtype string) (int64, error) {
	size, ok := map[string]int64{"float32": 4, "f32": 4, "bfloat16": 2, "bf16": 2, "float16": 2, "f16": 2}[dtype]
	if !ok {
		return 0, fmt.Errorf("dtype %q: want float32, bfloat16 or float16", dtype)
	}
	return 2 * int64(layers) * int64(kvHeads) * int64(headDim) * size, nil
}
