package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
)

// The request and response bodies of the OpenAI API, with only the fields kvfoot
// serves. Unknown request fields are ignored, as OpenAI-compatible servers do; fields
// kvfoot cannot honour (n > 1, penalties, tools, ...) are refused with 400.

// sampleParams are the request fields the two generation endpoints share, plus the
// extensions kv_policy (a KV cache policy spec for this request) and ignore_eos.
type sampleParams struct {
	Model         string          `json:"model"`
	MaxTokens     *int            `json:"max_tokens"`
	Temperature   *float64        `json:"temperature"`
	TopP          *float64        `json:"top_p"`
	Seed          json.RawMessage `json:"seed"` // an integer up to 2^64−1: read by parseSeed
	N             *int            `json:"n"`
	Stop          json.RawMessage `json:"stop"`
	Stream        bool            `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	PresencePenalty  *float64       `json:"presence_penalty"`
	FrequencyPenalty *float64       `json:"frequency_penalty"`
	LogitBias        map[string]any `json:"logit_bias"`
	KVPolicy         *string        `json:"kv_policy"`
	IgnoreEOS        bool           `json:"ignore_eos"`
}

type completionRequest struct {
	sampleParams
	Prompt           json.RawMessage `json:"prompt"`
	Logprobs         *int            `json:"logprobs"`
	Echo             bool            `json:"echo"`
	BestOf           *int            `json:"best_of"`
	Suffix           *string         `json:"suffix"`
	AddSpecialTokens *bool           `json:"add_special_tokens"`
}

type chatRequest struct {
	sampleParams
	Messages            []chatMessage   `json:"messages"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Logprobs            bool            `json:"logprobs"`
	TopLogprobs         *int            `json:"top_logprobs"`
	Tools               json.RawMessage `json:"tools"`
	ResponseFormat      *struct {
		Type string `json:"type"`
	} `json:"response_format"`
}

type chatMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// decodeBody unmarshals a request body, turning JSON errors into 400s that name the
// offending field.
func decodeBody(body []byte, v any) *apiError {
	if len(bytes.TrimSpace(body)) == 0 {
		return badRequest("", "empty request body: want a JSON object")
	}
	err := json.Unmarshal(body, v)
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := jsonField(reflect.TypeOf(v), te.Field)
		if field == "" {
			return badRequest("", "request body: got JSON %s, want a JSON object", te.Value)
		}
		return badRequest(field, "%s: got JSON %s, want %s", field, te.Value, jsonKind(te.Type))
	}
	return badRequest("", "request body is not valid JSON: %v", err)
}

// jsonField is the request's JSON path of a decoding error's field: encoding/json
// names the Go structs embedded in the request type (sampleParams.max_tokens), which
// the API does not have.
func jsonField(req reflect.Type, field string) string {
	for req.Kind() == reflect.Pointer {
		req = req.Elem()
	}
	embedded := map[string]bool{}
	if req.Kind() == reflect.Struct {
		for i := range req.NumField() {
			if f := req.Field(i); f.Anonymous {
				embedded[f.Type.Name()] = true
			}
		}
	}
	var path []string
	for _, seg := range strings.Split(field, ".") {
		if seg != "" && !embedded[seg] {
			path = append(path, seg)
		}
	}
	return strings.Join(path, ".")
}

// jsonKind names the JSON kind a Go type decodes from.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "a boolean"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "an array"
	}
	return "an object"
}

// maxSeed is the largest seed: the sampler's seed is an unsigned 64-bit integer.
const maxSeed = math.MaxUint64

// parseSeed reads `seed`: an integer from −2^63 to 2^64−1 (a negative seed is taken
// as its two's complement), compared exactly as text, never through a float.
func parseSeed(raw json.RawMessage) (seed uint64, set bool, e *apiError) {
	if isNull(raw) {
		return 0, false, nil
	}
	t := string(bytes.TrimSpace(raw))
	if u, err := strconv.ParseUint(t, 10, 64); err == nil {
		return u, true, nil
	}
	if i, err := strconv.ParseInt(t, 10, 64); err == nil {
		return uint64(i), true, nil
	}
	if n := strings.TrimPrefix(t, "-"); n != "" && strings.Trim(n, "0123456789") == "" {
		return 0, false, badRequest("seed", "seed %s: want an integer from %d to %d", t, math.MinInt64, uint64(maxSeed))
	}
	return 0, false, badRequest("seed", "seed: got JSON %s, want an integer from %d to %d", t, math.MinInt64, uint64(maxSeed))
}

// isNull reports an absent or null JSON value.
func isNull(raw json.RawMessage) bool {
	s := bytes.TrimSpace(raw)
	return len(s) == 0 || string(s) == "null"
}

// parseStop reads `stop`: a string or an array of up to 4 non-empty strings.
func parseStop(raw json.RawMessage) ([]string, *apiError) {
	if isNull(raw) {
		return nil, nil
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		if one == "" {
			return nil, nil
		}
		return []string{one}, nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, badRequest("stop", "stop: want a string or an array of strings")
	}
	if len(list) > 4 {
		return nil, badRequest("stop", "stop: %d sequences, want at most 4", len(list))
	}
	out := list[:0]
	for _, s := range list {
		if s != "" {
			out = append(out, s)
		}
	}
	return out, nil
}

