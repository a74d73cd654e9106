#!/usr/bin/env bash
# Runs every arm of examples/train_retriever.py for several seeds, one run after the other, and
# prints the table (examples/retriever_table.py). Finished runs (their JSON exists) are skipped,
# so the same command resumes an interrupted table.
#
#   examples/run_retriever_table.sh DATA_DIR OUT_DIR [SEEDS] [STEPS] [extra train_retriever.py args...]
#   e.g. nice -n 19 examples/run_retriever_table.sh /work/scratch/training/debian /work/scratch/training/table "0 1 2" 100
set -euo pipefail
DATA=${1:?data directory with train.jsonl and test.jsonl}
OUT=${2:?output directory}
SEEDS=${3:-"0 1 2"}
STEPS=${4:-100}
shift $(( $# < 4 ? $# : 4 ))
PY=${PYTHON:-$(dirname "$0")/../.venv/bin/python}
mkdir -p "$OUT"
for seed in $SEEDS; do
  for arm in in-batch mined mined+cluster mined+cluster+refresh; do
    res="$OUT/$arm-seed$seed.json"
    [ -f "$res" ] && continue
    "$PY" "$(dirname "$0")/train_retriever.py" --train "$DATA/train.jsonl" --eval "$DATA/test.jsonl" \
      --arm "$arm" --seed "$seed" --steps "$STEPS" --out "$res" --cache "$OUT/cache" "$@" \
      > "$OUT/$arm-seed$seed.stdout.log" 2>&1
  done
done
"$PY" "$(dirname "$0")/retriever_table.py" "$OUT"/*.json
