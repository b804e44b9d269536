package server

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kvfoot/kvfoot/footprint"
	"github.com/kvfoot/kvfoot/kv"
	"github.com/kvfoot/kvfoot/model"
	"github.com/kvfoot/kvfoot/tokenizer"
)

// registrySpecs is every registration's example and every composition the grammar
// allows, from kv.Registry alone (a policy registered later is covered too): each
// token selector, with gqa=expand and gqa=mean where it has a gqa key, alone and
// under each head role, each of those with each storage; and each head role alone.
// Compositions kv refuses are kept: the server must refuse them with 422.
func registrySpecs() []string {
	var sel, role, storage []string
	for _, r := range kv.Registry() {
		switch r.Kind {
		case kv.Selector:
			for _, ex := range []string{r.Example, small(r)} {
				sel = append(sel, ex)
				for _, p := range r.Params {
					if p.Type == kv.Choice {
						for _, c := range p.Choices {
							sel = append(sel, withKey(ex, p.Key, c))
						}
					}
				}
			}
		case kv.Role:
			role = append(role, r.Example, small(r))
		case kv.Stored:
			storage = append(storage, r.Example)
		}
	}
	var out []string
	for _, s := range sel {
		heads := []string{s}
		for _, r := range role {
			heads = append(heads, r+"+"+s)
		}
		for _, h := range heads {
			out = append(out, h)
			for _, st := range storage {
				out = append(out, h+"+"+st)
			}
		}
	}
	out = append(out, role...)
	slices.Sort(out)
	return slices.Compact(out)
}

// small is r's example with every integer key it sets brought to 4 (within the key's
// range): the examples' sizes are for real models and keep every entry of a short
// prompt, their small variants evict.
func small(r kv.Registration) string {
	ex := r.Example
	for _, p := range r.Params {
		if p.Type == kv.Int && strings.Contains(ex, p.Key+"=") {
			ex = withKey(ex, p.Key, fmt.Sprint(int(min(max(4, p.Min), p.Max))))
		}
	}
	return ex
}

// withKey sets key=value in a one-part spec, replacing the key if the spec has it.
func withKey(spec, key, value string) string {
	name, args, _ := strings.Cut(spec, ":")
	var kept []string
	for _, a := range strings.Split(args, ",") {
		if k, _, _ := strings.Cut(a, "="); a != "" && k != key {
			kept = append(kept, a)
		}
	}
	return name + ":" + strings.Join(append(kept, key+"="+value), ",")
}

// registryMasks writes the masks file every File key of an example names (by base
// name), with one row per layer and one column per KV head, half of the heads
// streaming by the 0.5 rule.
func registryMasks(t *testing.T, c model.Config) (dir string, files []string) {
	dir = t.TempDir()
	var tsv strings.Builder
	for l := range c.Layers {
		for g := range c.KVHeads {
			fmt.Fprintf(&tsv, "%g\t", float64((l+g)%2)*0.9)
		}
		tsv.WriteString("\n")
	}
	for _, r := range kv.Registry() {
		for _, p := range r.Params {
			if p.Type != kv.File {
				continue
			}
			for _, a := range strings.Split(strings.SplitN(r.Example, ":", 2)[1], ",") {
				if k, v, _ := strings.Cut(a, "="); k == p.Key && !slices.Contains(files, filepath.Join(dir, v)) {
					f := filepath.Join(dir, v)
					if err := os.WriteFile(f, []byte(tsv.String()), 0o644); err != nil {
						t.Fatal(err)
					}
					files = append(files, f)
				}
			}
		}
	}
	return dir, files
}

