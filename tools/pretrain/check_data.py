"""Check the pre-training data that tools/pretrain/data.sh wrote (Python standard library only).

    python3 check_data.py TOKENIZER DATA_DIR [--decode-docs N]

For every file of DATA_DIR/plan.tsv (train_L_NAME.{bin,mask,docs}):
- the three files agree (one mask byte per token, document offsets from 0, ascending),
  and the file holds the planned number of documents, each exactly L tokens (from
  ceil(L*(1-jitter)) to L with plan.tsv's jitter, as kvfoot tasks dump --jitter draws them);
- every token id is below the tokenizer's vocabulary size; every mask byte is 0 or 1;
- plain text (corpus) has no mask; a task document has exactly one masked run per
  question (the planned query count);
- in the first N documents of each file (default 100), every masked run is an answer:
  decoded, it starts where the task's answer prefix ends (a token may straddle the two)
  and its last token holds the newline that ends the answer, and the text before it is
  no answer of the task.
Exits 1 with one line per problem found, 0 with a summary otherwise.
"""
import argparse
import array
import bisect
import json
import math
import os
import re
import sys

# The last line of an evaluation prompt before the answer, per task (tasks/*.go).
PREFIX = {
    "json_kv": re.compile(r"Corresponding value:$"),
    "ruler_mk_needle": re.compile(r"The special magic number for .+ mentioned in the provided text is$"),
    "ruler_mk_uuid": re.compile(r"The special magic id for .+ mentioned in the provided text is$"),
    "ruler_mv": re.compile(r"The special magic numbers for .+ mentioned in the provided text are$"),
    "ruler_vt": re.compile(r"The variables assigned the value \d+ are:$"),
    "icl_labels": re.compile(r"label:$"),
    "rag": re.compile(r"Answer:$"),
    "rerank": re.compile(r"Ranking:$"),
    "records_tsv": re.compile(r"```tsv\ncode\tname\tqty\n$"),
}
STRADDLE = 8  # bytes of the prefix that the first answer token may hold
CONTEXT = 96  # tokens decoded before an answer: more than any answer prefix takes


def byte_decoder():
    """GPT-2's byte-level alphabet, inverted: vocabulary character -> byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


class Tokenizer:
    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            t = json.load(f)
        dec = byte_decoder()
        self.pieces = {}
        for s, i in t["model"]["vocab"].items():
            self.pieces[i] = bytes(dec[c] for c in s)
        for a in t.get("added_tokens", []):
            self.pieces[a["id"]] = a["content"].encode()
        self.vocab = 1 + max(self.pieces)

    def decode(self, ids):
        return b"".join(self.pieces[i] for i in ids).decode("utf-8", errors="replace")


def out_of_vocab(raw, vocab):
    """Whether a uint16 little-endian buffer holds an id ≥ vocab, at C speed: the high
    bytes below vocab's are all fine, its own needs the low byte checked."""
    hi = raw[1::2]
    if not hi.translate(None, bytes(range(vocab >> 8))):
        return False
    if vocab >= 1 << 16:
        return False
    edge = bytes([vocab >> 8])
    if hi.translate(None, bytes(range(vocab >> 8)) + edge):
        return True
    return any(raw[2 * m.start()] >= vocab & 255 for m in re.finditer(re.escape(edge), hi))


def read(path, code):
    a = array.array(code)
    with open(path, "rb") as f:
        a.frombytes(f.read())
    if sys.byteorder != "little":
        a.byteswap()
    return a


