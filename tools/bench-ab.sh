#!/usr/bin/env bash
# bench-ab.sh: compare kvfoot binaries on one machine by interleaving them, so that a
# host's drift (other tenants, turbo, temperature) falls on all of them alike.
#
#   tools/bench-ab.sh "BENCH ARGS" BIN1 BIN2 [BIN...]
#   ROUNDS=5 tools/bench-ab.sh "--random smollm2-135m --bf16 --ctx 512 --threads 1 --reps 2 --decode 32" /tmp/kvfoot-old /tmp/kvfoot-new
#
# Each round runs `BIN bench BENCH ARGS` once per binary, in the order given, and prints
# one line per binary: its name and tokens/s for every test of the table.
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
args=$1; shift
for ((i = 1; i <= ${ROUNDS:-3}; i++)); do
  for bin in "$@"; do
    # shellcheck disable=SC2086 # the arguments are meant to split
    "$bin" bench $args --format table 2>/dev/null |
      awk -F'|' -v name="$(basename "$bin")" '
        $3 ~ /^ *(pp|tg)[0-9]/ { gsub(/ /, "", $2); gsub(/ /, "", $3); gsub(/ /, "", $4); line = line " t" $2 ":" $3 "=" $4 }
        END { print name line }'
  done
done