// TestRegistryOverHTTP sends every registered policy and composition through both
// generation endpoints, streamed and not, on an MHA and a GQA model, and checks each
// response's usage.kv against the same prompt run directly through model.Generate, a
// kv cache of the spec and a footprint.Meter; a spec kv refuses must get 422.
func TestRegistryOverHTTP(t *testing.T) {
	mha := tinyConfig
	mha.KVHeads = mha.Heads
	const chunk, maxTokens = 16, 3
	prompt := strings.Repeat("The quick brown fox jumps over the lazy dog and runs back. ", 3)
	specs := registrySpecs()
	for _, mc := range []struct {
		name string
		cfg  model.Config
	}{{"mha", mha}, {"gqa", tinyConfig}} {
		t.Run(mc.name, func(t *testing.T) {
			m := model.NewRandom(mc.cfg, 11)
			dir, masks := registryMasks(t, mc.cfg)
			h := startModel(t, m, Config{Chunk: chunk, Masks: masks})
			_, tok := fixture(t)
			chatPrompt, err := tok.ApplyChatTemplate([]tokenizer.Message{{Role: "user", Content: prompt}}, true)
			if err != nil {
				t.Fatal(err)
			}
			evicting := 0
			for _, spec := range specs {
				_, refused := kv.New(kv.Shape(m.Shape()), spec, kv.WithDir(dir))
				for _, chat := range []bool{false, true} {
					ids := tok.EncodeWithSpecial(prompt)
					if chat {
						ids = tok.Encode(chatPrompt)
					}
					var want *kvUsage
					if refused == nil {
						want = directKV(t, m, ids, spec, dir, chunk, maxTokens)
					}
					for _, stream := range []bool{false, true} {
						name := fmt.Sprintf("%s chat=%v stream=%v", spec, chat, stream)
						got, status, body := registryRequest(t, h, prompt, spec, chat, stream, maxTokens)
						switch {
						case want == nil && (status != 422 || !strings.Contains(body, "invalid_kv_policy")):
							t.Errorf("%s: kv refuses the spec (%v), the server answers %d %s", name, refused, status, body)
						case want == nil:
						case status != 200 || got == nil:
							t.Errorf("%s: status %d %s", name, status, body)
						case !sameKV(*got, *want):
							t.Errorf("%s: usage.kv %+v, the direct run's %+v", name, *got, *want)
						case got.PeakBytes > got.ReservedBytes:
							t.Errorf("%s: peak bytes %d above the reservation %d", name, got.PeakBytes, got.ReservedBytes)
						case got.EvictedEntries > 0:
							evicting++
						}
					}
				}
			}
			if evicting == 0 {
				t.Errorf("%d responses evicted entries: the prompt is too short to test the policies", evicting)
			}
			if st := h.s.Stats(); st.Running != 0 || st.KVBytesReserved != 0 || st.KVBytesInUse != 0 {
				t.Errorf("after every request: %+v, want nothing running, reserved or held", st)
			}
		})
	}
}

// sameKV compares what the meter and the cache decide; the reservation is the
// prediction's, checked apart.
func sameKV(a, b kvUsage) bool {
	close := func(x, y float64) bool { return math.Abs(x-y) <= 1e-12*max(1, math.Abs(y)) }
	return a.Policy == b.Policy && close(a.Footprint, b.Footprint) && close(a.Peak, b.Peak) && close(a.PeakEntries, b.PeakEntries) &&
		a.PeakBytes == b.PeakBytes && a.EvictedEntries == b.EvictedEntries
}

// directKV runs prompt through model.Generate under spec with its own meter: the
// usage.kv the server must report.
func directKV(t *testing.T, m *model.Model, prompt []int, spec, dir string, chunk, maxTokens int) *kvUsage {
	t.Helper()
	meter := footprint.NewMeter(m.Config.Layers, m.Config.KVHeads)
	cache, err := kv.New(kv.Shape(m.Shape()), spec, kv.WithObserver(meter), kv.WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := model.Generate(m, cache, prompt, model.GenerateOptions{MaxTokens: maxTokens, Chunk: chunk}); err != nil {
		t.Fatalf("%s: %v", spec, err)
	}
	rep := meter.Report(false)
	held := int64(0)
	for l := range m.Config.Layers {
		for g := range cache.Heads() {
			held += int64(cache.Len(l, g))
		}
	}
	stored := int64(cache.Pos()) * int64(m.Config.Layers*cache.Heads())
	return &kvUsage{Policy: spec, Footprint: rep.Footprint, Peak: rep.Peak, PeakEntries: rep.PeakEntries,
		PeakBytes: rep.PeakBytes, EvictedEntries: stored - held}
}

// registryRequest sends one greedy request of maxTokens (ignore_eos) and returns its
// usage.kv, the status and the body.
func registryRequest(t *testing.T, h *harness, prompt, spec string, chat, stream bool, maxTokens int) (*kvUsage, int, string) {
	t.Helper()
	body := map[string]any{"model": "tiny", "kv_policy": spec, "temperature": 0, "ignore_eos": true, "max_tokens": maxTokens}
	path := "/v1/completions"
	if chat {
		path = "/v1/chat/completions"
		body["messages"] = []map[string]string{{"role": "user", "content": prompt}}
	} else {
		body["prompt"] = prompt
	}
	if stream {
		body["stream"] = true
		body["stream_options"] = map[string]bool{"include_usage": true}
	}
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", h.ts.URL+path, strings.NewReader(string(b)))
	req.Header.Set("Authorization", "Bearer "+testKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var u struct {
		Usage *struct {
			KV *kvUsage `json:"kv"`
		} `json:"usage"`
		Error *apiError `json:"error"`
	}
	if !stream || resp.StatusCode != 200 {
		if json.Unmarshal(raw, &u) != nil || u.Usage == nil {
			return nil, resp.StatusCode, string(raw)
		}
		return u.Usage.KV, resp.StatusCode, string(raw)
	}
	var got *kvUsage
	for _, line := range strings.Split(string(raw), "\n") {
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok || data == "[DONE]" {
			continue
		}
		u.Usage, u.Error = nil, nil
		if err := json.Unmarshal([]byte(data), &u); err != nil {
			return nil, 0, string(raw)
		}
		if u.Error != nil {
			return nil, u.Error.Status, string(raw)
		}
		if u.Usage != nil {
			got = u.Usage.KV
		}
	}
	return got, resp.StatusCode, string(raw)
}
