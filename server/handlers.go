package server

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	mrand "math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/kvfoot/kvfoot/kv"
	"github.com/kvfoot/kvfoot/model"
	"github.com/kvfoot/kvfoot/tokenizer"
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, newError(http.StatusInternalServerError, "", "encode", "encoding the response: %v", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func newID(prefix string) string {
	var b [12]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// gen is a validated generation request, common to both endpoints.
type gen struct {
	prompt       []int
	maxTokens    int
	maxSet       bool
	sampling     model.Sampling
	stops        []string
	stream       bool
	includeUsage bool
	logprobs     bool
	top          int
	policy       string
	ignoreEOS    bool
	chat         bool
	arrived      time.Time
}

// common validates the fields both endpoints share.
func (s *Server) common(p *sampleParams, g *gen) *apiError {
	switch {
	case p.Model == "":
		return badRequest("model", "model is required (this server serves %q)", s.cfg.ModelName)
	case p.Model != s.cfg.ModelName:
		return s.noModel(p.Model)
	case p.N != nil && *p.N != 1:
		return badRequest("n", "n=%d: kvfoot generates one choice per request (n = 1)", *p.N)
	case p.PresencePenalty != nil && *p.PresencePenalty != 0:
		return badRequest("presence_penalty", "presence_penalty is not supported (want 0 or absent)")
	case p.FrequencyPenalty != nil && *p.FrequencyPenalty != 0:
		return badRequest("frequency_penalty", "frequency_penalty is not supported (want 0 or absent)")
	case len(p.LogitBias) > 0:
		return badRequest("logit_bias", "logit_bias is not supported")
	case p.StreamOptions != nil && !p.Stream:
		return badRequest("stream_options", "stream_options is only allowed with stream: true")
	}
	g.stream = p.Stream
	g.includeUsage = p.StreamOptions != nil && p.StreamOptions.IncludeUsage
	g.ignoreEOS = p.IgnoreEOS
	g.sampling = model.Sampling{Temperature: 1, TopP: 1}
	if t := p.Temperature; t != nil {
		if !(*t >= 0 && *t <= 2) {
			return badRequest("temperature", "temperature %g: want 0…2", *t)
		}
		g.sampling.Temperature = *t
	}
	if t := p.TopP; t != nil {
		if !(*t >= 0 && *t <= 1) {
			return badRequest("top_p", "top_p %g: want 0…1", *t)
		}
		g.sampling.TopP = *t
		if *t == 0 { // the nucleus of probability 0 is the most likely token
			g.sampling.Temperature = 0
		}
	}
	seed, set, e := parseSeed(p.Seed)
	if e != nil {
		return e
	}
	if !set {
		seed = mrand.Uint64()
	}
	g.sampling.Seed = seed
	if p.MaxTokens != nil {
		g.maxTokens, g.maxSet = *p.MaxTokens, true
	}
	if g.stops, e = parseStop(p.Stop); e != nil {
		return e
	}
	g.policy = s.cfg.Policy
	if p.KVPolicy != nil && *p.KVPolicy != "" {
		g.policy = *p.KVPolicy
	}
	return nil
}

func (s *Server) completions(w http.ResponseWriter, r *http.Request) {
	var req completionRequest
	g := gen{arrived: time.Now()}
	e := s.parse(w, r, &req, func() *apiError {
		if e := s.common(&req.sampleParams, &g); e != nil {
			return e
		}
		switch {
		case req.Echo:
			return badRequest("echo", "echo is not supported")
		case req.BestOf != nil && *req.BestOf != 1:
			return badRequest("best_of", "best_of=%d: kvfoot generates one choice per request", *req.BestOf)
		case req.Suffix != nil && *req.Suffix != "":
			return badRequest("suffix", "suffix is not supported")
		case req.Logprobs != nil && (*req.Logprobs < 0 || *req.Logprobs > 5):
			return badRequest("logprobs", "logprobs=%d: want 0…5", *req.Logprobs)
		}
		if req.Logprobs != nil {
			g.logprobs, g.top = true, *req.Logprobs
		}
		if !g.maxSet {
			g.maxTokens = 16 // OpenAI's default for completions
		}
		text, ids, e := parsePrompt(req.Prompt)
		if e != nil {
			return e
		}
		if ids == nil {
			if req.AddSpecialTokens == nil || *req.AddSpecialTokens {
				ids = s.tok.EncodeWithSpecial(text)
			} else {
				ids = s.tok.Encode(text)
			}
		}
		g.prompt = ids
		return nil
	})
	s.serve(w, r, &g, e)
}

func (s *Server) chat(w http.ResponseWriter, r *http.Request) {
	var req chatRequest
	g := gen{arrived: time.Now(), chat: true}
	e := s.parse(w, r, &req, func() *apiError {
		if e := s.common(&req.sampleParams, &g); e != nil {
			return e
		}
		if req.MaxCompletionTokens != nil {
			g.maxTokens, g.maxSet = *req.MaxCompletionTokens, true
		}
		switch {
		case !isNull(req.Tools) && string(req.Tools) != "[]":
			return badRequest("tools", "tools are not supported")
		case req.ResponseFormat != nil && req.ResponseFormat.Type != "" && req.ResponseFormat.Type != "text":
			return badRequest("response_format", "response_format %q is not supported (want text)", req.ResponseFormat.Type)
		case req.TopLogprobs != nil && !req.Logprobs:
			return badRequest("top_logprobs", "top_logprobs needs logprobs: true")
		case req.TopLogprobs != nil && (*req.TopLogprobs < 0 || *req.TopLogprobs > 20):
			return badRequest("top_logprobs", "top_logprobs=%d: want 0…20", *req.TopLogprobs)
		case len(req.Messages) == 0:
			return badRequest("messages", "messages is required: at least one message")
		}
		g.logprobs = req.Logprobs
		if req.TopLogprobs != nil {
			g.top = *req.TopLogprobs
		}
		msgs := make([]tokenizer.Message, len(req.Messages))
		for i, m := range req.Messages {
			switch m.Role {
			case "system", "user", "assistant", "tool":
			case "developer":
				m.Role = "system"
			default:
				return badRequest("messages["+strconv.Itoa(i)+"].role", "messages[%d].role %q: want system, developer, user, assistant or tool", i, m.Role)
			}
			text, e := messageText(i, m.Content)
			if e != nil {
				return e
			}
			msgs[i] = tokenizer.Message{Role: m.Role, Content: text}
		}
		rendered, err := s.tok.ApplyChatTemplate(msgs, true)
		if err == tokenizer.ErrNoChatTemplate {
			return unprocessable("messages", "no_chat_template", "the model has no chat template (neither chat_template.jinja nor tokenizer_config.json's chat_template); use /v1/completions")
		}
		if err != nil {
			return badRequest("messages", "the chat template rejects these messages: %v", err)
		}
		g.prompt = s.tok.Encode(rendered) // templates write BOS themselves
		return nil
	})
	s.serve(w, r, &g, e)
}

// parse reads and decodes the body into req, then runs check.
func (s *Server) parse(w http.ResponseWriter, r *http.Request, req any, check func() *apiError) *apiError {
	body, e := s.readBody(w, r)
	if e != nil {
		return e
	}
	if e := decodeBody(body, req); e != nil {
		return e
	}
	return check()
}

// serve checks the prompt against the context and the budget, admits the request and
// answers it.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, g *gen, e *apiError) {
	status := http.StatusOK
	defer func() { setStatus(w, status) }()
	fail := func(e *apiError) {
		status = e.Status
		if status != 499 {
			writeError(w, e)
		}
	}
	if e != nil {
		fail(e)
		return
	}
	if u := s.eng.unusable.Load(); u != nil {
		fail(u)
		return
	}
	j, e := s.newJob(r, g)
	if e != nil {
		fail(e)
		return
	}
	if e := s.adm.acquire(r.Context(), j.reserve); e != nil {
		fail(e)
		return
	}
	count(s.met.promptTokens, int64(len(j.prompt)))
	select {
	case s.eng.in <- j:
	case <-s.eng.hung:
		fail(s.eng.unusable.Load())
		return
	case <-s.eng.done:
		s.adm.release(j.reserve)
		fail(newError(http.StatusServiceUnavailable, "", "server_shutdown", "the server is shutting down"))
		return
	}
	if g.stream {
		status = s.streamResponse(w, r, j, g)
		return
	}
	status = s.wholeResponse(w, r, j, g)
}

// newJob checks lengths and the policy and predicts the request's KV peak; the engine
// builds its cache when it starts. A panic while checking the policy (building its
// selector) or predicting fails this request alone.
func (s *Server) newJob(r *http.Request, g *gen) (_ *job, e *apiError) {
	defer func() {
		if r := recover(); r != nil {
			logPanic(g.policy, r)
			e = panicError(g.policy, r)
		}
	}()
	p := len(g.prompt)
	vocab := s.m.Config.Vocab
	for i, id := range g.prompt {
		if id < 0 || id >= vocab {
			return nil, badRequest("prompt", "prompt token %d is id %d, outside the vocabulary [0, %d)", i, id, vocab)
		}
	}
	room := s.cfg.Context - p
	switch {
	case p == 0:
		return nil, badRequest("prompt", "the prompt is empty (0 tokens)")
	case room < 1:
		return nil, unprocessable("prompt", "context_length_exceeded", "the prompt is %d tokens; the model's context is %d tokens, with room for at least one generated token", p, s.cfg.Context)
	}
	param := "max_tokens"
	if g.chat {
		param = "max_completion_tokens"
	}
	if !g.maxSet && !g.chat {
		g.maxTokens = min(g.maxTokens, room)
	}
	if !g.maxSet && g.chat {
		g.maxTokens = min(s.cfg.MaxTokens, room)
	}
	switch {
	case g.maxTokens < 1:
		return nil, badRequest(param, "%s=%d: want ≥ 1", param, g.maxTokens)
	case g.maxTokens > s.cfg.MaxTokens:
		return nil, badRequest(param, "%s=%d: this server generates at most %d tokens per request", param, g.maxTokens, s.cfg.MaxTokens)
	case g.maxTokens > room:
		return nil, unprocessable(param, "context_length_exceeded",
			"the prompt (%d tokens) plus %s=%d exceeds the model's context of %d tokens", p, param, g.maxTokens, s.cfg.Context)
	}
	facts, e := s.policy(g.policy)
	if e != nil {
		return nil, e
	}
	// the patch rows of the last non-final chunk sit right after it
	if patch := min(facts.PatchLen, p); p > s.cfg.Chunk {
		if end := (p-1)/s.cfg.Chunk*s.cfg.Chunk + patch; end > s.cfg.Context {
			return nil, unprocessable("kv_policy", "context_length_exceeded",
				"kv_policy %q appends %d patch tokens to pre-fill chunks, which reach position %d past the model's context of %d tokens",
				g.policy, patch, end-1, s.cfg.Context)
		}
	}
	// in the bytes the device stores, which are what the cache's Bytes counts
	reserve, err := s.cfg.Device.storedFacts(facts).PeakBytes(kv.Workload{Prompt: p, MaxTokens: g.maxTokens, Chunk: s.cfg.Chunk})
	if err != nil {
		return nil, unprocessable("kv_policy", "invalid_kv_policy", "%v", err)
	}
	if reserve > s.cfg.KVBudget {
		return nil, unprocessable("kv_policy", "kv_budget_exceeded",
			"under kv_policy %q this request's KV cache may reach %d bytes, more than the server's whole KV budget of %d bytes; "+
				"shorten the prompt or max_tokens, or choose a policy that evicts", g.policy, reserve, s.cfg.KVBudget)
	}
	sm, err := model.NewSampler(g.sampling, vocab)
	if err != nil {
		return nil, badRequest("temperature", "%v", err)
	}
	j := &job{
		ctx: r.Context(), arrived: g.arrived, prompt: g.prompt, max: g.maxTokens, stops: g.stops,
		sampler: sm, logprobs: g.logprobs, top: g.top, policy: g.policy, reserve: reserve,
	}
	j.meter, j.obs = s.newMeter()
	j.out.notify = make(chan struct{}, 1)
	if !g.ignoreEOS {
		j.stopIDs = s.eos
		if g.chat && s.turnEnd >= 0 {
			j.stopIDs = append(j.stopIDs[:len(j.stopIDs):len(j.stopIDs)], s.turnEnd)
		}
	}
	return j, nil
}

// wait returns the next events of j, or nil when the client went away; once the device
// hangs, j's last event is the device's error.
func (s *Server) wait(r *http.Request, j *job, buf []event) []event {
	for {
		if evs := j.out.take(buf[:0]); len(evs) > 0 {
			return evs
		}
		select {
		case <-j.out.notify:
		case <-s.eng.hung:
			return append(buf[:0], event{err: s.eng.unusable.Load()})
		case <-r.Context().Done():
			return nil
		}
	}
}

func (s *Server) wholeResponse(w http.ResponseWriter, r *http.Request, j *job, g *gen) int {
	var text []byte
	var lps []tokenLogprob
	var buf []event
	for {
		evs := s.wait(r, j, buf)
		if evs == nil {
			return 499
		}
		for _, ev := range evs {
			if ev.err != nil {
				writeError(w, ev.err)
				return ev.err.Status
			}
			text = append(text, ev.text...)
			lps = append(lps, ev.logprobs...)
			if !ev.last() {
				continue
			}
			finish := ev.finish
			id, now := newID("cmpl-"), time.Now().Unix()
			if g.chat {
				content := string(text)
				ch := chatChoice{Message: &chatOut{Role: "assistant", Content: &content}, FinishReason: &finish}
				if g.logprobs {
					ch.Logprobs = &chatLogprobs{Content: lps}
				}
				writeJSON(w, http.StatusOK, chatResponse{ID: "chat" + id, Object: "chat.completion", Created: now,
					Model: s.cfg.ModelName, Choices: []chatChoice{ch}, Usage: ev.usage})
				return http.StatusOK
			}
			ch := completionChoice{Text: string(text), FinishReason: &finish}
			if g.logprobs {
				ch.Logprobs = legacyLogprobs(lps, 0)
			}
			writeJSON(w, http.StatusOK, completionResponse{ID: id, Object: "text_completion", Created: now,
				Model: s.cfg.ModelName, Choices: []completionChoice{ch}, Usage: ev.usage})
			return http.StatusOK
		}
		buf = evs
	}
}

// legacyLogprobs converts logprobs to the completions shape; offset is the text
// offset of the first token.
func legacyLogprobs(lps []tokenLogprob, offset int) *completionLogprobs {
	out := &completionLogprobs{Tokens: []string{}, TokenLogprobs: []float64{}, TopLogprobs: []map[string]float64{}, TextOffset: []int{}}
	for _, lp := range lps {
		out.Tokens = append(out.Tokens, lp.Token)
		out.TokenLogprobs = append(out.TokenLogprobs, lp.Logprob)
		top := map[string]float64{}
		for _, t := range lp.TopLogprobs {
			top[t.Token] = t.Logprob
		}
		out.TopLogprobs = append(out.TopLogprobs, top)
		out.TextOffset = append(out.TextOffset, offset)
		offset += len(lp.Token)
	}
	return out
}

// streamResponse sends j's events as server-sent events: one chunk per event, the
// finish reason, the usage chunk when asked for, then data: [DONE]. The headers wait for
// the first event, so that a request that fails before its first token (the device out of
// memory for its pre-fill, a policy the device turns down when it first runs) is answered
// with its status rather than a 200 and an error event.
func (s *Server) streamResponse(w http.ResponseWriter, r *http.Request, j *job, g *gen) int {
	evs := s.wait(r, j, nil)
	if evs == nil {
		return 499
	}
	if e := evs[0].err; e != nil {
		writeError(w, e)
		return e.Status
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	id, created := newID("cmpl-"), time.Now().Unix()
	if g.chat {
		id = "chat" + id
	}
	send := func(v any) bool {
		b, err := json.Marshal(v)
		if err != nil {
			return false
		}
		if _, err := w.Write(append(append([]byte("data: "), b...), '\n', '\n')); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	offset := 0 // of the next token, in the completion's text (legacy logprobs)
	chunk := func(text string, lps []tokenLogprob, finish *string) any {
		if g.chat {
			ch := chatChoice{Delta: &chatOut{}, FinishReason: finish}
			if text != "" || finish == nil {
				ch.Delta.Content = &text
			}
			if g.logprobs && len(lps) > 0 {
				ch.Logprobs = &chatLogprobs{Content: lps}
			}
			return chatResponse{ID: id, Object: "chat.completion.chunk", Created: created, Model: s.cfg.ModelName, Choices: []chatChoice{ch}}
		}
		ch := completionChoice{Text: text, FinishReason: finish}
		if g.logprobs && len(lps) > 0 {
			ch.Logprobs = legacyLogprobs(lps, offset)
			for _, lp := range lps {
				offset += len(lp.Token)
			}
		}
		return completionResponse{ID: id, Object: "text_completion", Created: created, Model: s.cfg.ModelName, Choices: []completionChoice{ch}}
	}
	if g.chat {
		empty := ""
		if !send(chatResponse{ID: id, Object: "chat.completion.chunk", Created: created, Model: s.cfg.ModelName,
			Choices: []chatChoice{{Delta: &chatOut{Role: "assistant", Content: &empty}}}}) {
			return 499
		}
	}
	for {
		for _, ev := range evs {
			if ev.err != nil {
				w.Write(append(append([]byte("data: "), errorBody(ev.err)...), '\n', '\n'))
				w.Write([]byte("data: [DONE]\n\n"))
				rc.Flush()
				return ev.err.Status
			}
			if ev.text != "" || len(ev.logprobs) > 0 {
				if !send(chunk(ev.text, ev.logprobs, nil)) {
					return 499
				}
			}
			if !ev.last() {
				continue
			}
			finish := ev.finish
			if !send(chunk("", nil, &finish)) {
				return 499
			}
			if g.includeUsage {
				var u any
				if g.chat {
					u = chatResponse{ID: id, Object: "chat.completion.chunk", Created: created, Model: s.cfg.ModelName, Choices: []chatChoice{}, Usage: ev.usage}
				} else {
					u = completionResponse{ID: id, Object: "text_completion", Created: created, Model: s.cfg.ModelName, Choices: []completionChoice{}, Usage: ev.usage}
				}
				if !send(u) {
					return 499
				}
			}
			w.Write([]byte("data: [DONE]\n\n"))
			rc.Flush()
			return http.StatusOK
		}
		if evs = s.wait(r, j, evs); evs == nil {
			return 499
		}
	}
}
