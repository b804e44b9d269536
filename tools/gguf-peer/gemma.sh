#!/usr/bin/env bash
# gemma.sh [OUTDIR] — llama.cpp's logits on the Gemma 2 and Gemma 3 test checkpoints,
# for model/gguf_gemma_test.go's TestGGUFGemmaLlamaCpp.
#
# The test writes testdata/models/gemma2 and gemma3 as llama.cpp's converter would
# (KVFOOT_GEMMA_PEER_OUT), llama.cpp computes the logits of every position of the
# checkpoint's reference sequence (f32 KV cache, no flash attention, one thread), and
# the last 16 positions are kept: OUTDIR (default model/testdata/gemma-peer)/NAME.logits.gz,
# one line of n_vocab floats per position.
#
# Needs ../shared/tools/llamacpp-peer (PEER, default: found beside the project) and what
# its llamacpp-peer.sh needs (npm, gcc, git); it fetches llama.cpp's prebuilt libraries.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
peer=${PEER:-$root/../shared/tools/llamacpp-peer}
out=${1:-$root/model/testdata/gemma-peer}
[ -x "$peer/llamacpp-peer.sh" ] || { echo "gemma.sh: no llamacpp-peer at $peer (set PEER)" >&2; exit 1; }
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

(cd "$root" && KVFOOT_GEMMA_PEER_OUT="$work" go test ./model -run '^TestGGUFGemmaLlamaCpp$' -count=1 >/dev/null)
for name in gemma2 gemma3; do
  THREADS=1 PROMPTS= NGEN=0 "$peer/llamacpp-peer.sh" "$work/$name.gguf" @"$work/$name.tokens.txt" "$work/$name.last.txt" \
    -- --kv f32 --fa off --logits-all-out "$work/$name.all.txt" | grep RESULT
  tail -n 16 "$work/$name.all.txt" | gzip -9n >"$out/$name.logits.gz"
done
ls -l "$out"
