"""Does a model find records_tsv's records by their markup or by their distance from the
start? Teacher-forced row accuracy (answer_acc.py) on three sets of LENGTH-token inputs:

    python3 tools/pretrain/records_probe.py KVFOOT MODEL CORPUS LENGTH [N]

  training    N held-out training documents (kvfoot tasks dump --seed 7)
  shifted     the same documents with HAYSTACK tokens of CORPUS's Go source inserted after
              the instruction: the records and their order unchanged, every distance from
              the start longer
  evaluation  N evaluation prompts (kvfoot tasks show) followed by their gold TSV

A model that reads the markup scores the same on all three; one that counts positions
loses rows on the shifted documents and on the evaluation prompts, whose context is an
answer's length longer than a training document's of the same length. CORPUS is what
corpus.sh makes (its code/ folder is the haystack of all three).
"""
import glob
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PREFIX = "```tsv\ncode\tname\tqty\n"


def run(*args, stdin=None):
    r = subprocess.run(args, input=stdin, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"{' '.join(args[:3])}: {r.stderr.strip()}")
    return r


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    kvfoot, model, corpus, length = sys.argv[1:5]
    n = int(sys.argv[5]) if len(sys.argv) > 5 else 8
    code = os.path.join(corpus, "code")

    def encode(text):
        return json.loads(run(kvfoot, "tokenize", "--tokenizer", model, "--input", "-", stdin=json.dumps({"text": text})).stdout)["ids"]

    def doc(text):
        """text (ending in the gold TSV and its fence) as a document answer_acc.py reads."""
        q = text.rindex(PREFIX) + len(PREFIX)
        pre, ids = encode(text[:q]), encode(text)
        if ids[:len(pre)] != pre:
            sys.exit("the tokenizer merges across the answer's start")
        return {"task": "records_tsv", "length": len(ids), "ids": ids, "answer_spans": [[len(pre), len(ids)]]}

    src = sorted(glob.glob(os.path.join(code, "**", "*.go"), recursive=True))
    if not src:
        sys.exit(f"{code}: no Go sources (make CORPUS with corpus.sh)")
    haystack = ""
    for path in src[len(src) // 2:]:  # about 180 tokens: 20 lines of the first long enough file past the middle
        lines = open(path, encoding="utf-8", errors="replace").read().splitlines()[40:60]
        if sum(map(len, lines)) >= 600:
            haystack = "\n".join(lines) + "\n"
            break
    with tempfile.TemporaryDirectory() as tmp:
        dumped = os.path.join(tmp, "train.jsonl")
        run(kvfoot, "tasks", "dump", "--tokenizer", os.path.join(model, "tokenizer.json"), "--corpus", code, "--tasks",
            "records_tsv", "--lengths", length, "--count", str(n), "--seed", "7", "--out", dumped, "--force")
        train = [json.loads(l) for l in open(dumped)]
        sets = {"training": [{k: d[k] for k in ("task", "length", "ids", "answer_spans")} for d in train], "shifted": [], "evaluation": []}
        for d in train:
            t = d["text"]
            h = t.index("\n") + 1  # after the instruction line
            sets["shifted"].append(doc(t[:h] + haystack + t[h:]))
        for i in range(n):
            out = run(kvfoot, "tasks", "show", "--task", "records_tsv", "--length", length, "--index", str(i),
                      "--model", model, "--corpus", code)
            k = out.stdout.rindex(PREFIX) + len(PREFIX)
            info = out.stdout[k:] + out.stderr
            gold = json.JSONDecoder().raw_decode(info[info.index("answers [") + len("answers "):])[0][0]
            sets["evaluation"].append(doc(out.stdout[:k] + gold[len(PREFIX):] + "\n"))
        print(f"inserted haystack: {len(encode(haystack))} tokens")
        for name, docs in sets.items():
            path = os.path.join(tmp, name + ".jsonl")
            with open(path, "w") as f:
                f.writelines(json.dumps(d) + "\n" for d in docs)
            last = run(sys.executable, os.path.join(HERE, "answer_acc.py"), kvfoot, model, path).stdout.strip().splitlines()[-1]
            print(f"{name:10s} {last}", flush=True)


if __name__ == "__main__":
    main()
