"""Unseen-camera splice benchmark: leave camera models out, 5 folds (issue 14).

All camera models of ``digicam`` and ``cameras-extra`` (merged by normalised
make and model) are split into 5 folds by camera model, deterministically for
a seed and balanced in photos (:func:`make_split`, written to JSON so that
training recipes use the same folds: :func:`fold_photos`). For every fold,
:func:`exifclip.splice.synthetic.make_splices` builds splices whose host and donor
both come from that fold's cameras (two different models; region 5-35 % of
the crop, pasted at the same place without resampling) and as many authentic
crops, in PNG and JPEG-90. Methods, on the same images:

* ``--model`` (default ``exifclip-small``), or ``--fold-models PATTERN`` with
  ``{k}`` for the fold: fold ``k`` is scored by a model that never saw its
  cameras;
* the random-init ``small`` architecture;
* Splicebuster (Cozzolino, Poggi, Verdoliva, WIFS 2015), our implementation
  from the paper (``baseline_splicebuster.py``), with its two-class EM as two
  Gaussians (``splicebuster-gg``) and as Gaussian + uniform (``splicebuster-gu``);
* the noise-variance baseline of ``bench_default_model.py``.

Metrics (exifclip's own): p-mAP, cIoU, F1, MCC, detection AP, each with a
bootstrap 95 % interval (images resampled within each class), PNG and JPEG-90
apart, plus seconds per image. ``exifclip-small`` was trained on 29 digicam
models: every table is also given on the images whose cameras (host and
donor) it never saw.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_unseen_cameras.py --data ../shared/data \\
        --cache /work/cache/issue14 --out-json unseen.json --out-md unseen.md
"""

from __future__ import annotations

import argparse
import csv
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
sys.path.insert(0, str(HERE.parent / "recipes"))
from baseline_splicebuster import splicebuster_localize  # noqa: E402
from bench_default_model import noise_residual_localize  # noqa: E402
from exifclip_small import split as small_recipe_split  # noqa: E402

DATASETS = ("digicam", "cameras-extra")
DEFAULT_SPLIT = HERE / "unseen_camera_folds.json"
METRICS = ("pmap", "ciou", "f1", "mcc", "detection_ap")
_MAKE_WORDS = {"corporation", "corp", "company", "co", "ltd", "inc", "optical", "imaging", "electronics"}
#: One camera sold under regional names: its EXIF Model differs, its hardware and pipeline do not.
CAMERA_ALIASES = {
    "canon|eos rebel t3i": "canon|eos 600d", "canon|eos kiss x5": "canon|eos 600d",
    "canon|eos rebel t6": "canon|eos 1300d", "canon|eos kiss x80": "canon|eos 1300d",
    "canon|eos rebel t5i": "canon|eos 700d", "canon|eos rebel t2i": "canon|eos 550d",
    "canon|eos rebel t1i": "canon|eos 500d", "canon|eos rebel sl1": "canon|eos 100d",
    "canon|eos 350d digital": "canon|eos digital rebel xt",
}


# -- the fold split -----------------------------------------------------------------------------


def normalise_camera(make: str, model: str) -> str:
    """A key that merges the spellings of one camera model across data sets.

    Case, spacing and corporate suffixes of the make are dropped, and the make
    is removed from the front of the model (``("Canon", "Canon EOS 600D")``
    and ``("CANON INC.", "EOS 600D")`` both give ``"canon|eos 600d"``);
    regional names of one camera are merged (:data:`CAMERA_ALIASES`: the
    EOS REBEL T3i is the EOS 600D).
    """
    words = [w for w in re.split(r"[\s,.]+", make.casefold()) if w and w not in _MAKE_WORDS]
    make_key = " ".join(words)
    model_key = " ".join(model.casefold().split())
    for prefix in (make_key, words[0] if words else ""):
        if prefix and model_key.startswith(prefix + " "):
            model_key = model_key[len(prefix) + 1:]
            break
    key = f"{make_key}|{model_key}"
    return CAMERA_ALIASES.get(key, key)


def read_photos(data: Path) -> tuple[list[dict], list[str]]:
    """Every photo of the data sets with its camera key; and the files left out (no camera model)."""
    photos, excluded = [], []
    for name in DATASETS:
        with open(data / name / "MANIFEST.csv", newline="") as fh:
            for row in csv.DictReader(fh):
                rel = f"{name}/{row['file']}"
                if not row["model"].strip():
                    excluded.append(rel)
                    continue
                photos.append({"file": rel, "camera": normalise_camera(row["make"], row["model"])})
    return photos, excluded


