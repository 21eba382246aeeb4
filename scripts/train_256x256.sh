#!/usr/bin/env bash
# Fractal model on 128 pitches x 512 time steps (32 bars of 4/4 in sixteenths), shown as 256x256 pictures in
# FractalMIDI (two 128x256 halves stacked). The level-0 transformer sees the real 8 x 32 grid of 16x16 patches.
#
#   bash scripts/train_256x256.sh
#   DATA=dataset/train.txt VAL_DATA=dataset/valid.txt bash scripts/train_256x256.sh --precision bf16 --grad_checkpoint
# The settings are train_128x128.sh's with a wider crop, a smaller batch and the base model; the same environment
# variables apply. Extra arguments are passed on to `fmusic train` (later options win).
set -euo pipefail

export MODEL_SIZE=${MODEL_SIZE:-base}
export OUTPUT_DIR=${OUTPUT_DIR:-outputs/fractalgen_256x256}
exec bash "$(dirname "$0")/train_128x128.sh" \
    --crop_length 512 \
    --train_batch_size 4 \
    --val_batch_size 4 \
    "$@"
