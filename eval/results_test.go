package eval

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// resultsRun runs the small setup (1 method × 2 tasks × 2 lengths × 2 samples) into a
// fresh results file and returns the config, the backend and the file's lines.
func resultsRun(t *testing.T) (Config, *fake, []string) {
	t.Helper()
	cfg, f := setup(t, true)
	cfg.Results = filepath.Join(t.TempDir(), "r.jsonl")
	cfg.Samples = 2
	if _, err := Run(cfg, f); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(cfg.Results)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	lines = lines[:len(lines)-1] // after the last newline
	if len(lines) != 8 || f.runs != 8 {
		t.Fatalf("%d lines, %d runs; want 8 and 8", len(lines), f.runs)
	}
	return cfg, f, lines
}

// refused runs cfg on a results file holding content and wants an error naming every
// one of want, no sample run, and the file byte for byte as it was.
func refused(t *testing.T, cfg Config, f *fake, content string, want ...string) {
	t.Helper()
	if err := os.WriteFile(cfg.Results, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	runs := f.runs
	_, err := Run(cfg, f)
	if err == nil {
		t.Fatalf("accepted; want an error naming %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not name %q", err, w)
		}
	}
	if f.runs != runs {
		t.Errorf("%d samples ran before the refusal", f.runs-runs)
	}
	if got, _ := os.ReadFile(cfg.Results); string(got) != content {
		t.Errorf("the refused file changed:\n%q\nwant\n%q", got, content)
	}
}

func TestResultsRefuseForeignFiles(t *testing.T) {
	cfg, f, lines := resultsRun(t)
	for _, content := range []string{
		"hello",                          // no newline: the old reader truncated this to nothing
		"id,score\n1,2\n",                // a CSV
		`{"model":"x","score":1}` + "\n", // JSON, but not a kvfoot result
		"\n\nnot json\n" + lines[0],      // the first non-blank line decides
	} {
		refused(t, cfg, f, content, cfg.Results, "not a kvfoot results file")
	}
	// a results line of another format version
	refused(t, cfg, f, strings.Replace(lines[0], `"kvfoot_results":1`, `"kvfoot_results":7`, 1),
		"line 1", "format 7")
}

func TestResultsDamagedLines(t *testing.T) {
	cfg, f, lines := resultsRun(t)
	all := strings.Join(lines, "")
	refused(t, cfg, f, lines[0]+"{oops\n"+strings.Join(lines[1:], ""), "line 2 is damaged")
	refused(t, cfg, f, lines[0]+lines[1]+"garbage\n"+lines[2]+"\x00\x00\n", "lines 3, 5 are damaged")
	// a cut line that ends with a newline is not an interrupted write
	refused(t, cfg, f, all+lines[0][:40]+"\n", "line 9 is damaged")
	// two results on one line
	refused(t, cfg, f, strings.TrimSuffix(lines[0], "\n")+lines[1], "line 1 is damaged", "text after")
}

// An interrupted run leaves the beginning of a result as the last line: it is
// reported with its line number and cut off, its sample runs again, and no whole
// result is lost.
func TestResultsTornLastLine(t *testing.T) {
	cfg, f, lines := resultsRun(t)
	torn := strings.Join(lines[:7], "") + lines[7][:len(lines[7])/2]
	os.WriteFile(cfg.Results, []byte(torn), 0o644)
	var warn bytes.Buffer
	cfg.Progress = &warn
	if _, err := Run(cfg, f); err != nil {
		t.Fatal(err)
	}
	if f.runs != 9 {
		t.Errorf("%d runs, want 9 (the torn sample again)", f.runs)
	}
	if !strings.Contains(warn.String(), "line 8 is cut short") {
		t.Errorf("progress %q does not report line 8", warn.String())
	}
	got, _ := os.ReadFile(cfg.Results)
	if string(got) != strings.Join(lines, "") {
		t.Errorf("results after the repair:\n%s\nwant the 8 whole lines", got)
	}
}

// A whole last result without its newline is kept and reused, and the next result
// starts on a line of its own; so after trailing blanks.
func TestResultsLastLineWithoutNewline(t *testing.T) {
	cfg, f, lines := resultsRun(t)
	content := strings.Join(lines, "")
	for _, stored := range []string{strings.TrimSuffix(content, "\n"), content + "\n  "} {
		os.WriteFile(cfg.Results, []byte(stored), 0o644)
		cfg.Samples, f.runs = 3, 0
		if _, err := Run(cfg, f); err != nil {
			t.Fatal(err)
		}
		if f.runs != 4 {
			t.Errorf("%d runs, want 4 (the new samples only)", f.runs)
		}
		got, _ := os.ReadFile(cfg.Results)
		if !strings.HasPrefix(string(got), stored+"\n{") {
			t.Fatalf("results %q do not continue the stored ones on a new line", got)
		}
		f.runs = 0
		if _, err := Run(cfg, f); err != nil || f.runs != 0 {
			t.Errorf("second resume: %v, %d runs; want every sample reused", err, f.runs)
		}
	}
}

