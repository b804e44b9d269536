#!/bin/sh
# speed.sh KVFOOT [SHAPE...]: kvfoot on the GPU against transformers (bf16, SDPA, batch 1) on
# random-weight Llama shapes, in one run on the same machine, as issue 18 asks; one markdown
# table per shape, each figure also as a fraction of the H100's limits (989 TFLOP/s bf16 dense,
# 3.35 TB/s HBM3). KVFOOT is a kvfoot binary (built with CGO_ENABLED=0); SHAPEs default to
# llama-3.1-8b. Needs python3 with torch and transformers, and a GPU.
#   TESTS   kvfoot's contexts (default 4096,32768,131072; pre-fill in chunks of 32768, decode
#           of 32 tokens after each)
#   HEADMASK=0 skips the headmask run (sparsity 0.7, sink 128, window 1024, random masks)
#   HF=0 skips transformers (its figures for the 8B shape take about two minutes)
# The raw output (kvfoot's JSON, transformers' RESULT lines) goes to ${OUT:-/tmp}/gpu-compare.
set -eu
kvfoot=$1; shift
shapes=${*:-llama-3.1-8b}
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-/tmp}/gpu-compare; mkdir -p "$out"
ctx=${TESTS:-4096,32768,131072}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
for shape in $shapes; do
	# layers and KV heads of the preset, for the random masks
	case $shape in
	llama-3.1-8b) layers=32 ;; llama-3.2-1b) layers=16 ;; *) echo "speed.sh: unknown shape $shape" >&2; exit 2 ;;
	esac
	awk -v L=$layers 'BEGIN { srand(5); for (l = 0; l < L; l++) { s = ""; for (h = 0; h < 8; h++) s = s (h ? "\t" : "") sprintf("%.3f", rand()); print s } }' >"$out/$shape.masks.tsv"
	"$kvfoot" bench --random "$shape" --bf16 --device cuda --ctx "512,$ctx" --chunk 32768 --decode 32 --reps 1 \
		--format json >"$out/$shape.full.json"
	if [ "${HEADMASK:-1}" = 1 ]; then
		"$kvfoot" bench --random "$shape" --bf16 --device cuda --ctx "512,$(echo "$ctx" | tr ',' '\n' | tail -1)" --chunk 32768 \
			--decode 32 --reps 1 --kv "headmask:masks=$out/$shape.masks.tsv,sparsity=0.7,sink=128,window=1024" \
			--format json >"$out/$shape.headmask.json"
	fi
	if [ "${HF:-1}" = 1 ]; then
		tests=""
		for n in $(echo "$ctx" | tr ',' ' '); do
			c=$(( n < 32768 ? n : 32768 ))
			tests="$tests pp$n/$c tg32@d$n/$c"
		done
		python3 "$here/hf_speed.py" "$shape" $tests | tee "$out/$shape.hf.txt"
	fi
	python3 "$here/table.py" "$shape" "$out"
done
