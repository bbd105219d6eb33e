"""``exifclip evaluate``: localisation and detection metrics of the localiser on a benchmark."""

from __future__ import annotations

__all__ = ["NAME", "register", "run"]

import argparse
import json

from ._options import (
    SPLICE_MODEL,
    CommandError,
    add_decode_options,
    add_model_options,
    add_splice_options,
    error,
    make_localizer,
    pillow_limit_lifted,
)
from ._output import check_output_file

NAME = "evaluate"

#: What ``--dataset folder`` reads, said in the help and in the error when nothing is found.
FOLDER_LAYOUT = (
    "ROOT/images/STEM.jpg|png|tif|... (the images) and ROOT/masks/STEM.png (optional, matched by file stem: "
    "non-zero pixels = spliced; an image without a mask is authentic)"
)


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(NAME, help="localisation and detection metrics on a benchmark")
    p.add_argument("--dataset", required=True,
                   help="columbia, dso1, korus, in_the_wild, casia1, synthetic (each as it ships), or folder: your "
                   f"own benchmark laid out as {FOLDER_LAYOUT}")
    p.add_argument("--root", required=True, help="the dataset folder (ROOT)")
    p.add_argument("--variant", help="synthetic benchmark variant: png or jpeg90")
    p.add_argument("--mask-root", help="external masks (CASIA 1)")
    p.add_argument("--limit", type=int, help="only the first N images")
    p.add_argument("--json", help="also write the metrics (and per-image rows) to this JSON file")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    add_model_options(p, default_model=SPLICE_MODEL)
    add_splice_options(p)
    add_decode_options(p)
    p.set_defaults(func=run)
    return p


def _samples(args: argparse.Namespace) -> list:
    from ..splice.datasets import load_dataset

    kwargs = {}
    if args.variant:
        kwargs["variant"] = args.variant
    if args.mask_root:
        kwargs["mask_root"] = args.mask_root
    try:
        samples = list(load_dataset(args.dataset, args.root, **kwargs))
    except (ValueError, OSError) as exc:
        raise _folder_error(args) if args.dataset == "folder" else CommandError(str(exc)) from None
    if args.limit:
        samples = samples[: args.limit]
    if not samples:
        raise _folder_error(args) if args.dataset == "folder" else CommandError(
            f"{args.root}: no images found for dataset {args.dataset!r}")
    return samples


def _folder_error(args: argparse.Namespace) -> CommandError:
    """What is missing under ``--root`` for ``--dataset folder``, and the layout it expects."""
    from pathlib import Path

    root = Path(args.root)
    missing = "folder not found" if not root.is_dir() else f"no images in {root / 'images'}"
    return CommandError(f"{root}: {missing}; --dataset folder expects {FOLDER_LAYOUT}")


def _localize_all(localizer, samples: list, progress: bool) -> tuple[list, list[float]]:
    """The result of each sample (``None`` where it failed, reported) and the seconds of each success."""
    import time
    import warnings

    from ..io import ImageLoadError

    results, seconds = [], []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(samples), unit="img", desc="evaluating")
    for sample in samples:
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = localizer.localize([sample.image])[0]
            if result is None:
                raise ValueError(localizer.failures_[0].reason)
            results.append(result)
            seconds.append(time.perf_counter() - start)
        except (ImageLoadError, ValueError, OSError) as exc:
            error(f"{sample.name}: {exc}")
            results.append(None)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return results, seconds


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from .._atomic import atomic_write
    from ..splice.evaluation import evaluate_localization

    if args.json:
        check_output_file(args.json, "--json")
    with pillow_limit_lifted():
        samples = _samples(args)
        localizer = make_localizer(args).fit()
        results, seconds = _localize_all(localizer, samples, args.progress)
    report = evaluate_localization(
        results, [s.mask for s in samples], labels=[s.label for s in samples], names=[s.name for s in samples]
    )
    per_image_s = float(np.mean(seconds)) if seconds else float("nan")
    print(
        f"dataset: {args.dataset} ({args.root}), model: {args.model}, method: {args.method}, "
        f"score: {localizer.score_method_}"
    )
    print(report)
    print(f"seconds per image: {per_image_s:.3f}")
    if args.json:
        payload = {
            "dataset": args.dataset,
            "root": str(args.root),
            "model": str(args.model),
            "method": args.method,
            "score_method": localizer.score_method_,
            "seconds_per_image": per_image_s,
            **report.to_dict(),
        }
        with atomic_write(args.json, "w") as f:
            json.dump(payload, f, indent=2)
    return 1 if report.n_failed else 0
