package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// modelFolder makes a tokenizer folder: the small byte tokenizer and the given
// files beside it.
func modelFolder(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	tj, err := os.ReadFile(filepath.Join("..", "eval", "testdata", "bytes_tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	files["tokenizer.json"] = string(tj)
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func configWith(template string) string {
	b, _ := json.Marshal(map[string]string{"chat_template": template})
	return string(b)
}

// A model folder's chat template cannot crash or exhaust kvfoot: each of these
// would end the process (a fatal stack overflow, or memory without bound) if the
// render were not limited; here each is an error naming the limit.
func TestHostileChatTemplates(t *testing.T) {
	for name, c := range map[string]struct{ template, want string }{
		"recursion":        {`{% macro f(x) %}{{ f(x) }}{% endmacro %}{{ f(messages) }}`, "calls nested more than"},
		"self-containment": {`{% set l = [] %}{% set _ = l.append(l) %}{{ l }}`, "nested more than"},
		"huge loop":        {`{% for i in range(100000000) %}x{% endfor %}`, "range of more than"},
		"nested loops":     {`{% for i in range(1000000) %}{% for j in range(1000000) %}{{ i }}{% endfor %}{% endfor %}`, "template stopped"},
		"growth":           {`{% set ns = namespace(s=messages[0].content) %}{% for i in range(80) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}`, "over 16777216 bytes"},
	} {
		t.Run(name, func(t *testing.T) {
			tok, err := Load(modelFolder(t, map[string]string{"tokenizer_config.json": configWith(c.template)}))
			if err != nil {
				t.Fatal(err)
			}
			_, err = tok.ApplyChatTemplate([]Message{{"user", "hello"}}, true)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "chat template: ") {
				t.Errorf("error %v, want a chat template error containing %q", err, c.want)
			}
		})
	}
}

// chat_template.jinja beside tokenizer_config.json is read, and wins over the
// config's chat_template, as transformers does.
func TestChatTemplateFile(t *testing.T) {
	msgs := []Message{{"user", "hi"}}
	for name, c := range map[string]struct {
		files map[string]string
		want  string
	}{
		"jinja file alone": {map[string]string{"chat_template.jinja": "F{{ messages[0].content }}"}, "Fhi"},
		"config alone":     {map[string]string{"tokenizer_config.json": configWith("C{{ messages[0].content }}")}, "Chi"},
		"both":             {map[string]string{"chat_template.jinja": "F{{ messages[0].content }}", "tokenizer_config.json": configWith("C{{ messages[0].content }}")}, "Fhi"},
	} {
		tok, err := Load(modelFolder(t, c.files))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got, err := tok.ApplyChatTemplate(msgs, false); err != nil || got != c.want {
			t.Errorf("%s: %q, %v; want %q", name, got, err, c.want)
		}
	}
	big := strings.Repeat("x", MaxChatTemplateBytes+1)
	if _, err := Load(modelFolder(t, map[string]string{"chat_template.jinja": big})); err == nil || !strings.Contains(err.Error(), "chat_template.jinja") {
		t.Errorf("a chat_template.jinja over %d bytes: %v", MaxChatTemplateBytes, err)
	}
	tok, err := Load(modelFolder(t, map[string]string{"tokenizer_config.json": configWith(big)}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tok.ApplyChatTemplate(msgs, false); err == nil || !strings.Contains(err.Error(), "more than the 1048576 a template may have") {
		t.Errorf("a config's chat_template over %d bytes: %v", MaxChatTemplateBytes, err)
	}
}

// A tokenizer.json past MaxTokenizerBytes is refused before it is read (the file
// here is sparse: it takes no disk, and reading it whole would take 512 MiB).
func TestTokenizerSizeBound(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "tokenizer.json")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(MaxTokenizerBytes + 1); err != nil {
		t.Skip("no sparse files here:", err)
	}
	f.Close()
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "more than the 536870912 this file may have") {
		t.Errorf("a tokenizer.json of %d bytes: %v", MaxTokenizerBytes+1, err)
	}
}
