"""Check a tokenizer.json written by `kvfoot tokenizer train` with the Hugging Face
tokenizers library: it must load, and encode each text exactly as kvfoot did.

    python3 bpe_check.py TOKENIZER.json TEXTS.jsonl IDS.jsonl [--add-special]

TEXTS.jsonl has one {"text": ...} per line; IDS.jsonl is what
`kvfoot tokenize --tokenizer TOKENIZER.json --input TEXTS.jsonl [--add-special]` printed.
Also checks that decoding kvfoot's ids gives back the text. Prints a summary; exits 1 on
any mismatch. For the committed fixture:

    python3 tools/oracle/bpe_check.py testdata/tokenizers/trained4096/tokenizer.json \\
        testdata/tokenizers/trained4096/check.jsonl testdata/tokenizers/trained4096/check_ids.jsonl
    python3 tools/oracle/bpe_check.py testdata/tokenizers/trained4096/tokenizer.json \\
        testdata/tokenizers/trained4096/check.jsonl testdata/tokenizers/trained4096/check_ids_special.jsonl --add-special
"""
import json, sys
from tokenizers import Tokenizer

args = [a for a in sys.argv[1:] if a != "--add-special"]
add_special = "--add-special" in sys.argv[1:]
if len(args) != 3:
    print(__doc__)
    sys.exit(2)
tok = Tokenizer.from_file(args[0])
texts = [json.loads(l)["text"] for l in open(args[1], encoding="utf-8")]
ids = [json.loads(l)["ids"] for l in open(args[2], encoding="utf-8")]
if len(texts) != len(ids):
    print(f"{len(texts)} texts but {len(ids)} id lines")
    sys.exit(1)
bad = 0
for i, (text, want) in enumerate(zip(texts, ids)):
    got = tok.encode(text, add_special_tokens=add_special).ids
    if got != want:
        bad += 1
        if bad <= 5:
            print(f"line {i + 1}: {text[:60]!r}\n  hf     {got[:20]}\n  kvfoot {want[:20]}")
    # the post-processor adds BOS only; the text's own special tokens must round-trip
    dec = tok.decode(want[1:] if add_special else want, skip_special_tokens=False)
    if dec != text:
        bad += 1
        if bad <= 5:
            print(f"line {i + 1}: decode gives {dec[:60]!r}, text is {text[:60]!r}")
print(f"bpe_check {args[0]}: {len(texts) - bad} of {len(texts)} texts agree (add_special={add_special})")
sys.exit(1 if bad else 0)
