#!/usr/bin/env bash
# Makes the pre-training data of the built-in model with kvfoot itself:
#   tools/pretrain/data.sh KVFOOT TOKENIZER CORPUS_DIR OUT_DIR [DIVISOR] [MIX]
# CORPUS_DIR is what tools/pretrain/corpus.sh makes: code/ (Go sources) and prose/ (the
# OS's and Go's documents and Go's comments). For every curriculum length it dumps every
# task generator in training mode (answers masked in .mask), plain Go source and plain
# prose, as train_L_NAME.{bin,mask,docs}, and writes plan.tsv (what each file should hold,
# for check_data.py). DIVISOR (default 1) divides every document count: a small run to test.
# MIX is base (default: the mix below, every curriculum length) or rerank (continued
# training at 1024 and 4096, pretrain.py --init --curriculum 1024:0.25,4096:1: re-ranking
# 30% with L/256 questions a document at 1024 and L/512 at 4096, records_tsv 10%, the rest
# scaled down; README.md says why) or rerank1k (re-ranking 66% at 512 and 1024 alone, after the
# rerank continuation failed: does the lookup move at all at short lengths?) or lengths
# (the base mix in documents of 2048, 2560, 3072, 3584 and 4096 tokens, all read as rows of
# the 4096 phase, --curriculum 4096:1: every length the study uses; with records_tsv's
# training counts now drawn (tasks/records_tsv.go), the next try at its rows; README.md) or
# echo (lengths' plan, re-ranking 24% with ids echoed in its training documents; README.md).
#
# JITTER (environment, default 0: every document exactly L tokens) shortens each document to
# a length drawn from L·(1−JITTER) to L (kvfoot tasks dump --jitter): with every document
# ending at L, the lengths continuation learned where documents end and stopped writing
# records at those positions, where an evaluation prompt of L tokens starts its answer
# (README.md, "Where documents end").
#
# A plan row's first field is a length L, or PHASE:L for documents of L tokens that the
# curriculum's PHASE rows read (file train_PHASE_NAME-L; rows run on into the next document).
#
# Mix, in tokens (every document is L tokens, or L·(1−JITTER/2) on average, so documents
# count tokens): recall
# 28% (json_kv, ruler_mk_needle, ruler_mk_uuid, ruler_mv: 7 each), rag 12, rerank 12,
# ruler_vt 12, icl_labels 5, records_tsv 9, Go source 8, prose 14. Task haystacks are cut
# from all of CORPUS_DIR (code and prose by bytes: about 3 to 1). Question counts keep
# each document's context as dense as an evaluation prompt's of that length (needles
# L/256, multi-value keys L/1024, variable chains max(1, L/2048), RAG and re-ranking
# questions max(1, L/1024)); json_kv and icl_labels, whose context does not depend on the questions,
# ask many. Training seeds are disjoint from evaluation seeds by construction
# (tasks.InstanceSeed); prose uses seed 2 so that its passages start apart from code's.
set -euo pipefail
kvfoot=${1:?usage: data.sh KVFOOT TOKENIZER CORPUS_DIR OUT_DIR [DIVISOR] [MIX]} tok=${2:?} corpus=${3:?} out=${4:?} div=${5:-1} mixname=${6:-base}
jitter=${JITTER:-0}
for d in "$corpus/code" "$corpus/prose"; do
  [ -d "$d" ] || { echo "data.sh: $d is missing (make CORPUS_DIR with tools/pretrain/corpus.sh)" >&2; exit 1; }
done
mkdir -p "$out"
# name  task  share (%)  query column (0: one question)  corpus (all, code or prose)
base_mix=(
  "json_kv json_kv 7 1 all"
  "mk_needle ruler_mk_needle 7 2 all"
  "mk_uuid ruler_mk_uuid 7 2 all"
  "mv ruler_mv 7 3 all"
  "vt ruler_vt 12 4 all"
  "rag rag 12 5 all"
  "rerank rerank 12 6 all"
  "icl icl_labels 5 7 all"
  "records records_tsv 9 0 all"
  "code corpus 8 0 code"
  "prose corpus 14 0 prose"
)
# every task at five lengths in the 4096 phase, an equal share of the tokens each (units:
# 4096's 220 x 4096/L / 5), question counts as dense as an evaluation prompt of L's
lengths_plan=(
  "4096:2048 88 32  8 2 1 2 2 48"
  "4096:2560 70 36 10 2 1 2 2 48"
  "4096:3072 59 36 12 3 1 3 3 48"
  "4096:3584 50 40 14 3 1 3 3 48"
  "4096:4096 44 40 16 4 2 4 4 48"
)
case $mixname in
base)
  # length  documents per 1% of the tokens  queries: json_kv mk_needle/mk_uuid mv vt rag rerank icl
  plan=(
    "512  290  8  2 1 1 1 1 24"
    "1024 176 16  4 1 1 1 1 40"
    "2048 132 32  8 2 1 2 2 48"
    "4096 220 40 16 4 2 4 4 48"
  )
  mix=("${base_mix[@]}") ;;
