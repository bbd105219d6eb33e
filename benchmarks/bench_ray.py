"""Throughput of the Ray Data engine against the local engine, at equal resources, in one run.

Generates ``--images`` synthetic photos (PNG files of ``--megapixels``),
then times, on the same files and settings:

``local-1``
    ``SpliceLocalizer.localize`` in this process with 1 torch thread;
``ray-1``
    :func:`exifclip.ray.localize_dataset` with 1 actor of 1 CPU;
``local-2``
    the local engine with 2 torch threads;
``ray-2``
    2 actors of 1 CPU each.

It prints seconds, images per second and the Ray/local time ratios (the
issue's target: Ray overhead at most 20 % at equal resources), and how far
each run's scores are from the first's. Ray's start-up (``ray.init``) is
timed apart. The local engine is timed warm (model loaded, a warm-up pass on
2 images); each Ray run starts a fresh actor pool, so its time includes the
actors' process start, imports and model load, as a real run's does. The
"after start-up" ratio takes that out: Ray's seconds per image beyond a
fresh run over one batch per actor, against the local engine's.

Usage::

    python benchmarks/bench_ray.py --images 48 --megapixels 1 --num-per-dim 10
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np


def make_photos(folder: str, n: int, megapixels: float) -> list[str]:
    from PIL import Image

    side = int(round((megapixels * 1e6) ** 0.5))
    paths = []
    for i in range(n):
        rng = np.random.default_rng(i)
        image = np.clip(128 + rng.normal(0, 20, (side, side, 3)), 0, 255).astype(np.uint8)
        paths.append(os.path.join(folder, f"photo{i:04d}.png"))
        Image.fromarray(image).save(paths[-1], compress_level=1)
    return paths


def time_local(paths: list[str], params: dict, threads: int) -> tuple[float, np.ndarray, float]:
    import torch

    from exifclip import SpliceLocalizer

    torch.set_num_threads(threads)
    loc = SpliceLocalizer(**params).fit()
    loc.decision_function(paths[:2])  # warm-up
    start = time.perf_counter()
    scores = loc.decision_function(paths)
    seconds = time.perf_counter() - start
    return seconds, scores, seconds / len(paths)  # warm: start-up is outside the timer


def _ray_run(ray, paths: list[str], params: dict, workers: int, per_batch: int) -> tuple[float, dict]:
    from exifclip.ray import localize_dataset

    start = time.perf_counter()
    df = localize_dataset(ray.data.from_items([{"path": p} for p in paths]), num_workers=workers,
                          images_per_batch=per_batch, **params).to_pandas()
    return time.perf_counter() - start, dict(zip(df.source, df.score))


def time_ray(ray, paths: list[str], params: dict, workers: int, per_batch: int) -> tuple[float, np.ndarray, float]:
    """Seconds of a run over ``paths`` (a fresh actor pool: process start, imports and model load included),
    its scores, and the seconds per image beyond a fresh run over the first ``workers x per_batch`` images
    (the start-up cost taken out: what a long run pays per image)."""
    few = paths[: workers * per_batch]
    small_s, _ = _ray_run(ray, few, params, workers, per_batch)
    seconds, by_source = _ray_run(ray, paths, params, workers, per_batch)
    return seconds, np.asarray([by_source[p] for p in paths]), (seconds - small_s) / (len(paths) - len(few))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--megapixels", type=float, default=1.0)
    parser.add_argument("--model", default="exifclip-small")
    parser.add_argument("--num-per-dim", type=int, default=10)
    parser.add_argument("--images-per-batch", type=int, default=8)
    args = parser.parse_args()

    import ray

    params = {"model": args.model, "device": "cpu", "num_per_dim": args.num_per_dim, "errors": "raise"}
    with tempfile.TemporaryDirectory() as folder:
        paths = make_photos(folder, args.images, args.megapixels)
        start = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        init_s = time.perf_counter() - start
        results = {}
        for name, run in [("local-1", lambda: time_local(paths, params, 1)),
                          ("ray-1", lambda: time_ray(ray, paths, params, 1, args.images_per_batch)),
                          ("local-2", lambda: time_local(paths, params, 2)),
                          ("ray-2", lambda: time_ray(ray, paths, params, 2, args.images_per_batch))]:
            seconds, scores, per_image = run()
            results[name] = {"seconds": round(seconds, 2), "images_per_s": round(args.images / seconds, 2),
                             "marginal_s_per_image": round(per_image, 4), "scores": scores}
            print(f"{name:>8}: {seconds:7.2f} s  {args.images / seconds:6.2f} img/s  "
                  f"{1000 * per_image:6.1f} ms/img after start-up", flush=True)
        ray.shutdown()
    reference = results["local-1"]["scores"]
    for r in results.values():
        r["max_abs_score_difference_from_local_1"] = float(np.abs(r.pop("scores") - reference).max())
    summary = {
        "images": args.images, "megapixels": args.megapixels, "model": args.model, "num_per_dim": args.num_per_dim,
        "ray_init_s": round(init_s, 2), "runs": results,
        **{f"ray_over_local_{k}_worker{'s' if k > 1 else ''}": {
            "whole_run": round(results[f"ray-{k}"]["seconds"] / results[f"local-{k}"]["seconds"], 3),
            "after_start_up": round(results[f"ray-{k}"]["marginal_s_per_image"]
                                    / results[f"local-{k}"]["marginal_s_per_image"], 3)} for k in (1, 2)},
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
