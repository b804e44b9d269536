package server

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/kvfoot/kvfoot/kv"
)

// panicky is a token selector that keeps everything until a decode step reaches
// position at (0: never), where it panics; with new=true its constructor panics.
type panicky struct{ at int }

func (p panicky) Scores(*kv.Forward) kv.ScoreRequest { return kv.ScoreRequest{} }

func (p panicky) Keep(f *kv.Forward) []int {
	if p.at > 0 && !f.Prefill && int(f.Pos[len(f.Pos)-1]) >= p.at {
		panic("panicky: position reached")
	}
	return nil
}

var registerPanicky = sync.OnceValue(func() error {
	return kv.Register(kv.Registration{Name: "panicky", Example: "panicky", Doc: "panics on purpose (tests)",
		Params: []kv.Param{
			{Key: "at", Type: kv.Int, Default: "0", Min: 0, Max: 1 << 30, Doc: "the decode position it panics at"},
			{Key: "new", Type: kv.Bool, Default: "false", Doc: "panic in the constructor"},
		},
		NewSelector: func(a kv.Args) (kv.Policy, error) {
			if a.Bool("new") {
				panic("panicky: constructor")
			}
			return panicky{at: a.Int("at")}, nil
		}})
})

// TestEnginePanic: a policy that panics mid-decode, batched with two other requests,
// fails its own request with a 500 that names its spec; the other two finish with
// exactly the text and usage.kv of a run on their own (their caches, which the
// panicking forward may have half fed, are built again), every reservation is
// returned, and the server serves the next request. A constructor that panics fails
// its request with a 500 too.
func TestEnginePanic(t *testing.T) {
	if err := registerPanicky(); err != nil {
		t.Fatal(err)
	}
	h := start(t, Config{MaxConcurrent: 4})
	_, tok := fixture(t)
	const n = 12
	prompt := tok.EncodeWithSpecial(prose)
	bad := "panicky:at=" + strconv.Itoa(len(prompt)+4)
	type answer struct {
		status int
		body   string
	}
	post := func(spec string) answer {
		b, _ := json.Marshal(map[string]any{"model": "tiny", "prompt": prose, "max_tokens": n, "temperature": 0,
			"ignore_eos": true, "kv_policy": spec})
		req, _ := http.NewRequest("POST", h.ts.URL+"/v1/completions", strings.NewReader(string(b)))
		req.Header.Set("Authorization", "Bearer "+testKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return answer{}
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return answer{resp.StatusCode, string(raw)}
	}
	specs := []string{"full", bad, "streaming:sink=2,window=8"}
	answers := make([]answer, len(specs))
	resume := h.pause() // the three start together and decode in one batch
	var wg sync.WaitGroup
	for i, spec := range specs {
		wg.Go(func() { answers[i] = post(spec) })
	}
	waitFor(t, func() bool { return h.s.Stats().Running == 3 })
	resume()
	wg.Wait()
	if a := answers[1]; a.status != 500 || !strings.Contains(a.body, bad) || !strings.Contains(a.body, "engine_panic") {
		t.Errorf("the panicking request: %d %s; want 500 engine_panic naming %q", a.status, a.body, bad)
	}
	for _, i := range []int{0, 2} {
		ids, rep := reference(t, prompt, specs[i], 32, n, nil)
		var res completionResponse
		if err := json.Unmarshal([]byte(answers[i].body), &res); err != nil || answers[i].status != 200 || len(res.Choices) != 1 {
			t.Errorf("%s beside the panic: %d %s", specs[i], answers[i].status, answers[i].body)
			continue
		}
		k := res.Usage.KV
		if res.Choices[0].Text != tok.DecodeSkipSpecial(ids) || k.Footprint != rep.Footprint || k.Peak != rep.Peak || k.PeakBytes != rep.PeakBytes {
			t.Errorf("%s beside the panic: %q %+v, want %q and the meter's %+v", specs[i], res.Choices[0].Text, *k, tok.DecodeSkipSpecial(ids), rep)
		}
	}
	if st := h.s.Stats(); st.Running != 0 || st.KVBytesReserved != 0 || st.KVBytesInUse != 0 {
		t.Errorf("after the panic: %+v, want nothing running, reserved or held", st)
	}
	if a := post("panicky:new=true"); a.status != 500 || !strings.Contains(a.body, "panicky:new=true") {
		t.Errorf("a panicking constructor: %d %s; want 500 naming the spec", a.status, a.body)
	}
	if a := post("panicky"); a.status != 200 {
		t.Errorf("after the panics: %d %s", a.status, a.body)
	}
	if got := metric(t, h, `kvfoot_requests_total{code="500",endpoint="/v1/completions"}`); got != "2" {
		t.Errorf("500s counted: %s, want 2", got)
	}
}

// TestCountNeverNegative: a count that went backwards is dropped, not handed to the
// counter (which would panic and end the process).
func TestCountNeverNegative(t *testing.T) {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "c", Help: "c"})
	count(c, 3)
	count(c, -2)
	count(c, 0)
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetCounter().GetValue(); got != 3 {
		t.Errorf("counter %g after 3, −2, 0: want 3", got)
	}
}