rerank)
  plan=(
    "1024 176 16  4 1 1 1 4 40"
    "4096 220 40 16 4 2 4 8 48"
  )
  mix=(
    "json_kv json_kv 5 1 all"
    "mk_needle ruler_mk_needle 5 2 all"
    "mk_uuid ruler_mk_uuid 5 2 all"
    "mv ruler_mv 5 3 all"
    "vt ruler_vt 10 4 all"
    "rag rag 8 5 all"
    "rerank rerank 30 6 all"
    "icl icl_labels 4 7 all"
    "records records_tsv 10 0 all"
    "code corpus 6 0 code"
    "prose corpus 12 0 prose"
  ) ;;
rerank1k)
  # re-ranking mostly, at 512 then 1024 tokens (pretrain.py --curriculum 512:0.3,1024:1; 26M
  # and 45M tokens at DIVISOR 2): a handful of documents a prompt before a few dozen, with RAG
  # (the same document layout) and a little of the rest so that it is not forgotten
  plan=(
    "512 1000  8  2 1 1 1 2 24"
    "1024 880 16  4 1 1 1 4 40"
  )
  mix=(
    "json_kv json_kv 4 1 all"
    "mk_needle ruler_mk_needle 3 2 all"
    "mv ruler_mv 3 3 all"
    "vt ruler_vt 4 4 all"
    "rag rag 8 5 all"
    "rerank rerank 66 6 all"
    "icl icl_labels 2 7 all"
    "records records_tsv 4 0 all"
    "prose corpus 6 0 prose"
  ) ;;
lengths)
  plan=("${lengths_plan[@]}")
  mix=("${base_mix[@]}") ;;
echo)
  # the lengths plan on documents it has not seen, re-ranking 24% with half its unranked
  # documents echoing their id after their fact (tasks dump --echo): a target for the
  # lookup at every such document, where the answers give one per question
  plan=("${lengths_plan[@]}")
  mix=(
    "json_kv json_kv 6 1 all"
    "mk_needle ruler_mk_needle 6 2 all"
    "mk_uuid ruler_mk_uuid 6 2 all"
    "mv ruler_mv 6 3 all"
    "vt ruler_vt 10 4 all"
    "rag rag 10 5 all"
    "rerank rerank 24 6 all"
    "icl icl_labels 5 7 all"
    "records records_tsv 9 0 all"
    "code corpus 6 0 code"
    "prose corpus 12 0 prose"
  ) ;;
*) echo "data.sh: MIX $mixname: want base, rerank, rerank1k, lengths or echo" >&2; exit 2 ;;
esac
printf 'file\tlength\ttask\tdocuments\tqueries\tjitter\n' >"$out/plan.tsv.tmp"
for row in "${plan[@]}"; do
  read -r L unit qs <<<"$row"
  read -r -a q <<<"$qs"
  phase=${L%%:*} L=${L##*:} suffix=
  [ "$phase" = "$L" ] || suffix=-$L
  for m in "${mix[@]}"; do
    read -r name task share col src <<<"$m"
    n=$((share * unit / div))
    ((n >= 1)) || n=1
    queries=1
    ((col == 0)) || queries=${q[col - 1]}
    c=$corpus seed=1
    [ "$src" = all ] || c=$corpus/$src
    [ "$name" = prose ] && seed=2
    case $mixname in # documents the earlier runs did not see
    rerank | rerank1k) seed=$((seed + 2)) ;;
    lengths) seed=$((seed + 4)) ;;
    echo) seed=$((seed + 6)) ;;
    esac
    echoflag=
    [ "$mixname$task" != echorerank ] || echoflag=--echo
    "$kvfoot" tasks dump --tokenizer "$tok" --corpus "$c" --format bin --seed "$seed" --force \
      --lengths "$L" --count "$n" --queries "$queries" --tasks "$task" --jitter "$jitter" $echoflag --out "$out/train_${phase}_$name$suffix.bin"
    # corpus text asks no question (records_tsv asks one whatever --queries says)
    [ "$task" != corpus ] || queries=0
    printf 'train_%s_%s\t%s\t%s\t%s\t%s\t%s\n' "$phase" "$name$suffix" "$L" "$task" "$n" "$queries" "$jitter" >>"$out/plan.tsv.tmp"
  done
done
mv "$out/plan.tsv.tmp" "$out/plan.tsv"
ls -la "$out"
