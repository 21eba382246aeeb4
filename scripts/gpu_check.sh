#!/usr/bin/env bash
# GPU checks of the CLI paths (docs/BENCHMARKS.md, "GPU checks"), run from the repository root on a CUDA machine
# with fractalmusic installed:
#
#     OUT=/tmp/gpu-check bash scripts/gpu_check.sh
#
# In order of priority, each step under its own time limit: one process through the elastic launcher (nccl) and its
# resume, fp16 autocast with the grad scaler, grad-checkpointing memory of the default MAR, bf16 MAR training by
# wall clock with sampling and note statistics, the README folk job by wall clock, then the test suite with CUDA
# present. Everything goes to stdout; runs are kept under $OUT/runs. DEV=cpu and SHORT=1 make a quick dry run.
set -u
OUT=${OUT:-/tmp/gpu-check}
DEV=${DEV:-cuda}
SHORT=${SHORT:-0}
W=${RUNS:-$OUT/runs}
mkdir -p "$W"
export PYTHONUNBUFFERED=1
START=$SECONDS
LIMIT=${LIMIT:-470}  # seconds for the whole script; the test suite gets what is left

step() {  # step SECONDS NAME CMD...: run CMD under a limit, print its exit status and wall time
    local limit=$1 name=$2 t=$SECONDS
    shift 2
    echo "=== $name"
    timeout "$limit" "$@"
    echo "--- $name: rc $? in $((SECONDS - t)) s"
}
last_train() {  # the last train record of a run: step, loss, lr and the CUDA peak
    python3 - "$1" <<'EOF'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")]
tr = [r for r in recs if r.get("split") == "train"]
va = [r for r in recs if r.get("split") == "val"]
peak = max((r.get("lr", 0) for r in tr), default=0)
keys = ("step", "loss", "lr", "units_per_s", "loss_scale", "cuda_peak_gb", "elapsed_s")
print("last train:", {k: tr[-1][k] for k in keys if k in tr[-1]}, "lr/peak %.3f" % (tr[-1]["lr"] / peak if peak else 0))
print("max cuda_peak_gb:", max((r.get("cuda_peak_gb", 0) for r in tr), default=None))
if va:
    print("last val:", {k: va[-1][k] for k in ("step", "loss", "bits_per_unit") if k in va[-1]})
EOF
}

if [ "$DEV" = cuda ]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
python3 -c "import torch, symusic, music21; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'symusic', symusic.__version__, 'music21', music21.__version__)"
S=20; B=64; C=256; G=6
[ "$SHORT" = 1 ] && { S=3; B=4; C=64; G=2; }

# 1. --devices through torch's elastic launcher: one process (nccl on CUDA), then resume from its checkpoint
if [ "$DEV" = cuda ]; then DEVS="0,"; else DEVS=1; fi
step 120 "devices $DEVS" fmusic train --devices "$DEVS" --device "$DEV" --repr abc --generator lstm --hidden-size 32 \
    --max-steps $S --max-pieces 200 --output-dir "$W/dev"
step 120 "devices 1, resume" fmusic train --devices 1 --device "$DEV" --repr abc --generator lstm --hidden-size 32 \
    --max-steps $((2 * S)) --max-pieces 200 --output-dir "$W/dev" --resume-from-checkpoint last
last_train "$W/dev"

# 2. fp16 autocast + grad scaler on the default MAR
if [ "$DEV" = cuda ]; then
    step 150 "mar fp16" fmusic train --repr pianoroll --generator mar --device "$DEV" --precision 16 --max-steps 40 \
        --log-every-n-steps 10 --output-dir "$W/mar16"
    last_train "$W/mar16"
fi

# 3. grad checkpointing: peak memory of the default MAR at batch 64, crop 256, with and without
for gc in no-grad-checkpoint grad-checkpoint; do
    step 120 "mar $gc" fmusic train --repr pianoroll --generator mar --device "$DEV" --precision bf16 --max-steps $G \
        --batch-size $B --crop-length $C --max-crop-length $C --log-every-n-steps $((G / 2)) --"$gc" --output-dir "$W/mar-$gc"
    last_train "$W/mar-$gc"
done

# 4. bf16 MAR by wall clock, sampled with the checkpoint's recommendations, note statistics against held-out pieces
M=1.5; [ "$SHORT" = 1 ] && M=0.2
step 60 "split" fmusic data prepare --repr pianoroll --write-split "$W/split"
step 240 "mar bf16 $M min" fmusic train --repr pianoroll --generator mar --device "$DEV" --precision bf16 \
    --max-minutes $M --output-dir "$W/mar"
last_train "$W/mar"
step 120 "mar sample" fmusic sample "$W/mar/checkpoints/last.pt" --num-samples 16 --seed 1 --out-dir "$W/mar-samples"
step 90 "mar evaluate" fmusic evaluate --generated "$W/mar-samples" --reference "$W/split/valid.txt"

# 5. the README folk job on the GPU, one minute: the schedule must end annealed whatever the step rate
step 150 "folk 1 min" fmusic train --repr abc --generator lstm --device "$DEV" --max-minutes 1 --output-dir "$W/folk"
last_train "$W/folk"
step 90 "folk sample" fmusic sample "$W/folk/checkpoints/last.pt" --num-samples 30 --seed 1 --out-dir "$W/folk-samples"
python3 scripts/folk_quality.py bars "$W/folk-samples"

# 6. the test suite with CUDA present (auto devices pick the GPU), in what time is left
left=$((LIMIT - (SECONDS - START)))
if [ "$left" -gt 30 ]; then
    step "$left" "pytest" python3 -m pytest -q -p no:cacheprovider -x -n 8 tests
fi
echo "=== done in $((SECONDS - START)) s"
