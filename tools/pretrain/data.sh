#!/usr/bin/env bash
# Makes the pre-training data of the built-in model with kvfoot itself:
#   tools/pretrain/data.sh KVFOOT TOKENIZER CORPUS_DIR OUT_DIR
# For every curriculum length it dumps the recall tasks (twice as many documents), the
# other tasks and plain corpus text, each document holding as many question/answer pairs
# as fit comfortably at that length (about 70% of the most that fit with the built-in
# tokenizer). Training seeds are disjoint from evaluation seeds by construction.
set -euo pipefail
kvfoot=$1 tok=$2 corpus=$3 out=$4
mkdir -p "$out"
# length  docs-per-unit  queries: json_kv mk_needle mk_uuid mv vt icl
plan=(
  "512  1950  8 4 4 2 3 24"
  "1024 1300 16 10 8 4 6 40"
  "2048 1000 32 20 16 8 12 48"
  "4096 1220 40 40 32 16 24 48"
)
dump() { # name length count queries tasks
  "$kvfoot" tasks dump --tokenizer "$tok" --corpus "$corpus" --format bin --seed 1 \
    --lengths "$2" --count "$3" --queries "$4" --tasks "$5" --out "$out/train_$2_$1.bin"
}
for row in "${plan[@]}"; do
  read -r L n qj qn qu qm qv qi <<<"$row"
  dump json_kv "$L" $((2 * n)) "$qj" json_kv
  dump mk_needle "$L" $((2 * n)) "$qn" ruler_mk_needle
  dump mk_uuid "$L" $((2 * n)) "$qu" ruler_mk_uuid
  dump mv "$L" $((2 * n)) "$qm" ruler_mv
  dump vt "$L" "$n" "$qv" ruler_vt
  dump icl "$L" "$n" "$qi" icl_labels
  dump records "$L" "$n" 1 records_tsv
  dump corpus "$L" "$n" 1 corpus
done
ls -la "$out"
