#!/usr/bin/env bash
# Fractal model on 128 pitches x 512 time steps (32 bars of 4/4 in sixteenths), shown as 256x256 pictures in
# FractalMIDI (two 128x256 halves stacked). The level-0 transformer sees the real 8 x 32 grid of 16x16 patches.
#
#   bash scripts/train_256x256.sh
#   DATA=dataset/train.txt VAL_DATA=dataset/valid.txt bash scripts/train_256x256.sh --precision bf16 --grad_checkpoint
# Extra arguments are passed on to `fmusic train` (later options win).
set -euo pipefail

FMUSIC=${FMUSIC:-fmusic}
GENERATOR=${GENERATOR:-mar}
GENERATOR_TYPES=${GENERATOR_TYPES:-mar,mar,mar}   # levels 0-2
SCAN_ORDER=${SCAN_ORDER:-row_major}               # AR levels only: row_major | column_major
MODEL_SIZE=${MODEL_SIZE:-base}
OUTPUT_DIR=${OUTPUT_DIR:-outputs/fractalgen_256x256}
DATA_ARGS=()
if [[ -n "${DATA:-}" ]]; then DATA_ARGS+=(--train_data "$DATA"); fi
if [[ -n "${VAL_DATA:-}" ]]; then DATA_ARGS+=(--val_data "$VAL_DATA"); fi

"$FMUSIC" train \
    --repr pianoroll --generator "$GENERATOR" --model-size "$MODEL_SIZE" \
    "${DATA_ARGS[@]}" \
    --crop_length 512 \
    --augment_factor 1 \
    --pitch_shift_min -3 \
    --pitch_shift_max 3 \
    --train_batch_size 4 \
    --val_batch_size 4 \
    --max_steps 200000 \
    --lr 1e-4 \
    --warmup_steps 2000 \
    --weight_decay 0.05 \
    --grad_clip 3.0 \
    --accumulate_grad_batches 1 \
    --generator_types "$GENERATOR_TYPES" \
    --scan_order "$SCAN_ORDER" \
    --mask_ratio_loc 1.0 \
    --mask_ratio_scale 0.5 \
    --log_every_n_steps 50 \
    --val_check_interval_steps 2000 \
    --checkpoint_every_n_steps 5000 \
    --save_top_k 3 \
    --output_dir "$OUTPUT_DIR" \
    "$@"
