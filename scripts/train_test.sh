#!/usr/bin/env bash
# Environment check: a few training steps of a tiny fractal model, then one sample from its checkpoint.
# Checks that the corpus loads, the model runs forward and backward, checkpoints are written and sampling works.
#
#   bash scripts/train_test.sh                      # built-in Bach chorales, CPU or GPU (auto)
#   DATA=dataset/train.txt bash scripts/train_test.sh --device cuda
set -euo pipefail

FMUSIC=${FMUSIC:-fmusic}
OUTPUT_DIR=${OUTPUT_DIR:-outputs/train_test}
DATA_ARGS=()
if [[ -n "${DATA:-}" ]]; then DATA_ARGS+=(--train_data "$DATA"); fi
if [[ -n "${VAL_DATA:-}" ]]; then DATA_ARGS+=(--val_data "$VAL_DATA"); fi

"$FMUSIC" train \
    --repr pianoroll --generator mar --model-size tiny \
    "${DATA_ARGS[@]}" \
    --max-pieces "${MAX_PIECES:-16}" \
    --crop_length 64 \
    --train_batch_size 2 \
    --max_steps "${MAX_STEPS:-5}" \
    --warmup_steps 1 \
    --val_check_interval_steps 5 \
    --checkpoint_every_n_steps 5 \
    --output_dir "$OUTPUT_DIR" \
    "$@"

"$FMUSIC" sample "$OUTPUT_DIR/checkpoints/last.pt" --num-samples 1 --target-width 64 --seed 0 \
    --out-dir "$OUTPUT_DIR/samples" --to mid,png
echo "train_test: OK ($OUTPUT_DIR)"
