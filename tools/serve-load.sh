#!/bin/sh
# Load-tests `kvfoot serve` on a device: for each budget in $BUDGETS, starts kvfoot serve
# --device DEVICE, drives `kvfoot loadgen` at concurrency 1, 4, 16 and 64 under full attention
# and under streaming heads (headmask at sparsity 0.5), then reads the server's /metrics and
# checks that the KV bytes held never exceeded the budget. A few minutes at most on an H100:
#   CGO_ENABLED=0 go build -o DIR/kvfoot ./cmd/kvfoot       (on the build machine)
#   tools/serve-load.sh DIR/kvfoot cuda                      (from a checkout: models/kvfoot-small)
#   RANDOM_PRESET=llama-3.2-1b tools/serve-load.sh DIR/kvfoot cuda
# The built-in model runs with its PruLong masks and $BUDGETS "default 32MiB" (the device's own
# budget, then one that makes requests queue); RANDOM_PRESET (llama-3.2-1b, llama-3.1-8b, as
# kvfoot serve --random takes) serves random weights of that shape with masks alternating
# between the heads and $BUDGETS "default". $CONCURRENCY, $PROMPT_LEN, $MAX_TOKENS, $REQUESTS
# (per unit of concurrency) and $PORT change the other defaults. Exits 1 if a request failed
# or a budget was exceeded.
set -eu
bin=${1:?usage: tools/serve-load.sh KVFOOT [DEVICE]}
device=${2:-cuda}
port=${PORT:-18080}
url=http://127.0.0.1:$port
tmp=$(mktemp -d)
log=$tmp/serve.log
pid=
trap 'test -n "$pid" && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

preset=${RANDOM_PRESET:-}
if [ -n "$preset" ]; then
	case $preset in
	llama-3.2-1b) shape="16 8" ;;
	llama-3.1-8b) shape="32 8" ;;
	smollm2-135m) shape="30 3" ;;
	*) echo "RANDOM_PRESET=$preset: want llama-3.2-1b, llama-3.1-8b or smollm2-135m" >&2 && exit 2 ;;
	esac
	masks=$tmp/masks.tsv
	# shellcheck disable=SC2086 # two numbers
	set -- $shape
	awk -v layers="$1" -v heads="$2" 'BEGIN { for (l = 0; l < layers; l++) { for (h = 0; h < heads; h++) printf "%s%s", (h ? "\t" : ""), ((l + h) % 2 ? "0.9" : "0.1"); print "" } }' >"$masks"
	model="--random=$preset"
	name=$preset
	budgets=${BUDGETS:-default}
else
	masks=${MASKS:-models/kvfoot-small/masks/prulong/masks_soft.tsv}
	model="--model=${MODEL:-models/kvfoot-small}"
	name=$(basename "${MODEL:-models/kvfoot-small}")
	budgets=${BUDGETS:-default 32MiB}
fi

get() { curl -sf "$1" 2>/dev/null || wget -qO- "$1"; }
metric() { get "$url/metrics" | awk -v m="$1" '$1 == m { printf "%.0f", $2 }'; }

status=0
for budget in $budgets; do
	flag=
	[ "$budget" = default ] || flag="--kv-budget=$budget"
	# shellcheck disable=SC2086 # $flag is one word or none
	"$bin" serve "$model" --device "$device" --addr "127.0.0.1:$port" --masks "$masks" --max-concurrent 64 $flag 2>"$log" &
	pid=$!
	i=0
	until grep -q "listening on" "$log"; do
		i=$((i + 1))
		if [ $i -gt 1800 ] || ! kill -0 "$pid" 2>/dev/null; then
			cat "$log" >&2
			exit 1
		fi
		sleep 0.1
	done
	echo
	echo "## kvfoot serve $model --device $device, budget $budget"
	cat "$log"
	for policy in full "headmask:masks=$(basename "$masks"),sparsity=0.5,sink=64,window=256"; do
		echo
		"$bin" loadgen --url "$url/v1" --model "$name" --policy "$policy" --concurrency "${CONCURRENCY:-1,4,16,64}" \
			--prompt-len "${PROMPT_LEN:-512}" --max-tokens "${MAX_TOKENS:-128}" --requests "${REQUESTS:-2}" || status=1
	done
	peak=$(metric kvfoot_kv_bytes_peak)
	limit=$(metric kvfoot_kv_budget_bytes)
	echo
	if [ -n "$peak" ] && [ -n "$limit" ] && [ "$peak" -le "$limit" ]; then
		echo "KV bytes held at most $peak of the budget's $limit: within it"
	else
		echo "KV bytes held at most '$peak' against a budget of '$limit': OVER (or unread)"
		status=1
	fi
	kill "$pid"
	wait "$pid" || true
	pid=
done
exit $status
