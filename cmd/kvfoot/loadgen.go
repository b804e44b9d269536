package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/kvfoot/kvfoot/loadgen"
)

func init() {
	register("loadgen", "load-test an OpenAI-compatible server: tokens/s, time to first token, inter-token latency per concurrency", runLoadgen)
}

func runLoadgen(args []string) error {
	fs := newFlags("loadgen")
	url := fs.String("url", "http://127.0.0.1:8080/v1", "the server's address as kvfoot serve prints it (with or without /v1)")
	apiKey := fs.String("api-key", "", "Bearer token (default $KVFOOT_API_KEY)")
	modelName := fs.String("model", "kvfoot-small", "model id sent with every request")
	policy := fs.String("policy", "", "kv_policy of every request (default: the server's)")
	conc := fs.String("concurrency", "1,4,16,64", "comma-separated numbers of requests in flight")
	perClient := fs.Int("requests", 2, "requests per unit of concurrency (at least 8 in all)")
	promptLen := fs.Int("prompt-len", 256, "prompt tokens per request")
	maxTokens := fs.Int("max-tokens", 64, "generated tokens per request")
	format := fs.String("format", "table", "output: table (markdown) or json (one object per line)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *format != "table" && *format != "json" {
		return fmt.Errorf("--format %q: want table or json", *format)
	}
	if *apiKey == "" {
		*apiKey = os.Getenv("KVFOOT_API_KEY")
	}
	levels, err := parseIDs("--concurrency", *conc)
	if err != nil {
		return err
	}
	for _, c := range levels {
		if c < 1 {
			return fmt.Errorf("--concurrency %d: want at least 1", c)
		}
	}
	if *promptLen < 1 || *maxTokens < 1 || *perClient < 1 {
		return fmt.Errorf("--prompt-len %d, --max-tokens %d, --requests %d: want each at least 1", *promptLen, *maxTokens, *perClient)
	}
	if _, err := loadgen.CompletionsURL(*url); err != nil {
		return fmt.Errorf("--url: %w", err)
	}
	if *format == "table" {
		fmt.Printf("policy %q, prompt %d, max tokens %d, %s\n\n", *policy, *promptLen, *maxTokens, *url)
		fmt.Println("| concurrency | requests | errors | generated tokens/s | all tokens/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms | KV peak KiB | footprint |")
		fmt.Println("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	}
	for _, c := range levels {
		res, err := loadgen.Run(context.Background(), loadgen.Options{
			URL: *url, APIKey: *apiKey, Model: *modelName, Policy: *policy,
			Concurrency: c, Requests: max(8, c**perClient), PromptTokens: *promptLen, MaxTokens: *maxTokens,
		})
		if err != nil {
			return err
		}
		if *format == "json" {
			if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
				return err
			}
		} else {
			fmt.Printf("| %d | %d | %d | %.1f | %.0f | %.0f | %.0f | %.1f | %.1f | %.0f | %.3f |\n", res.Concurrency, res.Requests, res.Errors,
				res.TokensPerSecond, res.AllPerSecond, res.TTFTp50*1e3, res.TTFTp99*1e3, res.ITLp50*1e3, res.ITLp99*1e3, float64(res.KVPeakBytes)/1024, res.Footprint)
		}
		if res.Errors > 0 {
			return fmt.Errorf("concurrency %d: %d of %d requests failed; the first: %s", c, res.Errors, res.Requests, res.FirstError)
		}
	}
	return nil
}
