#!/bin/sh
# methods.sh KVFOOT [SHAPE]: what one study cell costs on the GPU, per method (issue 19,
# point 2): for each of the study's methods, `kvfoot bench --device cuda` on random bf16
# weights of SHAPE (default llama-3.1-8b) pre-fills each context of $CTX (default
# 32768,131072) in chunks of $CHUNK (default 32768, the paper's C for DuoAttention and PruLong)
# and decodes $DECODE tokens (default 32, a recall answer's length) after it; a sample costs the
# pre-fill plus the decode, and a cell's throughput is 3600 s over that, in samples an hour at
# batch 1. Token-eviction methods at KV sparsity $S (default 0.5), head masks at head sparsity
# $H (default 0.7; random masks, sink 128, window 1024), streaming with the window that keeps
# 1-S of the context. A method the GPU does not run says why in its row. The raw JSON goes to
# ${OUT:-/tmp}/gpu-compare/methods.
set -u
kvfoot=$1
shape=${2:-llama-3.1-8b}
ctx=${CTX:-32768,131072}
chunk=${CHUNK:-32768}
decode=${DECODE:-32}
s=${S:-0.5}
h=${H:-0.7}
out=${OUT:-/tmp}/gpu-compare/methods
mkdir -p "$out"
case $shape in
llama-3.1-8b) layers=32 ;; llama-3.2-1b) layers=16 ;; *) echo "methods.sh: unknown shape $shape" >&2; exit 2 ;;
esac
awk -v L=$layers 'BEGIN { srand(5); for (l = 0; l < L; l++) { s = ""; for (k = 0; k < 8; k++) s = s (k ? "\t" : "") sprintf("%.3f", rand()); print s } }' >"$out/masks.tsv"
masks="headmask:masks=$out/masks.tsv,sparsity=$h,sink=128,window=1024"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || true
echo "| method | KV spec | context | pre-fill s | decode tok/s | samples an hour |"
echo "| --- | --- | --: | --: | --: | --: |"
for n in $(echo "$ctx" | tr ',' ' '); do
	win=$(awk -v n="$n" -v s="$s" 'BEGIN { printf "%d", (1 - s) * n }')
	while IFS='|' read -r name spec; do
		f="$out/$(echo "$name" | tr -c 'a-z0-9\n' '_')-$n.json"
		if ! "$kvfoot" bench --random "$shape" --bf16 --device ${DEVICE:-cuda} --ctx "$n" --chunk "$chunk" --decode "$decode" \
			--reps 1 --kv "$spec" --format json >"$f" 2>"$f.err"; then
			echo "| $name | \`$spec\` | $n | - | - | fails: $(tail -1 "$f.err" | cut -c1-160) |"
			continue
		fi
		python3 - "$f" "$name" "$spec" "$n" "$decode" <<'EOF'
import json, sys
f, name, spec, n, decode = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
rows = json.load(open(f))["rows"]
pp = next(r["tokens_per_second"] for r in rows if r["test"] == f"pp{n}")
tg = next(r["tokens_per_second"] for r in rows if r["test"].startswith("tg"))
sec = n / pp + decode / tg
print(f"| {name} | `{spec}` | {n} | {n / pp:.2f} | {tg:.1f} | {3600 / sec:.0f} |")
EOF
	done <<METHODS
full|full
streaming|streaming:sink=128,window=$win
duo, prulong (head masks)|$masks
snapkv|snapkv:sparsity=$s,window=64
snapkv*|snapkv:sparsity=$s,window=64,chunked=true,patch=64
pyramidkv*|pyramidkv:sparsity=$s,window=64,chunked=true,patch=64
locret|locret:sparsity=$s,local=100,stabilizers=256
int4|quant:bits=4
prulong+snapkv*+int4|$masks+snapkv:sparsity=$s,window=64,chunked=true,patch=64,gqa=mean+quant:bits=4
METHODS
done
