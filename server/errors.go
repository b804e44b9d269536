package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// apiError is an error in OpenAI's shape, with the HTTP status it is sent with:
//
//	{"error": {"message": "...", "type": "invalid_request_error", "param": "max_tokens", "code": null}}
//
// Statuses: 400 a malformed request or an invalid parameter, or a kv_policy the server's
// device cannot hold; 401 a missing or wrong API key; 404 an unknown model or route; 413
// a body over the limit; 422 a well-formed request the server cannot serve (the prompt
// and max_tokens exceed the context, a kv_policy the spec grammar rejects or that names a
// masks file the server did not load, a predicted KV peak above the whole budget); 429
// the queue is full (with Retry-After); 503 the server is draining, or the device ran out
// of memory for the request's KV cache (with Retry-After), or the device is unusable after
// a fault (until a restart; no Retry-After); 500 a failure inside the engine or on the
// device.
type apiError struct {
	Status     int    `json:"-"`
	Message    string `json:"message"`
	Type       string `json:"type"`
	Param      string `json:"param,omitempty"`
	Code       string `json:"code,omitempty"`
	RetryAfter int    `json:"-"` // seconds, for 429
}

func (e *apiError) Error() string { return e.Message }

func errorType(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "authentication_error"
	case http.StatusNotFound:
		return "not_found_error"
	case http.StatusTooManyRequests:
		return "rate_limit_error"
	case http.StatusServiceUnavailable, http.StatusInternalServerError:
		return "server_error"
	}
	return "invalid_request_error"
}

func newError(status int, param, code, format string, args ...any) *apiError {
	return &apiError{Status: status, Message: fmt.Sprintf(format, args...), Type: errorType(status), Param: param, Code: code}
}

func badRequest(param, format string, args ...any) *apiError {
	return newError(http.StatusBadRequest, param, "invalid_value", format, args...)
}

func unprocessable(param, code, format string, args ...any) *apiError {
	return newError(http.StatusUnprocessableEntity, param, code, format, args...)
}

// errorBody is the JSON an error is sent as, in a response or an SSE event.
func errorBody(e *apiError) []byte {
	b, _ := json.Marshal(struct {
		Error *apiError `json:"error"`
	}{e})
	return b
}

func writeError(w http.ResponseWriter, e *apiError) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if e.Status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="kvfoot"`)
	}
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	w.WriteHeader(e.Status)
	w.Write(append(errorBody(e), '\n'))
}
