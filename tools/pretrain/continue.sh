# The re-ranking continuation (README.md, "The run of 2026-12-07 and its continuation"), one
# call on the reference machine from the repository root, carrying .data (sources.sh):
# the data, the continuation from models/kvfoot-small/model.gguf, the Q8_0 export in .run/new
# (returned as $OUT/gguf.NN pieces; cat them), its log, and full attention on every task.
# TS/MS: training and wall seconds (280/300); MIX and CURR: data.sh's mix and pretrain.py's
# curriculum (rerank, 1024:0.25,4096:1), EVLEN the lengths full attention is scored at (3584);
# re-ranking mostly: MIX=rerank1k CURR=512:0.3,1024:1 EVLEN=1024,3584; documents of every length from
# 2048 to 4096: MIX=lengths CURR=4096:1 EVLEN=2048,3584; those with re-ranking's ids echoed:
# MIX=echo CURR=4096:1 EVLEN=3584. INIT: the weights to start from
# (models/kvfoot-small/model.gguf; .run/model is the last call's result on a warm machine).
# Each MIX has its own data and checkpoint folders, so calls with different mixes chain.
# JITTER (default 0.25) shortens the documents (data.sh); the runs of 2026-12-07 had none.
# The tracked tree is 82 MB: keep testdata/,
# model/testdata/, docs/ and cuda/kernels/*.ptx out of the call's copy (untrack them for it)
# so that the tree, model.gguf included, and .data fit the 64 MiB a call carries.
set -eo pipefail
T=models/kvfoot-small/tokenizer.json
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; date -u
mkdir -p .run && xz -dc .data/kvfoot.xz >.run/kvfoot && chmod +x .run/kvfoot
bash tools/pretrain/corpus.sh .data .run/corpus
MIX=${MIX:-rerank} D=.run/cdata-$MIX
export JITTER=${JITTER:-0.25}
( time bash tools/pretrain/data.sh .run/kvfoot $T .run/corpus $D 2 $MIX 2>&1 | grep -v '^dump:' | tail -2 ) 2>&1
python3 tools/pretrain/check_data.py $T $D | tail -7
.run/kvfoot export --model ${INIT:-models/kvfoot-small/model.gguf} --out .run/base.safetensors --force
PYTHONUNBUFFERED=1 python3 tools/pretrain/pretrain.py --tokenizer $T --data $D \
  --out .run/model --ckpt .run/ckpt-$MIX --init .run/base.safetensors --curriculum ${CURR:-1024:0.25,4096:1} \
  --train-seconds ${TS:-280} --max-seconds ${MS:-300} --lr 1e-3 --warmup 0.05 --min-lr-ratio 0.1 2>&1 | tee $OUT/cont.log | grep -v '^{' 
grep '^{' $OUT/cont.log | awk 'NR%10==0' | cut -c1-400 | tail -12
mkdir -p .run/new && .run/kvfoot export --model .run/model --type q8_0 --out .run/new/model.gguf --force
cp models/kvfoot-small/tokenizer.json models/kvfoot-small/tokenizer_config.json .run/model/training_log.jsonl .run/model/pretrain_args.json .run/new/
sha256sum .run/new/model.gguf
split -b 15M -d .run/new/model.gguf $OUT/gguf.
cp .run/new/training_log.jsonl .run/new/pretrain_args.json $OUT/
rm -rf .run/ev-$MIX # a folder of another model's results is refused
( time .run/kvfoot eval --device cuda --model .run/new --corpus .run/corpus/code --tasks all --lengths ${EVLEN:-3584} --samples 25 --methods full --out .run/ev-$MIX ) 2>&1 | tail -4
cp .run/ev-$MIX/report.md $OUT/ev-report.md; grep -A14 -i "full" .run/ev-$MIX/report.md | head -30
date -u