// parsePrompt reads a completion prompt: a string, an array of one string, an array of
// token ids, or an array of one array of token ids. ids is set for token prompts.
func parsePrompt(raw json.RawMessage) (text string, ids []int, e *apiError) {
	if isNull(raw) {
		return "", nil, badRequest("prompt", "prompt is required")
	}
	if json.Unmarshal(raw, &text) == nil {
		return text, nil, nil
	}
	var texts []string
	if json.Unmarshal(raw, &texts) == nil {
		if len(texts) != 1 {
			return "", nil, badRequest("prompt", "prompt: an array of %d prompts; kvfoot serves one prompt per request (n = 1)", len(texts))
		}
		return texts[0], nil, nil
	}
	if json.Unmarshal(raw, &ids) == nil {
		if len(ids) == 0 {
			return "", nil, badRequest("prompt", "prompt: an empty array of token ids")
		}
		return "", ids, nil
	}
	var batch [][]int
	if json.Unmarshal(raw, &batch) == nil {
		if len(batch) != 1 || len(batch[0]) == 0 {
			return "", nil, badRequest("prompt", "prompt: %d token arrays; kvfoot serves one non-empty prompt per request", len(batch))
		}
		return "", batch[0], nil
	}
	return "", nil, badRequest("prompt", "prompt: want a string, an array of one string, or an array of token ids")
}

// messageText reads a chat message's content: a string, or an array of text parts.
func messageText(i int, raw json.RawMessage) (string, *apiError) {
	param := fmt.Sprintf("messages[%d].content", i)
	if isNull(raw) {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var parts []struct {
		Type string  `json:"type"`
		Text *string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", badRequest(param, "%s: want a string or an array of content parts", param)
	}
	var sb strings.Builder
	for j, p := range parts {
		if p.Type != "text" || p.Text == nil {
			return "", badRequest(param, "%s[%d]: type %q; kvfoot serves text parts only", param, j, p.Type)
		}
		sb.WriteString(*p.Text)
	}
	return sb.String(), nil
}

// Responses.

type completionResponse struct {
	ID      string             `json:"id"`
	Object  string             `json:"object"`
	Created int64              `json:"created"`
	Model   string             `json:"model"`
	Choices []completionChoice `json:"choices"`
	Usage   *usage             `json:"usage,omitempty"`
}

type completionChoice struct {
	Index        int                 `json:"index"`
	Text         string              `json:"text"`
	Logprobs     *completionLogprobs `json:"logprobs"`
	FinishReason *string             `json:"finish_reason"`
}

// completionLogprobs is the legacy completions logprobs object.
type completionLogprobs struct {
	Tokens        []string             `json:"tokens"`
	TokenLogprobs []float64            `json:"token_logprobs"`
	TopLogprobs   []map[string]float64 `json:"top_logprobs"`
	TextOffset    []int                `json:"text_offset"`
}

type chatResponse struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []chatChoice `json:"choices"`
	Usage   *usage       `json:"usage,omitempty"`
}

type chatChoice struct {
	Index        int           `json:"index"`
	Message      *chatOut      `json:"message,omitempty"`
	Delta        *chatOut      `json:"delta,omitempty"`
	Logprobs     *chatLogprobs `json:"logprobs"`
	FinishReason *string       `json:"finish_reason"`
}

type chatOut struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
}

type chatLogprobs struct {
	Content []tokenLogprob `json:"content"`
}

// tokenLogprob is one generated token's log-probability under the model (the logits
// before temperature and top_p), with the most likely alternatives.
type tokenLogprob struct {
	Token       string       `json:"token"`
	Logprob     float64      `json:"logprob"`
	Bytes       []int        `json:"bytes"`
	TopLogprobs []topLogprob `json:"top_logprobs"`
}

type topLogprob struct {
	Token   string  `json:"token"`
	Logprob float64 `json:"logprob"`
	Bytes   []int   `json:"bytes"`
}

// usage is OpenAI's usage object plus kv, the request's KV cache as the meter saw it.
type usage struct {
	PromptTokens     int      `json:"prompt_tokens"`
	CompletionTokens int      `json:"completion_tokens"`
	TotalTokens      int      `json:"total_tokens"`
	KV               *kvUsage `json:"kv"`
}

// kvUsage is what one request cost in KV memory. Footprint and peak are the paper's
// fractions of full causal attention (footprint.Meter); peak_entries is the most
// entries a query saw, per KV head; peak_bytes the most bytes the cache held;
// evicted_entries the (layer, stored head, token) entries the policy dropped (a
// gqa=expand cache stores each KV head once per query head); reserved_bytes
// the peak that admission predicted and reserved in the budget.
type kvUsage struct {
	Policy         string  `json:"policy"`
	Footprint      float64 `json:"footprint"`
	Peak           float64 `json:"peak"`
	PeakEntries    float64 `json:"peak_entries"`
	PeakBytes      int64   `json:"peak_bytes"`
	EvictedEntries int64   `json:"evicted_entries"`
	ReservedBytes  int64   `json:"reserved_bytes"`
	PrefillChunk   int     `json:"prefill_chunk"`
}

type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
	// Context is the longest prompt plus completion the model takes, in tokens.
	Context int `json:"context_length"`
}

// finite replaces a non-finite logprob (−Inf for a token of probability 0) by the
// most negative float64, since JSON has no infinities.
func finite(x float64) float64 {
	if math.IsInf(x, -1) || math.IsNaN(x) {
		return -math.MaxFloat64
	}
	return x
}
