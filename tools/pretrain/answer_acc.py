"""Teacher-forced answer accuracy of a model on training documents, on the CPU (Python
standard library and kvfoot only): what pretrain.py's log reports, for any model, task,
length and haystack, without a GPU.

    kvfoot tasks dump --tasks records_tsv --lengths 3584 --count 4 --seed 7 --out docs.jsonl
    python3 tools/pretrain/answer_acc.py KVFOOT MODEL docs.jsonl

Each document is read as pretrain.py reads it (BOS first) by `kvfoot logits`; for each it
prints the argmax accuracy over its answer tokens and over the tokens that begin an answer
line (the first token of each answer, and of each TSV row: the tokens that pick what comes
next, where the rest of a line is mostly copied), with the first misses. A document longer
than the model's context less BOS is cut to fit, its answers with it.
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
from array import array


def logits(kvfoot, model, ids, path):
    """The [len(ids), vocab] float32 logits of ids, as a flat array, and vocab."""
    r = subprocess.run([kvfoot, "logits", "--model", model, "--ids", ",".join(map(str, ids)), "--out", path, "--force"],
                       capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"kvfoot logits: {r.stderr.strip()}")
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        e = json.loads(f.read(n))["logits"]
        lo, hi = e["data_offsets"]
        f.seek(8 + n + lo)
        a = array("f")
        a.frombytes(f.read(hi - lo))
    if sys.byteorder != "little":
        a.byteswap()
    return a, e["shape"][1]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("kvfoot")
    p.add_argument("model", help="model folder with tokenizer.json (the built-in model: models/kvfoot-small)")
    p.add_argument("docs", help="JSONL of kvfoot tasks dump (ids, answer_spans)")
    p.add_argument("--context", type=int, default=4096, help="the model's context in tokens")
    p.add_argument("--misses", type=int, default=4, help="line-start misses shown per document")
    a = p.parse_args()
    tok = json.load(open(os.path.join(a.model, "tokenizer.json")))
    inv = {v: k for k, v in tok["model"]["vocab"].items()}
    inv.update({t["id"]: t["content"] for t in tok.get("added_tokens", [])})
    bos = next((t["id"] for t in tok.get("added_tokens", []) if t["content"] == "<|begin_of_text|>"), None)
    newline = {i for i, s in inv.items() if s.endswith("Ċ")}  # tokens that end a line (byte-level "\n")
    tot = [0, 0, 0, 0]  # answer tokens right, answer tokens, line starts right, line starts
    with tempfile.TemporaryDirectory() as tmp:
        for n, line in enumerate(open(a.docs)):
            d = json.loads(line)
            pre = [bos] if bos is not None else []
            ids = pre + d["ids"][:a.context - len(pre)]
            lg, vocab = logits(a.kvfoot, a.model, ids, os.path.join(tmp, "l.safetensors"))
            right = total = lright = lines = 0
            misses = []
            for s, e in d["answer_spans"]:
                s, e = s + len(pre), min(e + len(pre), len(ids))
                for t in range(s, e):  # the logits at t-1 predict ids[t]
                    row = lg[(t - 1) * vocab:t * vocab]
                    am = max(range(vocab), key=row.__getitem__)
                    ok = am == ids[t]
                    right, total = right + ok, total + 1
                    if t == s or ids[t - 1] in newline:
                        lright, lines = lright + ok, lines + 1
                        if not ok and len(misses) < a.misses:
                            misses.append(f"{inv.get(am, am)!r} for {inv.get(ids[t], ids[t])!r}")
            tot = [tot[0] + right, tot[1] + total, tot[2] + lright, tot[3] + lines]
            cut = " (cut to fit)" if len(d["ids"]) + len(pre) > a.context else ""
            print(f"{d['task']} {d['length']} #{n}{cut}: answer tokens {right}/{total}, line starts {lright}/{lines}"
                  + (f"; misses: {', '.join(misses)}" if misses else ""), flush=True)
    if tot[1]:
        print(f"all: answer tokens {tot[0] / tot[1]:.3f}, line starts {tot[2] / max(1, tot[3]):.3f}")


if __name__ == "__main__":
    main()
