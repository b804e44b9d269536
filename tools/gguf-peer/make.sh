#!/usr/bin/env bash
# make.sh [OUTDIR] — llama.cpp's own quantized files and logits for model/gguf_peer_test.go.
#
# Two random-weight Llama models from the llamacpp-peer tool gguf-tiny-llama, written as
# F32: "tiny" (the peer's standard tiny: vocab 512, dim 256, 4 layers, ffn 688, whose
# ffn_down rows are no whole 256-value super-blocks, so llama.cpp falls back to F16 there)
# and "k256" (vocab 512, dim 256, 2 layers, ffn 512: every row a multiple of 256, so the
# K formats apply everywhere). llama.cpp's quantizer (llama_model_quantize through
# quantize.c, the code behind llama-quantize, no imatrix) makes Q8_0, Q4_K_M and Q6_K
# files, and llama.cpp computes the logits of every position of a fixed 64-token sequence
# (f32 KV cache, no flash attention, one thread). llama.cpp quantizes the activations
# to 8 bits for these weight types, so it also dequantizes each file to F32 with its own
# dequantizers and computes that file's logits: the same weights with float activations.
# Written to OUTDIR (default model/testdata/gguf-peer): the .gguf files the test uses,
# tokens.txt, NAME.logits.gz and NAME.dequant-f32.logits.gz (one line of n_vocab floats
# per position), plus SHA256SUMS.
#
# Needs ../shared/tools/llamacpp-peer (PEER, default: found beside the project) and what
# its llamacpp-peer.sh needs (npm, gcc, git); it fetches llama.cpp's prebuilt libraries.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
peer=${PEER:-$root/../shared/tools/llamacpp-peer}
out=${1:-$root/model/testdata/gguf-peer}
[ -x "$peer/llamacpp-peer.sh" ] || { echo "make.sh: no llamacpp-peer at $peer (set PEER)" >&2; exit 1; }
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

(cd "$peer/gguf-tiny-llama" && go build -o "$work/gguf-tiny-llama" .)
"$work/gguf-tiny-llama" -o "$work/tiny-f32.gguf" -wtype f32 >/dev/null
"$work/gguf-tiny-llama" -o "$work/k256-f32.gguf" -wtype f32 -ffn 512 -layers 2 -name k256 >/dev/null

python3 -c "import random; r = random.Random(20); print(','.join(['1'] + [str(r.randrange(3, 512)) for _ in range(63)]))" >"$out/tokens.txt"

# A first peer run fetches and builds llama.cpp's side; then the same libraries serve quantize.c.
THREADS=1 PROMPTS= NGEN=0 "$peer/llamacpp-peer.sh" "$work/tiny-f32.gguf" @"$out/tokens.txt" "$work/warm.txt" -- --kv f32 --fa off >/dev/null
home=${LLAMAPEER_HOME:-$HOME/.cache/llamacpp-peer}/nlc-${NLC_VERSION:-3.21.1}
bins=$home/bin-pkg/package/bins/linux-x64
gcc -O2 -std=c11 -Wall -I"$home/headers/include" -I"$home/headers/ggml/include" "$here/quantize.c" \
    -L"$bins" -l:"$(cd "$bins" && ls libllama.v*.so | head -1)" -l:"$(cd "$bins" && ls libggml.v*.so | head -1)" -l:libggml-base.so \
    -Wl,-rpath,"$bins" -o "$work/quantize"

for name in k256-q8_0 k256-q4_k_m k256-q6_k tiny-q4_k_m; do
  "$work/quantize" "$work/${name%%-*}-f32.gguf" "$out/$name.gguf" "${name#*-}" >"$work/$name.log" 2>&1 ||
    { tail "$work/$name.log" >&2; exit 1; }
  THREADS=1 PROMPTS= NGEN=0 "$peer/llamacpp-peer.sh" "$out/$name.gguf" @"$out/tokens.txt" "$work/$name.last.txt" \
    -- --kv f32 --fa off --logits-all-out "$work/$name.all.txt" | grep RESULT
  gzip -9n <"$work/$name.all.txt" >"$out/$name.logits.gz"
  "$work/quantize" "$out/$name.gguf" "$work/$name-deq.gguf" f32 >"$work/$name-deq.log" 2>&1 ||
    { tail "$work/$name-deq.log" >&2; exit 1; }
  THREADS=1 PROMPTS= NGEN=0 "$peer/llamacpp-peer.sh" "$work/$name-deq.gguf" @"$out/tokens.txt" "$work/$name-deq.last.txt" \
    -- --kv f32 --fa off --logits-all-out "$work/$name-deq.all.txt" | grep RESULT
  gzip -9n <"$work/$name-deq.all.txt" >"$out/$name.dequant-f32.logits.gz"
done
(cd "$out" && sha256sum ./*.gguf ./*.logits.gz tokens.txt >SHA256SUMS)
ls -l "$out"
