#!/usr/bin/env bash
# The depth-input ablation (results/ablation), end to end:
#   1. one training pack with every depth input (CPU; the 624-demonstration dataset of
#      scripts/train_stvla_s.sh, tracked three times: buffers 30, 7 and 15),
#   2. one model per input at equal steps, several in parallel on one GPU (recipe:
#      results/ablation/recipe.json, the shipped ST-VLA-S's); on a leased GPU, run the rows in two
#      calls and `python -m stvla_core.train unbundle` the parts each call returns,
#   3. closed-loop evaluation of every row on the same held-out seeds (CPU),
#   4. the comparison table.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-data/stvla-sim}
PACK=${PACK:-.pack/abl}
RUNS=${RUNS:-runs/ablation}
EPISODES=${EPISODES:-20}
MODES=(none raw A B C C@7 C@15)
[ -f "$PACK/meta.json" ] || $PY -m stvla_core.train prepare --dataset "$DATA" --out "$PACK" \
  --modes "${MODES[@]}" --tracker-options '{"dense_stride": 8}' --workers 2
$PY -m stvla_core.train rows --config results/ablation/recipe.json --pack "$PACK" --runs-root "$RUNS" \
  --modes "${MODES[@]}"
for m in "${MODES[@]}"; do
  row=${m/@/-b}
  for task in PickCube-v1 PushCube-v1 PullCube-v1; do
    [ -f "results/ablation/eval/$row/$task/results.json" ] || $PY -m stvla_core.evaluation closed-loop \
      --tasks "$task" --episodes "$EPISODES" --no-video --policy stvla \
      --policy-kwargs "{\"checkpoint\": \"$RUNS/$row/model\"}" --run-name "$m" --out "results/ablation/eval/$row/$task"
  done
done
$PY -m stvla_core.evaluation compare \
  results/ablation/eval/{none,raw,A,B,C,C-b7,C-b15}/{PickCube-v1,PushCube-v1,PullCube-v1} --first 20 --out results/ablation
