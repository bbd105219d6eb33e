#!/bin/bash
# Prepared for a lent GPU machine (issue 18, fast mode's accuracy): train the SRM recipe's fold-0 model
# with patch_context 128 (the `small` trunk's margin: each 64-px patch seen in a 320-px view, what fast
# mode computes; too slow for a CPU: docs/benchmarks.md), then score fold 0 in exact and fast mode on the
# unseen-camera benchmark and compare the two runs image by image. Rerunning resumes the training from its
# checkpoints. Run from the repository root with the project installed, e.g. through the device tool:
#   bash benchmarks/gpu_context_check.sh ../shared/data 2400     (results under $OUT if set)
# STEPS: 2400 to compare with docs/benchmarks.md's context-32/64 rows; N: spliced images per fold.
set -u
DATA=${1:-../shared/data}
STEPS=${2:-2400}
N=${N:-60}
OUT=${OUT:-/tmp/gpu-context}
WORK=${WORK:-/tmp/gpu-context-work}   # checkpoints and generated images stay here, not under $OUT
mkdir -p "$OUT" "$WORK"
export HF_HUB_OFFLINE=1
python recipes/fold_training.py --data "$DATA" --out "$WORK/ckpt" --recipe small-srm --folds 0 --steps "$STEPS" \
  --set patch_context=128 2>&1 | tail -3 | tee "$OUT/train.txt"
[ -f "$WORK/ckpt/fold0/fold_summary.json" ] || { echo "training not finished: rerun to resume"; exit 1; }
cp "$WORK/ckpt/fold0/train_log.jsonl" "$WORK/ckpt/fold0/fold_summary.json" "$OUT/"
for mode in exact fast; do
  python benchmarks/bench_unseen_cameras.py --data "$DATA" --cache "$WORK/cache" --n-per-fold "$N" --folds 0 \
    --methods model --fold-models "$WORK/ckpt/fold{k}" --mode "$mode" --score-method heatmap_p95 \
    --out-json "$OUT/bench_$mode.json" 2>&1 | tail -6 | tee "$OUT/bench_$mode.txt"
done
RESULTS=$(ls -d "$WORK/cache/results/seed0-n$N-max1024"/*_fold_k* | sort)
python benchmarks/compare_rows.py $(echo "$RESULTS" | grep '_fast$') $(echo "$RESULTS" | grep -v '_fast$') \
  --folds 0 --score-method heatmap_p95 2>&1 | tee "$OUT/fast_vs_exact.txt"
