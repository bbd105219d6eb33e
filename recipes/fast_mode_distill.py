"""Distil a trained model's exact mode into its fast mode (:mod:`exifclip.training.distill`).

The packaged default, on the photos its recipe trained on (digicam and
cameras-extra), from the recipe's output (``recipes/exifclip_small_srm.py
--arch small-s16 --out CKPT/exifclip-small-s16``), installed::

    python recipes/fast_mode_distill.py --teacher CKPT/exifclip-small-s16 --data ../shared/data \\
        --out CKPT/s16-distilled --install exifclip-small-s16

(``exifclip-small-srm`` was distilled the same way, with ``--teacher`` its
undistilled weights.)

The unseen-camera benchmark's fold models, each on its own fold's training
photos only (so fold ``k``'s cameras stay unseen), then scored in both modes::

    python recipes/fast_mode_distill.py --teacher 'CKPT/srm4800nd/fold{k}' --folds 0 1 2 \\
        --data ../shared/data --out CKPT/srm-distilled-folds
    python benchmarks/bench_unseen_cameras.py --data ../shared/data --folds 0 1 2 --methods model \\
        --fold-models 'CKPT/srm-distilled-folds/fold{k}' --score-method heatmap_p95 --mode fast

``--set key=value`` changes any DistillConfig field (JSON values). Each
output folder gets the model, its tokenizer and ``distill_summary.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "benchmarks"))


def distil(teacher: str, photos: list[str], out: Path, overrides: dict) -> dict:
    """Distil ``teacher`` on ``photos`` into ``out``; returns the summary written beside the model."""
    from exifclip.batch import BatchErrors
    from exifclip.modeling import load_model
    from exifclip.training.distill import DistillConfig, distill_fast_mode

    model = load_model(teacher, use_cache=False)
    config = DistillConfig(**dict({"log_every": 100}, **overrides))
    report = BatchErrors("skip")
    result = distill_fast_mode(model, photos, config, report=report)
    result.model.save_pretrained(out)
    tail = max(1, len(result.fast_cosine) // 10)
    summary = {"teacher": str(teacher), "photos_given": len(photos), "photos_used": result.photos,
               "skipped": result.skipped, "unreadable": len(report.failures), "crops": result.crops,
               "config": result.config, "wall_s": round(result.elapsed_s, 1),
               "fast_cosine_first": round(result.fast_cosine[0], 4),
               "fast_cosine_last_tenth": round(sum(result.fast_cosine[-tail:]) / tail, 4),
               "exact_cosine_last_tenth": (round(sum(result.exact_cosine[-tail:]) / tail, 4)
                                           if result.exact_cosine else None)}
    (out / "distill_summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary), flush=True)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", required=True,
                        help="packaged name or folder; with --folds, a pattern with {k}")
    parser.add_argument("--data", default="../shared/data", help="folder holding digicam/ and cameras-extra/")
    parser.add_argument("--out", required=True, help="output folder (with --folds: one fold{k} folder per fold)")
    parser.add_argument("--folds", type=int, nargs="+", help="distil fold models on their folds' training photos")
    parser.add_argument("--install", metavar="NAME", help="copy the result into exifclip/models/NAME")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="override a DistillConfig field, e.g. --set steps=600")
    args = parser.parse_args()
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value)
    data = Path(args.data)
    if args.folds is None:
        from exifclip_small import install
        from exifclip_small_srm import all_photos

        distil(args.teacher, all_photos(data), Path(args.out), overrides)
        if args.install:
            print("installed in", install(Path(args.out), args.install))
        return
    if "{k}" not in args.teacher or args.install:
        parser.error("with --folds, --teacher must be a pattern with {k}, and --install is not allowed")
    from bench_unseen_cameras import DEFAULT_SPLIT, fold_photos, load_split

    split = load_split(Path(DEFAULT_SPLIT))
    for k in args.folds:
        train_files, _ = fold_photos(split, k, data)
        distil(args.teacher.format(k=k), train_files, Path(args.out) / f"fold{k}", overrides)


if __name__ == "__main__":
    main()