def make_split(data: Path, n_folds: int = 5, seed: int = 0) -> dict:
    """Camera models in ``n_folds`` folds, balanced in photos: seeded order, then greedy.

    Cameras are taken from the most to the fewest photos (ties in a seeded
    random order), each into the fold with the fewest photos so far (then the
    fewest models, then the lowest index).
    """
    photos, excluded = read_photos(data)
    by_camera: dict[str, list[str]] = {}
    for p in photos:
        by_camera.setdefault(p["camera"], []).append(p["file"])
    cameras = sorted(by_camera)
    tie = np.random.default_rng(seed).permutation(len(cameras))
    order = sorted(range(len(cameras)), key=lambda i: (-len(by_camera[cameras[i]]), tie[i]))
    folds: list[list[str]] = [[] for _ in range(n_folds)]
    load = [0] * n_folds
    for i in order:
        k = min(range(n_folds), key=lambda f: (load[f], len(folds[f]), f))
        folds[k].append(cameras[i])
        load[k] += len(by_camera[cameras[i]])
    return {
        "description": "Leave-camera-models-out folds of digicam + cameras-extra (bench_unseen_cameras.py); "
                       "files are relative to the data root (../shared/data)",
        "n_folds": n_folds, "seed": seed, "datasets": list(DATASETS), "excluded_no_model": sorted(excluded),
        "folds": [{"fold": k, "cameras": sorted(cams),
                   "files": sorted(f for c in cams for f in by_camera[c]), "n_photos": load[k]}
                  for k, cams in enumerate(folds)],
    }


def load_split(path: Path = DEFAULT_SPLIT) -> dict:
    return json.loads(Path(path).read_text())


def fold_photos(split: dict, k: int, data: Path) -> tuple[list[str], list[str]]:
    """Training photos (the other folds) and test photos of fold ``k``, as absolute paths."""
    data = Path(data).resolve()
    test = [str(data / f) for f in split["folds"][k]["files"]]
    train = [str(data / f) for j, fold in enumerate(split["folds"]) if j != k for f in fold["files"]]
    return sorted(train), sorted(test)


def file_cameras(data: Path) -> dict[str, str]:
    """Camera key of every photo (``dataset/file`` -> key)."""
    photos, _ = read_photos(data)
    return {p["file"]: p["camera"] for p in photos}


def small_training_cameras(data: Path) -> set[str]:
    """Camera keys of the photos ``exifclip-small`` was trained on (``recipes/exifclip_small.py``)."""
    train, _, _ = small_recipe_split(data / "digicam")
    names = {Path(f).name for f in train}
    with open(data / "digicam" / "MANIFEST.csv", newline="") as fh:
        return {normalise_camera(r["make"], r["model"]) for r in csv.DictReader(fh) if r["file"] in names}


# -- the test images ------------------------------------------------------------------------------


def build_fold_splices(split: dict, k: int, data: Path, cache: Path, n: int, seed: int,
                       max_size: int = 1024) -> Path:
    """Splices and authentic crops from the cameras of fold ``k`` only (cached).

    :func:`exifclip.make_splices` tells cameras apart by their EXIF model
    string, so it may pair two regional names of one camera
    (:data:`CAMERA_ALIASES`); it is asked for a few more images than ``n`` and
    :func:`fold_samples` keeps the first ``n`` valid ones.
    """
    from exifclip import make_splices

    photo_dir = cache / "photos" / f"fold{k}"
    photo_dir.mkdir(parents=True, exist_ok=True)
    for f in split["folds"][k]["files"]:
        link = photo_dir / f.replace("/", "__")
        if not link.exists():
            link.symlink_to((Path(data) / f).resolve())
    out = cache / "splices" / f"seed{seed}-n{n}-max{max_size}" / f"fold{k}"
    if not (out / "manifest.csv").is_file():
        n_make = n + _margin(n)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            make_splices(photo_dir, out, n=n_make, seed=seed + k, jpeg_quality=90, n_authentic=n_make,
                         max_size=max_size, min_area=0.05, max_area=0.35)
    return out


