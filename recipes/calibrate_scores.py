"""Calibrate a model's detection scores on authentic photos of cameras it never saw.

Scores the authentic crops of the unseen-camera benchmark
(``benchmarks/bench_unseen_cameras.py``; PNG and JPEG-90) whose camera models
the model was not trained on, with ``SpliceLocalizer``'s default settings,
and writes ``score_calibration.json`` (:class:`exifclip.splice.calibration.ScoreCalibration`)
into the model directory. It also measures, honestly, what the calibration
does: for each fold, calibrated on the other folds' authentic images, the
false-alarm and miss rates at each alarm rate on that fold's authentic and
spliced images (camera models disjoint)::

    python recipes/calibrate_scores.py --model exifclip-small --install

Per-image scores are cached with the benchmark's (``--cache``), so a model the
benchmark has scored is calibrated without running it again.

A model trained on every camera has no unseen camera left to calibrate on.
``--fold-models PATTERN`` (with ``{k}``) calibrates it cross-fitted: each
fold's authentic crops are scored by the same recipe trained without that
fold's cameras (``recipes/fold_training.py``), and the calibration is written
into ``--model``'s directory::

    python recipes/calibrate_scores.py --model exifclip-small-srm --fold-models 'CKPT/srm-2400/fold{k}' \
        --score-method heatmap_p95 --install

``--score-method`` calibrates another detection score than the paper's mean;
the model then reports it by default (``SpliceLocalizer(score_method="auto")``).
``--mode fast`` calibrates the scores of fast mode (that calibration
applies to ``SpliceLocalizer(mode="fast")`` only), for a model meant for it
(``recipes/fast_mode_distill.py``). ``--install`` replaces the model's
calibration of the same mode and keeps the other mode's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "benchmarks"))

ALARM_RATES = (0.01, 0.05, 0.10, 0.20)


def _rows(args: argparse.Namespace) -> list[dict]:
    """Per-image benchmark rows (score, label, cameras, fold) of ``--model``, both variants."""
    from bench_unseen_cameras import (DEFAULT_SPLIT, build_fold_splices, file_cameras, fold_samples, load_split,
                                      run_method, with_score_method)

    data, cache = Path(args.data), Path(args.cache)
    split = load_split(DEFAULT_SPLIT)
    folds = args.folds if args.folds else list(range(split["n_folds"]))
    cameras = file_cameras(data)
    fold_data = {}
    for k in folds:
        root = build_fold_splices(split, k, data, cache, args.n_per_fold, 0, 1024)
        fold_data[k] = {v: fold_samples(root, v, cameras, args.n_per_fold) for v in ("png", "jpeg90")}
    results = cache / "results" / f"seed0-n{args.n_per_fold}-max1024"
    suffix = " (fast)" if args.mode == "fast" else ""  # the benchmark's label of a fast-mode run
    if args.fold_models:
        label, model_for_fold = f"fold models {args.fold_models}{suffix}", lambda k: args.fold_models.format(k=k)
    else:
        label, model_for_fold = f"{args.label or args.model}{suffix}", lambda k: args.model
    by_variant = run_method("model", label, model_for_fold, folds, ["png", "jpeg90"], fold_data, results,
                            args.mode)
    return [dict(r, variant=v) for v, rows in by_variant.items()
            for r in with_score_method(rows, args.score_method, label)]


def _trained_cameras(args: argparse.Namespace) -> set[str]:
    from bench_unseen_cameras import small_training_cameras

    if args.fold_models:
        return set()  # every fold is scored by a model that never saw its cameras
    if args.model == "exifclip-small":
        return small_training_cameras(Path(args.data))
    if args.training_cameras:
        return set(json.loads(Path(args.training_cameras).read_text()))
    raise SystemExit("--training-cameras JSON (camera keys the model was trained on) is needed for this model")


def measure(rows: list[dict], calibrate_folds: set[int]) -> list[dict]:
    """False-alarm and miss rates on the other folds, calibrated on ``calibrate_folds``."""
    from exifclip.splice.calibration import ScoreCalibration

    cal = ScoreCalibration([r["score"] for r in rows if r["label"] == 0 and r["fold"] in calibrate_folds])
    test = [r for r in rows if r["fold"] not in calibrate_folds]
    authentic = np.array([r["score"] for r in test if r["label"] == 0])
    spliced = np.array([r["score"] for r in test if r["label"] == 1])
    out = []
    for rate in ALARM_RATES:
        t = cal.threshold(rate)
        out.append({"alarm_rate": rate, "threshold": round(t, 4),
                    "false_alarms": round(float((authentic >= t).mean()), 3), "n_authentic": int(authentic.size),
                    "misses": round(float((spliced < t).mean()), 3), "n_spliced": int(spliced.size)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="exifclip-small", help="packaged name or model directory")
    parser.add_argument("--label", help="the model's name in the benchmark cache (default: --model)")
    parser.add_argument("--fold-models", help="cross-fitted: fold k's images scored by this model pattern ({k})")
    parser.add_argument("--training-cameras", help="JSON list of the camera keys the model was trained on")
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "exifclip-bench" / "unseen-cameras"))
    parser.add_argument("--n-per-fold", type=int, default=60)
    parser.add_argument("--folds", type=int, nargs="+",
                        help="calibrate on these folds' images only (default: all; two or more, for the check)")
    parser.add_argument("--score-method", default="mean",
                        help="the detection score to calibrate (SpliceLocalizer(score_method='auto') then uses it)")
    parser.add_argument("--mode", choices=("exact", "fast"), default="exact",
                        help="the SpliceLocalizer mode whose scores are calibrated")
    parser.add_argument("--install", action="store_true",
                        help="write the calibration into the model dir's score_calibration.json")
    args = parser.parse_args()
    if args.folds is not None and len(set(args.folds)) < 2:
        parser.error("--folds needs at least two folds: each is checked against a calibration on the others")

    import torch

    from exifclip.modeling.hub import resolve_model_dir
    from exifclip.splice.calibration import ScoreCalibration

    torch.set_num_threads(1)
    seen = _trained_cameras(args)
    rows = [r for r in _rows(args) if r["host_camera"] not in seen and (r["donor_camera"] or "") not in seen]
    folds = sorted({r["fold"] for r in rows})
    # leave one fold out: calibrated on the others' authentic crops, tested on its own
    checks = {f"fold {k} (calibrated on folds {[f for f in folds if f != k]})": measure(rows, set(folds) - {k})
              for k in folds}
    authentic = [r["score"] for r in rows if r["label"] == 0]
    directory = Path(resolve_model_dir(args.model))
    patch_size = json.loads((directory / "config.json").read_text())["patch_size"]
    fold_note = f", folds {folds}" if args.folds else ""
    scored_by = (f"each fold scored by the same recipe trained without its cameras ({args.fold_models})"
                 if args.fold_models else "scored by this model")
    calibration = ScoreCalibration(authentic, {"mode": args.mode, "num_per_dim": 30, "stride": None,
                                               "patch_size": patch_size, "score_method": args.score_method},
                                   f"{len(authentic)} authentic crops (<= 1024 px; PNG and JPEG-90 of the same crops) "
                                   "of camera models the model never saw, from digicam + cameras-extra "
                                   f"(benchmarks/bench_unseen_cameras.py{fold_note}), {scored_by}")
    report = {"model": args.model, "mode": args.mode, "score_method": args.score_method, "authentic": len(authentic),
              "spliced": sum(r["label"] == 1 for r in rows), "held_out_checks": checks,
              "thresholds": {str(a): round(calibration.threshold(a), 4) for a in ALARM_RATES}}
    print(json.dumps(report, indent=1))
    if args.install:
        print(f"wrote {calibration.save(directory)}")


if __name__ == "__main__":
    main()