def check_file(tok, d, row, decode_docs, problems):
    base = os.path.join(d, row["file"])
    L, task, ndocs, queries = int(row["length"]), row["task"], int(row["documents"]), int(row["queries"])
    where = row["file"]
    for ext in (".bin", ".mask", ".docs"):
        if not os.path.exists(base + ext):
            problems.append(f"{where}{ext}: missing")
            return 0
    with open(base + ".bin", "rb") as f:
        raw = f.read()
    ids, docs = array.array("H", raw), read(base + ".docs", "q")
    if sys.byteorder != "little":
        ids.byteswap()
    with open(base + ".mask", "rb") as f:
        mask = f.read()
    if len(mask) != len(ids):
        problems.append(f"{where}: .bin has {len(ids)} tokens, .mask {len(mask)}")
        return 0
    if len(docs) != ndocs:
        problems.append(f"{where}: {len(docs)} documents, plan.tsv says {ndocs}")
    shortest = math.ceil(L * (1 - float(row.get("jitter") or 0)))
    ends = list(docs[1:]) + [len(ids)]
    bad = [i for i in range(len(docs)) if not shortest <= ends[i] - docs[i] <= L] if docs and docs[0] == 0 else [0]
    if bad:
        i = bad[0]
        problems.append(f"{where}: document {i} runs from token {docs[i] if docs else 0} to {ends[i] if docs else len(ids)}; "
                        f"every document is {shortest} to {L} tokens, from token 0 on")
        return 0
    if out_of_vocab(raw, tok.vocab):
        problems.append(f"{where}: token id {max(ids)} is outside the vocabulary of {tok.vocab}")
    if mask.count(0) + mask.count(1) != len(mask):
        problems.append(f"{where}: .mask holds bytes other than 0 and 1")
        return 0
    runs = [m.span() for m in re.finditer(b"\x01+", mask)]
    doc_of = lambda t: bisect.bisect_right(docs, t) - 1
    per_doc = [0] * len(docs)
    for s, e in runs:
        if doc_of(s) != doc_of(e - 1):
            problems.append(f"{where}: a masked run crosses from document {doc_of(s)} into {doc_of(e - 1)}")
            return 0
        per_doc[doc_of(s)] += 1
    wrong = [i for i, c in enumerate(per_doc) if c != queries]
    if wrong:
        i = wrong[0]
        problems.append(f"{where}: document {i} has {per_doc[i]} masked runs, {queries} questions planned ({len(wrong)} documents differ)")
    if task not in PREFIX:
        return len(ids)
    for s, e in runs:
        doc = doc_of(s)
        if doc >= decode_docs:
            break
        before = tok.decode(ids[max(docs[doc], s - CONTEXT):s])
        answer = tok.decode(ids[s:e])
        text = before + answer
        ok = any(PREFIX[task].search(text[:len(before) + k]) for k in range(0, min(STRADDLE, len(answer)) + 1))
        if not ok:
            problems.append(f"{where}: document {doc}: masked run {answer[:40]!r} does not follow the answer prefix of {task} "
                            f"(text before it ends {before[-60:]!r})")
            return len(ids)
        if "\n" not in tok.decode(ids[e - 1:e]):
            problems.append(f"{where}: document {doc}: masked run {answer[-40:]!r} does not end with the answer's newline")
            return len(ids)
    return len(ids)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("tokenizer")
    p.add_argument("data")
    p.add_argument("--decode-docs", type=int, default=100)
    a = p.parse_args()
    tok = Tokenizer(a.tokenizer)
    plan = os.path.join(a.data, "plan.tsv")
    if not os.path.exists(plan):
        sys.exit(f"{plan}: missing (tools/pretrain/data.sh writes it)")
    with open(plan, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        rows = [dict(zip(header, l.rstrip("\n").split("\t"))) for l in f if l.strip()]
    problems, tokens, by_len = [], 0, {}
    for row in rows:
        n = check_file(tok, a.data, row, a.decode_docs, problems)
        tokens += n
        name = row["file"].split("_", 2)[2]
        by_len.setdefault(int(row["length"]), {})[name] = n
    for l in problems:
        print(l)
    if problems:
        sys.exit(1)
    print(f"{a.data}: {len(rows)} files, {tokens / 1e6:.1f}M tokens, all checks passed")
    for L, t in sorted(by_len.items()):
        tot = sum(t.values())
        print(f"  {L}: {tot / 1e6:.1f}M tokens; " + ", ".join(f"{k} {100 * v / tot:.0f}%" for k, v in t.items()))


if __name__ == "__main__":
    main()