def _margin(n: int) -> int:
    return max(4, n // 10)


def fold_samples(root: Path, variant: str, cameras: dict[str, str], n: int) -> list[dict]:
    """The fold's first ``n`` spliced and ``n`` authentic images of one variant, with camera keys.

    Spliced images whose host and donor turn out to be one camera model
    (under :func:`normalise_camera`) are skipped.
    """
    from exifclip import load_dataset

    with open(root / "manifest.csv", newline="") as fh:
        rows = {r["file"]: r for r in csv.DictReader(fh)}
    out, taken = [], {0: 0, 1: 0}
    for s in load_dataset("synthetic", root, variant=variant):
        row = rows[s.name]
        host = cameras[row["host_file"].replace("__", "/", 1)]
        donor = cameras[row["donor_file"].replace("__", "/", 1)] if row["donor_file"] else None
        if donor == host or taken[s.label] >= n:
            continue
        taken[s.label] += 1
        mask = str(root / row["mask"]) if s.label == 1 else None  # read again when scored: memory
        out.append({"image": s.image, "mask": mask, "label": s.label, "name": s.name,
                    "host_camera": host, "donor_camera": donor})
    if taken[0] < n or taken[1] < n:
        raise RuntimeError(f"{root}: only {taken[1]} valid spliced and {taken[0]} authentic images of {n}")
    return out


# -- running the methods ------------------------------------------------------------------------------


def score_images(localize, samples: list[dict]) -> list[dict]:
    """Per-image metrics (exifclip.evaluate_localization on each image), seconds, and every detection
    score the method gives (``scores``; exifclip's :data:`~exifclip.splice.postprocessing.DETECTION_SCORES`)."""
    from PIL import Image

    from exifclip import evaluate_localization, load_image

    rows = []
    for s in samples:
        image = load_image(s["image"])
        mask = None if s["mask"] is None else np.asarray(Image.open(s["mask"]).convert("L")) > 0
        start = time.perf_counter()
        result = localize(image)
        seconds = time.perf_counter() - start
        report = evaluate_localization([result], [mask], labels=[s["label"]], names=[s["name"]])
        row = {k: v for k, v in report.per_image[0].items() if k != "index"}
        row.update(seconds=seconds, host_camera=s["host_camera"], donor_camera=s["donor_camera"])
        if getattr(result, "scores", None):
            row["scores"] = {k: float(v) for k, v in result.scores.items()}
        rows.append(row)
    return rows


def with_score_method(rows: list[dict], score_method: str, label: str) -> list[dict]:
    """The rows with ``score`` taken from their ``scores[score_method]`` (exifclip models' rows)."""
    if score_method == "mean":
        return rows
    if any(score_method not in r.get("scores", {}) for r in rows):
        raise SystemExit(f"{label}: cached rows have no {score_method!r} score (written before rows kept every "
                         "score); delete that method's folder under the cache's results/ to score again")
    return [dict(r, score=r["scores"][score_method]) for r in rows]


def make_localizer(method: str, model_dir: str | None, mode: str = "exact"):
    if method.startswith("splicebuster-"):
        model = method.split("-", 1)[1]
        return lambda img: splicebuster_localize(img, model=model)
    if method == "noise-variance":
        return noise_residual_localize
    from exifclip import SpliceLocalizer

    # The paper's mean as ``score`` whatever the localizer's default: cached rows keep one meaning.
    loc = SpliceLocalizer(model=model_dir, device="cpu", mode=mode, score_method="mean").fit()
    return lambda img: loc.localize([img])[0]


def run_method(method: str, label: str, model_for_fold, folds: list[int], variants: list[str],
               fold_data: dict, results_dir: Path, mode: str = "exact") -> dict[str, list[dict]]:
    """Per-image rows by variant over the folds; each (fold, variant) cached as JSON."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_")
    out: dict[str, list[dict]] = {v: [] for v in variants}
    for k in folds:
        localize = None
        for v in variants:
            path = results_dir / slug / f"fold{k}-{v}.json"
            if path.is_file():
                rows = json.loads(path.read_text())
            else:
                if localize is None:
                    localize = make_localizer(method, model_for_fold(k), mode)
                start = time.perf_counter()
                rows = score_images(localize, fold_data[k][v])
                for r in rows:
                    r["fold"] = k
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(rows))
                print(f"{label} fold {k} {v}: {len(rows)} images in {time.perf_counter() - start:.0f} s",
                      flush=True)
            out[v].extend(rows)
    return out


# -- summary ------------------------------------------------------------------------------------------


def summarise(rows: list[dict], n_boot: int = 1000, seed: int = 0) -> dict:
    """Point estimates and bootstrap 95 % intervals of :data:`METRICS` over per-image rows.

    Pixel metrics are means over the spliced images that have them (as in
    :func:`exifclip.evaluate_localization`); detection AP is
    :func:`exifclip.splice.metrics.detection_ap` over all images. The bootstrap
    resamples the spliced and the authentic images separately, with
    replacement, ``n_boot`` times.
    """
    from exifclip.splice.metrics import detection_ap

    labels = np.array([r["label"] for r in rows], int)
    scores = np.array([np.nan if r.get("score") is None else r["score"] for r in rows], float)
    spl, aut = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    rng = np.random.default_rng(seed)
    draws_s = rng.integers(0, len(spl), (n_boot, len(spl))) if len(spl) else np.zeros((n_boot, 0), int)
    draws_a = rng.integers(0, len(aut), (n_boot, len(aut))) if len(aut) else np.zeros((n_boot, 0), int)
    out: dict = {"n_spliced": int(len(spl)), "n_authentic": int(len(aut)),
                 "s_per_image": round(float(np.mean([r["seconds"] for r in rows])), 3) if rows else None}

    def pack(point, boots):
        boots = np.asarray([b for b in boots if b is not None and np.isfinite(b)])
        lo, hi = (np.percentile(boots, [2.5, 97.5]) if boots.size else (np.nan, np.nan))
        return {"value": None if point is None else round(float(point), 4),
                "ci95": [round(float(lo), 4), round(float(hi), 4)] if boots.size else None}

    for m in ("pmap", "ciou", "f1", "mcc"):
        v = np.array([np.nan if rows[i].get(m) is None else rows[i][m] for i in spl], float)
        has = np.isfinite(v)
        point = float(v[has].mean()) if has.any() else None
        sums = np.where(has, v, 0.0)[draws_s].sum(1)
        counts = has[draws_s].sum(1)
        boots = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        out[m] = pack(point, boots)
    ok = np.isfinite(scores)
    if len(spl) and len(aut) and ok[spl].any() and ok[aut].any():
        point = detection_ap(scores[ok], labels[ok])
        boots = []
        for ds, da in zip(draws_s, draws_a):
            idx = np.concatenate([spl[ds], aut[da]])
            idx = idx[ok[idx]]
            boots.append(detection_ap(scores[idx], labels[idx]) if len(set(labels[idx])) == 2 else None)
        out["detection_ap"] = pack(point, boots)
    else:
        out["detection_ap"] = pack(None, [])
    return out


def unseen_rows(rows: list[dict], seen: set[str]) -> list[dict]:
    return [r for r in rows if r["host_camera"] not in seen and (r.get("donor_camera") or "") not in seen]


def markdown(table: list[dict]) -> str:
    head = ("| variant | images | method | p-mAP | cIoU | F1 | MCC | detection AP | s / image |\n"
            "|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for t in table:
        cells = []
        for m in METRICS:
            v = t[m]
            if v["value"] is None:
                cells.append("n/a")
            else:
                ci = v["ci95"]
                cells.append(f"{v['value']:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else f"{v['value']:.3f}")
        subset = f"{t['subset']} ({t['n_spliced']}+{t['n_authentic']})"
        lines.append(f"| {t['variant']} | {subset} | {t['method']} | " + " | ".join(cells) + f" | {t['s_per_image']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data", help="folder holding digicam/ and cameras-extra/")
    parser.add_argument("--split", default=str(DEFAULT_SPLIT), help="fold JSON (written if absent)")
    parser.add_argument("--rewrite-split", action="store_true", help="recompute the split and overwrite --split")
    parser.add_argument("--n-folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "exifclip-bench" / "unseen-cameras"),
                        help="generated images, random-init model and per-image results (kept)")
    parser.add_argument("--n-per-fold", type=int, default=60, help="spliced images per fold (as many authentic)")
    parser.add_argument("--max-size", type=int, default=1024)
    parser.add_argument("--folds", type=int, nargs="*", help="default: all")
    parser.add_argument("--variants", nargs="*", default=["png", "jpeg90"])
    parser.add_argument("--methods", nargs="*",
                        default=["model", "random", "splicebuster-gg", "splicebuster-gu", "noise-variance"])
    parser.add_argument("--model", default="exifclip-small", help="packaged name or directory")
    parser.add_argument("--fold-models", help="directory pattern with {k}: fold k scored by its own model")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--mode", choices=["exact", "fast"], default="exact",
                        help="how the models embed patches (SpliceLocalizer(mode=...)); fast runs are labelled so")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--score-method", default="mean",
                        help="detection score of exifclip models' rows (any of DETECTION_SCORES; default the paper's)")
    parser.add_argument("--out-json")
    parser.add_argument("--out-md")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)

    data, cache = Path(args.data), Path(args.cache)
    split_path = Path(args.split)
    if args.rewrite_split or not split_path.is_file():
        split_path.write_text(json.dumps(make_split(data, args.n_folds, args.seed), indent=1) + "\n")
    split = load_split(split_path)
    folds = args.folds if args.folds is not None else list(range(split["n_folds"]))
    cameras = file_cameras(data)
    seen = small_training_cameras(data)
    bench_id = f"seed{args.seed}-n{args.n_per_fold}-max{args.max_size}"

    start = time.perf_counter()
    fold_data = {}
    for k in folds:
        root = build_fold_splices(split, k, data, cache, args.n_per_fold, args.seed, args.max_size)
        fold_data[k] = {v: fold_samples(root, v, cameras, args.n_per_fold) for v in args.variants}
    print(f"test images ready in {time.perf_counter() - start:.0f} s", flush=True)

    random_dir = cache / "random-init-small"
    if "random" in args.methods and not (random_dir / "config.json").is_file():
        from exifclip import create_model

        create_model("small", seed=0).save_pretrained(random_dir)
    runs = []  # (method, label, model_for_fold)
    suffix = " (fast)" if args.mode == "fast" else ""
    if "model" in args.methods:
        if args.fold_models:
            runs.append(("model", f"fold models {args.fold_models}{suffix}", lambda k: args.fold_models.format(k=k)))
        else:
            runs.append(("model", f"{args.model}{suffix}", lambda k: args.model))
    if "random" in args.methods:
        runs.append(("random", f"random-init small{suffix}", lambda k: str(random_dir)))
    for m in ("splicebuster-gg", "splicebuster-gu", "noise-variance"):
        if m in args.methods:
            runs.append((m, m, lambda k: None))

    results_dir = cache / "results" / bench_id
    per_image = {}
    for method, label, fn in runs:
        by_variant = run_method(method, label, fn, folds, args.variants, fold_data, results_dir, args.mode)
        if args.score_method != "mean" and method in ("model", "random"):  # exifclip rows, another score
            by_variant = {v: with_score_method(rows, args.score_method, label) for v, rows in by_variant.items()}
            label = f"{label} [{args.score_method}]"
        per_image[label] = by_variant
    table = []
    for v in args.variants:
        for subset in ("all", "unseen by exifclip-small"):
            for label, by_variant in per_image.items():
                rows = by_variant[v] if subset == "all" else unseen_rows(by_variant[v], seen)
                table.append({"variant": v, "subset": subset, "method": label,
                              **summarise(rows, args.bootstrap, args.seed)})
    per_fold = {label: {v: {k: summarise([r for r in by_variant[v] if r["fold"] == k], 0)["pmap"]["value"]
                            for k in folds} for v in args.variants} for label, by_variant in per_image.items()}
    figures = {"split": str(split_path), "folds": folds, "bench_id": bench_id,
               "fold_summary": [{"fold": f["fold"], "cameras": len(f["cameras"]), "photos": f["n_photos"]}
                                for f in split["folds"]],
               "exifclip_small_training_cameras": sorted(seen), "bootstrap": args.bootstrap,
               "table": table, "pmap_per_fold": per_fold, "wall_s": round(time.perf_counter() - start, 1)}
    md = markdown(table)
    print(md)
    if args.out_json:
        Path(args.out_json).write_text(json.dumps(figures, indent=1))
    if args.out_md:
        Path(args.out_md).write_text(md + "\n")


if __name__ == "__main__":
    main()
