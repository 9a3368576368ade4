#!/usr/bin/env bash
# The recipe of the shipped ST-VLA-S (assets/models/stvla-s), end to end:
#   1. record the demonstrations (CPU, ManiSkill3; ~40 min on 2 cores),
#   2. trace every step and pack it for training (CPU; ~6 min on 2 cores),
#   3. train from scratch (one GPU; the time budget fits a 10-minute lease, drop it elsewhere),
#   4. copy the exported model next to its model card.
# Each stage skips what an earlier run finished; set DATA/PACK/RUN to put them elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-data/stvla-sim}
PACK=${PACK:-.pack/stvla-sim-pack}
RUN=${RUN:-runs/stvla-s}
[ -f "$DATA/meta/info.json" ] || $PY -m stvla_core.data generate --out "$DATA" --episodes 200 --workers 2
[ -f "$PACK/meta.json" ] || $PY -m stvla_core.train prepare --dataset "$DATA" --out "$PACK" --modes C \
  --tracker-options '{"dense_stride": 8}' --workers 2
$PY -m stvla_core.train run --pack "$PACK" --run-dir "$RUN" --steps 20000 --batch-size 128 \
  --learning-rate 3e-4 --warmup-steps 500 --eval-every 1000 --checkpoint-every 2000 --log-every 100 \
  --time-budget-s "${TIME_BUDGET_S:-470}"
mkdir -p assets/models/stvla-s
cp "$RUN"/model/* assets/models/stvla-s/
