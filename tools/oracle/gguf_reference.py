"""testdata/builtin/reference.safetensors from a float64 forward pass written apart from
kvfoot: ../shared/tools/llamacpp-peer's gguf-ref-forward, which prints the logits of a
token list's last position. Runs where Go is (no Python packages needed):

    (cd ../shared/tools/llamacpp-peer/gguf-ref-forward && go build -o /tmp/gref .)
    python3 tools/oracle/gguf_reference.py /tmp/gref models/kvfoot-small/model.gguf \
        tools/oracle/builtin_ids.txt testdata/builtin/reference.safetensors

The ids are 300 tokens of Python source in the built-in tokenizer. Each prefix of POSITIONS
tokens is one forward; the file holds input_ids [300] (I64), positions [k] (I64, the
0-based position of each prefix's last token) and logits [k, vocab] (F32).
"""
import hashlib
import json
import struct
import subprocess
import sys
import tempfile

POSITIONS = [1, 64, 65, 128, 200, 300]  # a chunk of 64's edges, and the end


def main(gref, model, ids_file, out):
    ids = [int(x) for x in open(ids_file).read().replace(",", " ").split()]
    logits = []
    with tempfile.TemporaryDirectory() as tmp:
        for p in POSITIONS:
            f = f"{tmp}/{p}.txt"
            subprocess.run([gref, "-m", model, "-tokens", ",".join(map(str, ids[:p])), "-o", f], check=True)
            logits.append([float(x) for x in open(f).read().split()])
    vocab = len(logits[0])
    assert all(len(l) == vocab for l in logits)
    parts = [struct.pack(f"<{len(ids)}q", *ids), struct.pack(f"<{len(POSITIONS)}q", *[p - 1 for p in POSITIONS]),
             struct.pack(f"<{len(POSITIONS) * vocab}f", *[x for l in logits for x in l])]
    names = [("input_ids", "I64", [len(ids)]), ("positions", "I64", [len(POSITIONS)]), ("logits", "F32", [len(POSITIONS), vocab])]
    sha = hashlib.sha256(open(model, "rb").read()).hexdigest()
    hdr = {"__metadata__": {"oracle": "gguf-ref-forward (../shared/tools/llamacpp-peer): float64 forward pass over models/kvfoot-small/model.gguf, Q8_0 blocks dequantized; logits of the last token of each prefix",
                            "model_sha256": sha}}
    off = 0
    for (name, dtype, shape), b in zip(names, parts):
        hdr[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(b)]}
        off += len(b)
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(parts))


if __name__ == "__main__":
    if len(sys.argv) != 5:
        print(__doc__)
        sys.exit(2)
    main(*sys.argv[1:])
