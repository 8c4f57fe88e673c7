#!/usr/bin/env bash
# The default pipeline on a GPU machine, each stage timed: make sft, rm, ppo, bcq (what
# `make ppo` + `make bcq` run from a fresh clone), then one table of the figures
# (bench/stage_summary.py). Precision `auto` resolves to bf16 on a bf16 GPU.
# It writes the default run folders under runs/, so it refuses to start over existing ones.
#   bash bench/cuda_stages.sh            # VENV=… as for make; STAGES="sft rm ppo" for a subset
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY="$VENV/bin/python"
for d in runs/sft/default runs/reward_model/default runs/ppo/default runs/bcq/default; do
  [[ -e $d ]] && { echo "$d exists: move runs/ aside first" >&2; exit 2; }
done
"$PY" - <<'PYEOF'
import torch
from common.models.precision import resolve_precision
name = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
print(f"device: {name}; precision auto -> {resolve_precision('auto')}; torch {torch.__version__}", flush=True)
PYEOF
times=()
for stage in ${STAGES:-sft rm ppo bcq}; do
  echo "=== make $stage"
  start=$SECONDS
  make --no-print-directory "$stage" VENV="$VENV" || { echo "make $stage failed" >&2; break; }
  times+=("$stage=$((SECONDS - start))")
  echo "=== make $stage: $((SECONDS - start)) s"
done
"$PY" bench/stage_summary.py runs --times "${times[@]}"
