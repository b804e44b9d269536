package tokenizer

import (
	"errors"
	"fmt"
	"sync"

	"github.com/kvfoot/kvfoot/internal/jinja"
)

// Message is one turn of a conversation.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// ChatTemplate is a compiled Jinja chat template with the token names that
// transformers' apply_chat_template passes to it.
type ChatTemplate struct {
	tmpl     *jinja.Template
	bos, eos string
}

// NewChatTemplate compiles a Jinja chat template. The engine follows
// transformers' settings (trim_blocks, lstrip_blocks, raise_exception,
// strftime_now, tojson). A template comes from a model folder, which may be
// hostile: it has at most MaxChatTemplateBytes, and renders within limits on
// steps, call depth, output, memory and time (internal/jinja's DefaultLimits).
func NewChatTemplate(source, bosToken, eosToken string) (*ChatTemplate, error) {
	if len(source) > MaxChatTemplateBytes {
		return nil, fmt.Errorf("chat template: %d bytes, more than the %d a template may have", len(source), MaxChatTemplateBytes)
	}
	tm, err := jinja.Compile(source)
	if err != nil {
		return nil, fmt.Errorf("chat template: %w", err)
	}
	return &ChatTemplate{tmpl: tm, bos: bosToken, eos: eosToken}, nil
}

// Render renders a conversation, with the assistant header appended when
// addGenerationPrompt is set. A template that rejects the conversation (through
// raise_exception) returns its message as an error.
func (c *ChatTemplate) Render(messages []Message, addGenerationPrompt bool) (string, error) {
	msgs := make([]any, len(messages))
	for i, m := range messages {
		msgs[i] = map[string]any{"role": m.Role, "content": m.Content}
	}
	out, err := c.tmpl.Render(map[string]any{
		"messages":              msgs,
		"add_generation_prompt": addGenerationPrompt,
		"bos_token":             c.bos,
		"eos_token":             c.eos,
	})
	if err != nil {
		return "", fmt.Errorf("chat template: %w", err)
	}
	return out, nil
}

// ErrNoChatTemplate is returned by ApplyChatTemplate when the tokenizer's folder
// had neither chat_template.jinja nor a chat_template in tokenizer_config.json.
var ErrNoChatTemplate = errors.New("tokenizer has no chat template (chat_template.jinja, or chat_template in tokenizer_config.json)")

// chatCompiled holds the tokenizer's template, compiled on first use.
type chatCompiled struct {
	once sync.Once
	ct   *ChatTemplate
	err  error
}

// ApplyChatTemplate renders messages with the tokenizer's chat template, as
// transformers' apply_chat_template(messages, tokenize=False) does. Encode the
// result with Encode (not EncodeWithSpecial): templates write BOS themselves.
func (t *Tokenizer) ApplyChatTemplate(messages []Message, addGenerationPrompt bool) (string, error) {
	if t.chatTemplate == "" {
		return "", ErrNoChatTemplate
	}
	cc := &t.chat
	cc.once.Do(func() { cc.ct, cc.err = NewChatTemplate(t.chatTemplate, t.bosName, t.eosName) })
	if cc.err != nil {
		return "", cc.err
	}
	return cc.ct.Render(messages, addGenerationPrompt)
}
