"""Reference chat-template renderings from transformers' apply_chat_template.

    python3 chat_reference.py [--template FILE.jinja] TOKENIZER_DIR FAMILY OUT.jsonl

TOKENIZER_DIR holds tokenizer.json and tokenizer_config.json. With --template, the Jinja
file replaces the config's chat_template (for families whose config has none, such as
testdata/chat/llama2.jinja and mistral.jinja with the llama2 tokenizer folder). Each output line holds the
family, the messages, add_generation_prompt, and either the rendered text or the error
the template raised.
"""
import json, sys
from transformers import AutoTokenizer

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are a terse assistant."},
     {"role": "user", "content": "What is 2+2?"}],
    [{"role": "user", "content": "Name a prime."},
     {"role": "assistant", "content": "7"},
     {"role": "user", "content": "Another one, please."}],
    [{"role": "system", "content": "Answer in French."},
     {"role": "user", "content": "  leading and trailing spaces  "},
     {"role": "assistant", "content": "D'accord.\n\nVoilà."},
     {"role": "user", "content": "Ünïcødé 日本語 🎉\ttab"}],
    [{"role": "user", "content": ""}],
]

args = sys.argv[1:]
template = None
if len(args) >= 2 and args[0] == "--template":
    template = open(args[1], encoding="utf-8").read()
    args = args[2:]
if len(args) != 3:
    print(__doc__)
    sys.exit(2)
tok = AutoTokenizer.from_pretrained(args[0])
with open(args[2], "w") as f:
    for msgs in CONVERSATIONS:
        for gen in (False, True):
            rec = {"family": args[1], "messages": msgs, "add_generation_prompt": gen}
            try:
                rec["text"] = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen,
                                                      chat_template=template)
            except Exception as e:  # templates that reject a conversation raise
                rec["error"] = str(e)
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
