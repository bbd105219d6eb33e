"""Two runs of the unseen-camera benchmark on the same images, compared pair by pair.

Reads the per-image rows that ``bench_unseen_cameras.py`` caches (one folder
per method under ``CACHE/results/BENCH_ID/``), and prints, per variant, each
run's p-mAP and detection AP (with ``--score-method``) and their paired
differences (``bench_test_time.paired_differences``: the same resampled
images for both)::

    python benchmarks/compare_rows.py CACHE/results/seed0-n60-max1024/RUN_A CACHE/results/seed0-n60-max1024/RUN_B \\
        --folds 0 1 --score-method heatmap_p95
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_test_time import paired_differences  # noqa: E402
from bench_unseen_cameras import summarise, with_score_method  # noqa: E402


def _ci(interval: list[float] | None) -> str:
    return "" if interval is None else f"[{interval[0]:+.3f}, {interval[1]:+.3f}]"


def load_rows(folder: Path, folds: list[int], variant: str) -> list[dict]:
    """The cached rows of ``folds`` for one variant, in the benchmark's order."""
    rows = []
    for k in folds:
        rows.extend(json.loads((folder / f"fold{k}-{variant}.json").read_text()))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the run to judge: a method's folder of cached rows")
    parser.add_argument("reference", type=Path, help="the run it is compared with, on the same images")
    parser.add_argument("--folds", type=int, nargs="+", required=True)
    parser.add_argument("--variants", nargs="+", default=["png", "jpeg90"])
    parser.add_argument("--score-method", default="mean")
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args()

    print(f"| variant | run | p-mAP | detection AP ({args.score_method}) |\n|---|---|---|---|")
    differences = []
    for v in args.variants:
        rows, reference = (load_rows(folder, args.folds, v) for folder in (args.run, args.reference))
        for folder, r in ((args.run, rows), (args.reference, reference)):
            t = summarise(with_score_method(r, args.score_method, folder.name), args.bootstrap)
            print(f"| {v} | {folder.name} | {t['pmap']['value']:.3f} {_ci(t['pmap']['ci95'])} "
                  f"| {t['detection_ap']['value']:.3f} {_ci(t['detection_ap']['ci95'])} |")
        differences.append((v, paired_differences(rows, reference, args.bootstrap, score_method=args.score_method)))
    print("\nPaired differences, run - reference:\n\n| variant | p-mAP | detection AP |\n|---|---|---|")
    for v, d in differences:
        print(f"| {v} | {d['pmap']['value']:+.3f} {_ci(d['pmap']['ci95'])} "
              f"| {d['detection_ap']['value']:+.3f} {_ci(d['detection_ap']['ci95'])} |")


if __name__ == "__main__":
    main()