// A stored result made with any other setting is refused before anything runs,
// naming the line, the sample and the setting with both values.
func TestResultsSettingMismatch(t *testing.T) {
	cfg, f, lines := resultsRun(t)
	content := strings.Join(lines, "")
	os.WriteFile(cfg.Results, []byte(content), 0o644)
	for _, tc := range []struct {
		name   string
		change func(*Config, *fake)
		want   []string
	}{
		{"chunk", func(_ *Config, f *fake) { f.chunk = 512 }, []string{"line 1", "chunk 0, this run 512"}},
		{"seed", func(c *Config, _ *fake) { c.Seed = 5 }, []string{"seed 4, this run 5"}},
		{"bos", func(c *Config, _ *fake) { c.BOS = 1 }, []string{"bos -1, this run 1"}},
		{"tokenizer", func(c *Config, _ *fake) { c.Tokenizer = "abc" }, []string{"tokenizer_sha256 (not recorded), this run abc"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, g := cfg, *f
			tc.change(&c, &g)
			tc.want = append(tc.want, "full on ruler_mv, length 1024, sample 0")
			refused(t, c, &g, content, tc.want...)
		})
	}
	// The prompt, the generation budget and the instance seed are checked per sample.
	for _, tc := range []struct{ from, to, want string }{
		{`"prompt_sha256":"[0-9a-f]`, `"prompt_sha256":"x`, "another prompt"},
		{`"max_new":[0-9]+`, `"max_new":9`, "generation budget 9"},
		{`"seed":[0-9]+`, `"seed":1`, "instance seed 1"},
	} {
		bad := regexp.MustCompile(tc.from).ReplaceAllString(lines[3], tc.to)
		refused(t, cfg, f, strings.Join(lines[:3], "")+bad+strings.Join(lines[4:], ""), "line 4", tc.want)
	}
	// Other methods, tasks or lengths in the file are no concern of this run.
	cfg.Lengths = []int{1024}
	f.chunk = 0
	var other strings.Builder
	for _, l := range lines {
		if strings.Contains(l, `"length":2048`) {
			l = strings.Replace(l, `"chunk":"0"`, `"chunk":"7"`, 1)
		}
		other.WriteString(l)
	}
	os.WriteFile(cfg.Results, []byte(other.String()), 0o644)
	if _, err := Run(cfg, f); err != nil {
		t.Errorf("results of other lengths: %v", err)
	}
}

// One bad method among several fails before the first sample.
func TestBadMethodFailsFirst(t *testing.T) {
	cfg, f := setup(t, true)
	cfg.Methods = []string{"full", "full", "bogus:x=1"}
	_, err := Run(cfg, f)
	if err == nil || !strings.Contains(err.Error(), `"bogus:x=1"`) || f.runs != 0 {
		t.Errorf("error %v after %d runs; want the bad method named before any run", err, f.runs)
	}
}

// A prompt and its generation budget must fit the context.
func TestBudgetPastContext(t *testing.T) {
	cfg, f := setup(t, true)
	f.ctx = 2048 // the 2048-token prompts leave no room to answer
	_, err := Run(cfg, f)
	if err == nil || !strings.Contains(err.Error(), "length 2048") || !strings.Contains(err.Error(), "context of 2048 tokens") || f.runs != 0 {
		t.Errorf("error %v after %d runs", err, f.runs)
	}
}

// FuzzResultsFile: the reader never panics; a file it refuses is left as it was; a
// file it accepts keeps every byte of its whole results when a result is appended,
// and reads back with one result more.
func FuzzResultsFile(f *testing.F) {
	line, _ := json.Marshal(&Sample{Format: resultsFormat, Method: "full", Task: "json_kv", Length: 8,
		Settings: map[string]string{"chunk": "0"}, Answers: []string{"a"}})
	l := string(line) + "\n"
	for _, s := range []string{"", "\n", l, l + l, l + l[:30], l[:len(l)-1], "x\n" + l, l + "{}\n" + l, "\x00", `{"kvfoot_results":1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "r.jsonl")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := openStore(path, nil)
		if err != nil {
			if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
				t.Fatalf("refused file changed: %v", err)
			}
			return
		}
		n, good := count(s), s.good
		if err := s.add(&Sample{Method: "m", Task: "t", Length: 1}); err != nil {
			t.Fatal(err)
		}
		s.Close()
		got, _ := os.ReadFile(path)
		if !bytes.Equal(got[:good], data[:good]) {
			t.Fatalf("stored results changed:\n%q\nbecame\n%q", data, got)
		}
		s, err = openStore(path, nil)
		if err != nil {
			t.Fatalf("%q: accepted, appended to, then refused: %v", data, err)
		}
		if count(s) != n+1 {
			t.Fatalf("%q: %d results after appending to %d", data, count(s), n)
		}
		s.Close()
	})
}

func count(s *store) int {
	n := 0
	for _, v := range s.byID {
		n += len(v)
	}
	return n
}
