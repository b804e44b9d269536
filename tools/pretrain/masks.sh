#!/usr/bin/env bash
# Trains the built-in model's head masks on the reference machine's GPU at the paper's recipe
# (models/README.md, "Head masks"), from the repository root, carrying .data (sources.sh):
#   MODEL=.run/new bash tools/pretrain/masks.sh          # after continue.sh
# The documents (maskdata.sh), then PruLong (1000 steps of 16 x 4096 tokens, TARGET 0.7;
# about 4 minutes of an H100) and DuoAttention (2000 x 4096, about 45 s); both resume from
# their checkpoints if a call stops them (MINUTES bounds PruLong's share of a call). The
# masks come back as $OUT/masks.tgz (m-prulong-TARGET and m-duo, checkpoints left out):
# unpack them into MODEL/masks/{prulong,duo} beside masks/random.
set -eo pipefail
M=${MODEL:-models/kvfoot-small} TGT=${TARGET:-0.7} K=.run/kvfoot
[ -x $K ] || { mkdir -p .run && xz -dc .data/kvfoot.xz >$K && chmod +x $K; }
[ -d .run/corpus ] || bash tools/pretrain/corpus.sh .data .run/corpus
[ -f .run/md/duo.jsonl ] || bash tools/pretrain/maskdata.sh $K models/kvfoot-small/tokenizer.json .run/corpus .run/md 2>/dev/null
if [ "${PRULONG:-1}" = 1 ]; then
  ( time $K prulong --device cuda --model $M --data .run/md/prulong.jsonl --out .run/m-prulong-$TGT \
    --target-sparsity $TGT --steps 1000 --batch 16 --seq-len 4096 --sink 16 --window 256 \
    --seed 0 --checkpoint-every 25 --max-minutes ${MINUTES:-8.5} ) 2>&1 | grep -v '^step' | tail -4
fi
if [ "${DUO:-1}" = 1 ]; then
  ( time $K duo --device cuda --model $M --data .run/md/duo.jsonl --out .run/m-duo --steps 2000 \
    --batch 1 --seq-len 4096 --sink 16 --window 256 --seed 0 --checkpoint-every 100 ) 2>&1 | grep -v '^step' | tail -4
fi
tar -C .run --exclude checkpoint.safetensors --exclude kvfoot-run.json -czf $OUT/masks.tgz $(cd .run && ls -d m-prulong-* m-duo 2>/dev/null)
