"""Test-time options on the unseen-camera benchmark (issue 14 item 4).

On the images of ``bench_unseen_cameras.py`` (same folds, same splices, same
cache), one model per fold is run with:

* grid density: ``num_per_dim`` patches per side (the paper's 30 and others);
* multi-scale averaging: the heatmap of the photo averaged with that of the
  photo downscaled by ``--scales`` (area filter), upsampled back; the mask is
  the 2-means split of the averaged heatmap, the detection score the mean of
  the scales' scores;
* every detection score of :data:`exifclip.splice.postprocessing.DETECTION_SCORES`
  (the paper's mean pairwise inconsistency and the heatmap-based ones).

Each image is embedded once per (grid, scale); every row of the table comes
from those embeddings. Per-image rows are cached beside the benchmark's.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_test_time.py --data ../shared/data --cache /work/cache/issue14 \\
        --folds 0 --fold-models '/work/ckpt/issue14/recipe-small-aug/fold{k}' --grids 20 30 40 --scales 0.5 \\
        --out-json test_time.json --out-md test_time.md
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_unseen_cameras import (  # noqa: E402
    DEFAULT_SPLIT,
    METRICS,
    build_fold_splices,
    file_cameras,
    fold_samples,
    load_split,
    summarise,
)


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    from PIL import Image

    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.BOX))


def _upsample(heatmap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(heatmap.astype(np.float32), mode="F").resize(shape[::-1], Image.BILINEAR))


def _combine(results: list, shape: tuple[int, int]):
    """One result from several scales: mean heatmap, its 2-means mask, mean of each detection score."""
    from types import SimpleNamespace

    from exifclip.splice.postprocessing import split_two_means

    heatmap = np.mean([_upsample(r.heatmap, shape) if r.heatmap.shape != shape else r.heatmap for r in results], 0)
    step = max(1, int(np.sqrt(heatmap.size / 65536)))  # 2-means on a subsample: the threshold, not every pixel
    sample = heatmap[::step, ::step].ravel()
    split = split_two_means(sample)
    mask = heatmap > (sample[~split].max() if split.any() and (~split).any() else np.inf)
    scores = {name: float(np.mean([r.scores[name] for r in results])) for name in results[0].scores}
    return SimpleNamespace(heatmap=heatmap, mask=mask, score=scores["mean"], scores=scores)


def score_image(embedders: dict, image: np.ndarray, scales: list[float]) -> dict:
    """Results of one image for every (grid, scale set): ``{config: result}`` plus seconds per config."""
    from exifclip.splice.postprocessing import localize_embeddings

    out, seconds = {}, {}
    for grid, embedder in embedders.items():
        per_scale = {}
        for scale in [1.0, *scales]:
            start = time.perf_counter()
            item = embedder.transform_patches([image if scale == 1.0 else _resize(image, scale)])[0]
            per_scale[scale] = localize_embeddings(item.embeddings, item.grid)
            seconds[(grid, scale)] = time.perf_counter() - start
        out[f"grid {grid}"] = (per_scale[1.0], seconds[(grid, 1.0)])
        for scale in scales:
            combined = _combine([per_scale[1.0], per_scale[scale]], image.shape[:2])
            out[f"grid {grid}, scales 1+{scale:g}"] = (combined, seconds[(grid, 1.0)] + seconds[(grid, scale)])
    return out


def run_fold(model_dir: str, samples: list[dict], grids: list[int], scales: list[float]) -> dict[str, list[dict]]:
    """Per-config per-image rows: the metrics of evaluate_localization, every detection score, seconds."""
    from PIL import Image

    from exifclip import ExifPatchEmbedder, evaluate_localization, load_image

    embedders = {g: ExifPatchEmbedder(model=model_dir, device="cpu", num_per_dim=g).fit() for g in grids}
    rows: dict[str, list[dict]] = {}
    for s in samples:
        image = load_image(s["image"])
        mask = None if s["mask"] is None else np.asarray(Image.open(s["mask"]).convert("L")) > 0
        for config, (result, seconds) in score_image(embedders, image, scales).items():
            report = evaluate_localization([result], [mask], labels=[s["label"]], names=[s["name"]])
            row = {k: v for k, v in report.per_image[0].items() if k != "index"}
            row.update(seconds=seconds, scores=result.scores, host_camera=s["host_camera"],
                       donor_camera=s["donor_camera"])
            rows.setdefault(config, []).append(row)
    return rows


def paired_differences(rows: list[dict], reference: list[dict], n_boot: int = 1000, seed: int = 0,
                       score_method: str = "mean") -> dict:
    """p-mAP and detection-AP (of ``score_method``) differences from ``reference`` on the same images, with
    paired bootstrap 95 % intervals (the same resampled images for both; spliced and authentic apart)."""
    from exifclip.splice.metrics import detection_ap

    labels = np.array([r["label"] for r in reference], int)
    if [r["name"] for r in rows] != [r["name"] for r in reference]:
        raise ValueError("paired differences need the same images in the same order")
    spl, aut = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    rng = np.random.default_rng(seed)
    draws_s, draws_a = rng.integers(0, len(spl), (n_boot, len(spl))), rng.integers(0, len(aut), (n_boot, len(aut)))
    diff = np.array([rows[i]["pmap"] - reference[i]["pmap"] for i in spl])
    score = np.array([r["scores"][score_method] for r in rows])
    ref_score = np.array([r["scores"][score_method] for r in reference])
    ap_boot = []
    for ds, da in zip(draws_s, draws_a):
        idx = np.concatenate([spl[ds], aut[da]])
        ap_boot.append(detection_ap(score[idx], labels[idx]) - detection_ap(ref_score[idx], labels[idx]))

    def pack(point, boots):
        lo, hi = np.percentile(boots, [2.5, 97.5])
        return {"value": round(float(point), 4), "ci95": [round(float(lo), 4), round(float(hi), 4)]}

    return {"pmap": pack(diff.mean(), diff[draws_s].mean(1)),
            "detection_ap": pack(detection_ap(score, labels) - detection_ap(ref_score, labels), ap_boot)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--split", default=str(DEFAULT_SPLIT))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", required=True, help="the cache of bench_unseen_cameras.py (images are reused)")
    parser.add_argument("--n-per-fold", type=int, default=60)
    parser.add_argument("--max-size", type=int, default=1024)
    parser.add_argument("--folds", type=int, nargs="+", default=[0])
    parser.add_argument("--variants", nargs="*", default=["png", "jpeg90"])
    parser.add_argument("--fold-models", required=True, help="directory pattern with {k}")
    parser.add_argument("--grids", type=int, nargs="+", default=[30], help="num_per_dim values")
    parser.add_argument("--scales", type=float, nargs="*", default=[0.5], help="extra scales to average with 1")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out-json")
    parser.add_argument("--out-md")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    data, cache = Path(args.data), Path(args.cache)
    split = load_split(Path(args.split))
    cameras = file_cameras(data)
    bench_id = f"seed{args.seed}-n{args.n_per_fold}-max{args.max_size}"
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", args.fold_models).strip("_")
    tag = "g" + "-".join(map(str, args.grids)) + "_s" + "-".join(f"{s:g}" for s in args.scales)
    rows: dict[tuple[str, str], list[dict]] = {}
    for k in args.folds:
        root = build_fold_splices(split, k, data, cache, args.n_per_fold, args.seed, args.max_size)
        for v in args.variants:
            path = cache / "results" / bench_id / "test-time" / slug / f"fold{k}-{v}-{tag}.json"
            if path.is_file():
                by_config = json.loads(path.read_text())
            else:
                start = time.perf_counter()
                by_config = run_fold(args.fold_models.format(k=k), fold_samples(root, v, cameras, args.n_per_fold),
                                     args.grids, args.scales)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(by_config))
                print(f"fold {k} {v}: {time.perf_counter() - start:.0f} s", flush=True)
            for config, config_rows in by_config.items():
                rows.setdefault((v, config), []).extend(config_rows)

    table = []
    for (v, config), config_rows in rows.items():
        for score_name in config_rows[0]["scores"]:
            scored = [dict(r, score=r["scores"][score_name]) for r in config_rows]
            table.append({"variant": v, "config": config, "detection_score": score_name,
                          **summarise(scored, args.bootstrap, args.seed)})
    head = ("| variant | test-time setting | detection score | " + " | ".join(METRICS) + " | s / image |\n"
            "|---|---|---|" + "---|" * len(METRICS) + "---|")
    lines = [head]
    for t in table:
        cells = [f"{t[m]['value']:.3f} [{t[m]['ci95'][0]:.2f}, {t[m]['ci95'][1]:.2f}]"
                 if t[m]["value"] is not None and t[m]["ci95"] else "n/a" for m in METRICS]
        lines.append(f"| {t['variant']} | {t['config']} | {t['detection_score']} | " + " | ".join(cells)
                     + f" | {t['s_per_image']} |")
    reference = f"grid {30 if 30 in args.grids else args.grids[0]}"
    lines += ["", f"Paired differences from `{reference}` with the mean score (same images, paired bootstrap):", "",
              "| variant | test-time setting | p-mAP difference | detection AP difference |", "|---|---|---|---|"]
    paired = []
    for (v, config), config_rows in rows.items():
        d = paired_differences(config_rows, rows[(v, reference)], args.bootstrap, args.seed)
        paired.append({"variant": v, "config": config, **d})
        cells = [f"{d[m]['value']:+.3f} [{d[m]['ci95'][0]:+.3f}, {d[m]['ci95'][1]:+.3f}]"
                 for m in ("pmap", "detection_ap")]
        lines.append(f"| {v} | {config} | " + " | ".join(cells) + " |")
    md = "\n".join(lines)
    print(md)
    if args.out_json:
        Path(args.out_json).write_text(json.dumps({"args": vars(args), "table": table, "paired": paired}, indent=1))
    if args.out_md:
        Path(args.out_md).write_text(md + "\n")


if __name__ == "__main__":
    main()
