#!/usr/bin/env bash
# The recipe of the shipped ST-VLA-S (assets/models/stvla-s), end to end:
#   1. record the demonstrations (CPU, ManiSkill3; ~35 min on 2 cores for 3 x 300),
#   2. trace every step and pack it for training (CPU; ~18 min on 2 cores),
#   3. train (one GPU). Round 3 moved the camera closer and continued the round-2 model on the new
#      demonstrations (INIT=stvla-s, the weights shipped before; INIT= trains from scratch, as
#      round 2 did for 5009 steps); the time budget fits what was left of a leased GPU,
#   4. copy the exported model next to its model card.
# Each stage skips what an earlier run finished; set DATA/PACK/RUN to put them elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-data/stvla-sim}
PACK=${PACK:-.pack/stvla-sim-pack}
RUN=${RUN:-runs/stvla-s}
INIT=${INIT-stvla-s}
[ -f "$DATA/meta/info.json" ] || $PY -m stvla_core.data generate --out "$DATA" --episodes 300 --workers 2
[ -f "$PACK/meta.json" ] || $PY -m stvla_core.train prepare --dataset "$DATA" --out "$PACK" --modes C \
  --tracker-options '{"dense_stride": 8}' --workers 2
$PY -m stvla_core.train run --pack "$PACK" --run-dir "$RUN" --steps 20000 --batch-size 256 \
  --learning-rate 2e-4 --warmup-steps 60 --eval-every 400 --checkpoint-every 100000 --log-every 50 \
  ${INIT:+--init-from "$INIT"} --time-budget-s "${TIME_BUDGET_S:-135}"
mkdir -p assets/models/stvla-s
cp "$RUN"/model/* assets/models/stvla-s/
