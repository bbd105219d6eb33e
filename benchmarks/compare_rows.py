"""Two runs of the unseen-camera benchmark on the same images, compared pair by pair.

Reads the per-image rows that ``bench_unseen_cameras.py`` caches (one folder
per method under ``CACHE/results/BENCH_ID/``), and prints, per variant, each
run's p-mAP and detection AP (with ``--score-method``) and their paired
differences (``bench_test_time.paired_differences``: the same resampled
images for both)::

    python benchmarks/compare_rows.py CACHE/results/seed0-n60-max1024/RUN_A CACHE/results/seed0-n60-max1024/RUN_B \\
        --folds 0 1 --score-method heatmap_p95

``--by-splice-side`` also splits the spliced images by the side of their
splice (the square root of the mask's area, read from the benchmark's own
``CACHE/splices/BENCH_ID/foldK/masks``) and gives, per band, both runs' mean
p-mAP and their paired difference with a bootstrap interval over images.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

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


def splice_side(splices: Path, fold: int, name: str) -> float:
    """A spliced image's splice side in pixels: the square root of its mask's area (``splices/foldK/masks``)."""
    from PIL import Image

    mask = np.asarray(Image.open(splices / f"fold{fold}" / "masks" / f"{Path(name).stem}.png"))
    return float(np.sqrt((mask > 0).sum()))


def by_splice_side(run: Path, reference: Path, folds: list[int], variants: list[str], edges: list[int],
                   n_boot: int) -> list[tuple]:
    """Per band of splice side: images, mean p-mAP of both runs, mean paired difference and its 95 % interval."""
    splices = run.parent.parent.parent / "splices" / run.parent.name  # RUN is CACHE/results/BENCH_ID/RUN
    side, a, b = [], [], []
    for v in variants:
        for k in folds:
            theirs = {r["name"]: r for r in load_rows(reference, [k], v)}
            for r in load_rows(run, [k], v):
                if r["label"] == 1:
                    side.append(splice_side(splices, k, r["name"]))
                    a.append(r["pmap"])
                    b.append(theirs[r["name"]]["pmap"])
    side, a, b = map(np.asarray, (side, a, b))
    rng = np.random.default_rng(0)
    bands = []
    for lo, hi in zip([0, *edges], [*edges, np.inf]):
        inside = (side >= lo) & (side < hi)
        if not inside.any():
            continue
        d = a[inside] - b[inside]
        boots = d[rng.integers(0, len(d), (n_boot, len(d)))].mean(1)
        bands.append((lo, hi, len(d), a[inside].mean(), b[inside].mean(), d.mean(),
                      np.quantile(boots, [0.025, 0.975])))
    return bands


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the run to judge: a method's folder of cached rows")
    parser.add_argument("reference", type=Path, help="the run it is compared with, on the same images")
    parser.add_argument("--folds", type=int, nargs="+", required=True)
    parser.add_argument("--variants", nargs="+", default=["png", "jpeg90"])
    parser.add_argument("--score-method", default="mean")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--by-splice-side", action="store_true",
                        help="also split the spliced images' p-mAP by splice side (variants pooled)")
    parser.add_argument("--side-edges", type=int, nargs="+", default=[300, 400, 500], help="band edges, px")
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
    if args.by_splice_side:
        print(f"\nBy splice side ({', '.join(args.variants)} pooled), run - reference:\n\n"
              "| splice side | images | run p-mAP | reference p-mAP | difference |\n|---|---|---|---|---|")
        for lo, hi, n, a, b, d, ci in by_splice_side(args.run, args.reference, args.folds, args.variants,
                                                     args.side_edges, args.bootstrap):
            band = f"{lo}-{hi} px" if np.isfinite(hi) else f"{lo} px and over"
            print(f"| {band} | {n} | {a:.3f} | {b:.3f} | {d:+.3f} {_ci(list(ci))} |")


if __name__ == "__main__":
    main()
