#!/usr/bin/env bash
# export-check.sh — does llama.cpp load what `kvfoot export` writes, and agree?
#
# cmd/kvfoot's TestExportCommand writes a random-weight Llama folder with Llama 2's
# tokenizer (vocabulary 32000 padded to 32008), exports it as f32, f16 and q8_0, and
# keeps kvfoot's logits of a fixed 16-token sequence. llama.cpp (prebuilt, through
# ../shared/tools/llamacpp-peer; f32 KV cache, no flash attention) then loads each
# file and computes the same logits; this prints the relative L2 distance and the
# positions whose argmax agrees. llama.cpp rounds activations to f16 (f16 weights)
# or 8 bits (q8_0) in its dot products, kvfoot keeps them float32.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
peer=${PEER:-$root/../shared/tools/llamacpp-peer}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$root" && KVFOOT_EXPORT_CHECK_DIR=$work go test ./cmd/kvfoot -run '^TestExportCommand$' -count=1 >/dev/null)
for typ in f32 f16 q8_0; do
  THREADS=1 PROMPTS= NGEN=0 "$peer/llamacpp-peer.sh" "$work/$typ.gguf" @"$work/tokens.txt" "$work/$typ.last.txt" \
    -- --kv f32 --fa off --logits-all-out "$work/$typ.llama-logits.txt" >/dev/null
  python3 - "$typ" "$work/$typ.kvfoot-logits.txt" "$work/$typ.llama-logits.txt" <<'PY'
import math, sys
typ, a, b = sys.argv[1:]
kv = [float(x) for x in open(a).read().split()]
rows = [[float(x) for x in line.split()] for line in open(b) if line.strip()]
V = len(rows[0]); ll = [x for r in rows for x in r]
assert len(kv) == len(ll), (len(kv), len(ll))
num = sum((x - y) ** 2 for x, y in zip(kv, ll)); den = sum(y * y for y in ll)
am = lambda v: max(range(len(v)), key=v.__getitem__)
same = sum(am(kv[p*V:(p+1)*V]) == am(r) for p, r in enumerate(rows))
print(f"{typ}: llama.cpp loads it; kvfoot vs llama.cpp logits rel L2 {math.sqrt(num/den):.3g}, argmax equal at {same}/{len(rows)} positions")
PY
done
