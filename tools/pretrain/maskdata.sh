#!/usr/bin/env bash
# Makes the documents the built-in model's head masks are trained on (models/README.md):
#   tools/pretrain/maskdata.sh KVFOOT TOKENIZER CORPUS_DIR OUT_DIR
# OUT_DIR/prulong.jsonl  300 documents of 4096 tokens for each of the nine tasks, Go source
#                        and prose (3,300): PruLong's next-token loss sees every category
# OUT_DIR/duo.jsonl      100 documents of 4096 tokens for each recall task (400):
#                        DuoAttention's distillation, as its paper trains on passkey retrieval
# Seed 1000: in no pre-training set (data.sh uses 1-4) and, being a training seed, in no
# evaluation set (tasks.InstanceSeed). Query counts are data.sh's 4096 row, so a document
# is as dense in questions as an evaluation prompt of that length.
set -euo pipefail
kvfoot=${1:?usage: maskdata.sh KVFOOT TOKENIZER CORPUS_DIR OUT_DIR} tok=${2:?} corpus=${3:?} out=${4:?}
mkdir -p "$out"
dump() { # TASK QUERIES COUNT CORPUS FILE
  "$kvfoot" tasks dump --tokenizer "$tok" --corpus "$4" --seed 1000 --lengths 4096 --count "$3" \
    --queries "$2" --tasks "$1" --force --out "$5" >/dev/null
}
parts=()
for row in "json_kv 40" "ruler_mk_needle 16" "ruler_mk_uuid 16" "ruler_mv 4" "ruler_vt 2" "rag 4" \
  "rerank 4" "icl_labels 48" "records_tsv 1"; do
  read -r task q <<<"$row"
  dump "$task" "$q" 300 "$corpus" "$out/p_$task.jsonl"
  parts+=("$out/p_$task.jsonl")
done
dump corpus 1 300 "$corpus/code" "$out/p_code.jsonl"
dump corpus 1 300 "$corpus/prose" "$out/p_prose.jsonl"
cat "${parts[@]}" "$out/p_code.jsonl" "$out/p_prose.jsonl" >"$out/prulong.jsonl.tmp"
for row in "json_kv 40" "ruler_mk_needle 16" "ruler_mk_uuid 16" "ruler_mv 4"; do
  read -r task q <<<"$row"
  dump "$task" "$q" 100 "$corpus" "$out/d_$task.jsonl"
done
cat "$out"/d_json_kv.jsonl "$out"/d_ruler_mk_needle.jsonl "$out"/d_ruler_mk_uuid.jsonl "$out"/d_ruler_mv.jsonl >"$out/duo.jsonl.tmp"
rm -f "$out"/p_*.jsonl "$out"/d_*.jsonl
mv "$out/prulong.jsonl.tmp" "$out/prulong.jsonl"
mv "$out/duo.jsonl.tmp" "$out/duo.jsonl"
wc -l "$out/prulong.jsonl" "$out/duo.jsonl"
