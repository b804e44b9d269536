package tokenizer

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type chatReference struct {
	Messages            []Message `json:"messages"`
	AddGenerationPrompt bool      `json:"add_generation_prompt"`
	Text                *string   `json:"text"`
	Error               *string   `json:"error"`
}

// TestChatTemplates renders the conversations of testdata/chat/chat_*.jsonl,
// made by transformers' apply_chat_template (tools/oracle/chat_reference.py),
// and wants the same text, or an error where the template raised one.
func TestChatTemplates(t *testing.T) {
	chatDir := filepath.Join("..", "testdata", "chat")
	cases := []struct {
		family   string
		template string // file under testdata/chat; "" for tokenizer_config.json's
		tok      string // tokenizer folder for BOS/EOS
	}{
		{"llama3_1", "", "llama3_1"},
		{"qwen3", "", "qwen3"},
		{"llama2", "llama2.jinja", "llama2"},
		{"mistral", "mistral.jinja", "llama2"},
	}
	for _, c := range cases {
		t.Run(c.family, func(t *testing.T) {
			refPath := filepath.Join(chatDir, "chat_"+c.family+".jsonl")
			if _, err := os.Stat(refPath); os.IsNotExist(err) && c.template != "" {
				t.Skipf("%s not made yet (tools/oracle/chat_reference.py --template)", refPath)
			}
			tok := family(t, c.tok)
			render := tok.ApplyChatTemplate
			if c.template != "" {
				src, err := os.ReadFile(filepath.Join(chatDir, c.template))
				if err != nil {
					t.Fatal(err)
				}
				ct, err := NewChatTemplate(string(src), tok.bosName, tok.eosName)
				if err != nil {
					t.Fatal(err)
				}
				render = ct.Render
			}
			f, err := os.Open(refPath)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			sc := bufio.NewScanner(f)
			n := 0
			for sc.Scan() {
				var r chatReference
				if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
					t.Fatal(err)
				}
				n++
				got, err := render(r.Messages, r.AddGenerationPrompt)
				switch {
				case r.Error != nil:
					if err == nil {
						t.Errorf("%v gen=%v: rendered %q, transformers raised %q", r.Messages, r.AddGenerationPrompt, got, *r.Error)
					} else if !strings.Contains(err.Error(), *r.Error) {
						t.Errorf("%v: error %q does not carry transformers' %q", r.Messages, err, *r.Error)
					}
				case err != nil:
					t.Errorf("%v gen=%v: %v", r.Messages, r.AddGenerationPrompt, err)
				case got != *r.Text:
					t.Errorf("%v gen=%v:\n got %q\nwant %q", r.Messages, r.AddGenerationPrompt, got, *r.Text)
				}
			}
			if n == 0 {
				t.Fatalf("%s: no references", refPath)
			}
		})
	}
}

func TestApplyChatTemplateWithout(t *testing.T) {
	tok := family(t, "llama2")
	if _, err := tok.ApplyChatTemplate([]Message{{"user", "hi"}}, true); err != ErrNoChatTemplate {
		t.Fatalf("err = %v, want ErrNoChatTemplate", err)
	}
}
