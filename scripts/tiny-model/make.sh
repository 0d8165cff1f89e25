#!/usr/bin/env bash
# The recipe of the bundled model, models/tiny-longlora/: re-runnable by anyone on Debian
# or Ubuntu (amd64) with Node.js ≥ 20 and this repository built (`npm ci`).
#
#   scripts/tiny-model/make.sh [WORK_DIR]        # default /tmp/longlora-tiny-model
#
# 1. fetch-kjv.sh        the King James Version from Debian's bible-kjv-text 4.38, decoded
#                        by the package's own `bible` program (SHA-256 pinned)
# 2. prepare-corpus.mjs  one document per book; 59 training books, 7 held out whole
# 3. train-tokenizer.mjs byte-fallback BPE, 2048 tokens, on the training books only
# 4. longlora tokenize   the two splits into uint16 token files (BOS, books joined by EOS)
# 5. longlora pretrain   a 1.4M-parameter Llama from random init, dense attention, 256 tokens
# 6. SHA256SUMS          of everything the folder ships
#
# Everything except step 5 is byte-for-byte deterministic. Step 5 is seeded (initial
# weights, data order), but the Wasm backend's multi-threaded float sums may round
# differently from machine to machine, so a re-run gives a model of the same quality, not
# necessarily the same bits (add PRETRAIN_ARGS="--backend cpu" for a bit-reproducible, much
# slower run). Takes about 25 minutes on 2 cores; Ctrl-C and re-running resumes step 5.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-/tmp/longlora-tiny-model}
model=${MODEL_DIR:-$root/models/tiny-longlora}
steps=${STEPS:-1200}
ll() { node "$root/dist/src/cli/main.js" "$@"; }
mkdir -p "$work" "$model/data"
[ -f "$root/dist/src/cli/main.js" ] || (cd "$root" && npm run -s build)

echo "== 1. corpus"
"$root/scripts/tiny-model/fetch-kjv.sh" "$work"
echo "== 2. clean and split"
node "$root/scripts/tiny-model/prepare-corpus.mjs" "$work"
echo "== 3. tokenizer"
node "$root/scripts/tiny-model/train-tokenizer.mjs" "$work" "$model" 2048
echo "== 4. token files"
ll tokenize "$work/kjv-train.jsonl" --tokenizer "$model" --output "$work/train.bin" --force
ll tokenize "$work/kjv-heldout.jsonl" --tokenizer "$model" --output "$work/heldout.bin" --force
cp "$work/train.bin" "$work/heldout.bin" "$model/data/"
echo "== 5. pretraining"
resume=()
[ -d "$work/pretrain" ] && ls "$work/pretrain" | grep -q '^checkpoint-' && resume=(--resume)
# shellcheck disable=SC2086
ll pretrain --tokenizer "$model" --data "$model/data/train.bin" --out "$model" --output "$work/pretrain" \
  --hidden-size 128 --layers 4 --heads 4 --intermediate-size 384 --context 256 --save-dtype f16 \
  --seq-len 256 --batch-size 16 --steps "$steps" --lr 3e-3 --schedule cosine --warmup-steps 100 --weight-decay 0.1 \
  --val-fraction 0.01 --eval-every 200 --save-every 100 --seed 42 "${resume[@]}" ${PRETRAIN_ARGS:-}
cp "$work/pretrain/metrics.jsonl" "$model/pretrain-metrics.jsonl"
echo "== 6. checksums"
(cd "$model" && sha256sum config.json model.safetensors tokenizer.json tokenizer_config.json data/train.bin data/heldout.bin > SHA256SUMS && cat SHA256SUMS)
