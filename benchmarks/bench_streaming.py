"""Memory of a collection run: the RSS curve of ``SpliceLocalizer.iter_localize``.

Generates ``--images`` synthetic photos of ``--megapixels`` (default 400 of
1 MP: a smooth scene plus sensor-like noise, a different seed each) as a
generator, localises them with ``iter_localize``, keeps each result's score
only (as a caller writing results to disk would), and prints the process's
resident memory after image 1, 50, 100, ... and the last. Flat memory means
the RSS after the last image is within a small margin of the RSS after
image 50 (the issue's target: 150 MB).

``--hold`` keeps every result instead (what ``localize`` returns): the
contrast, and what the streaming calls avoid.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_streaming.py --images 400 --num-per-dim 10
    OMP_NUM_THREADS=1 python benchmarks/bench_streaming.py --images 100 --num-per-dim 10 --hold
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def rss_mb() -> float:
    """Resident memory of this process now, in MB (Linux ``/proc``)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def photos(n: int, megapixels: float):
    """``n`` synthetic photos, generated one at a time (nothing of them is kept here)."""
    side = int(round((megapixels * 1e6) ** 0.5))
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    for i in range(n):
        rng = np.random.default_rng(i)
        base = 128 + 60 * np.sin(6 * xx + i) * np.cos(4 * yy - i)
        noise = rng.normal(0, 6, (side, side, 3)).astype(np.float32)
        yield np.clip(base[..., None] + noise, 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--megapixels", type=float, default=1.0)
    parser.add_argument("--model", default="exifclip-small")
    parser.add_argument("--num-per-dim", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--every", type=int, default=50, help="print the RSS every N images")
    parser.add_argument("--hold", action="store_true", help="keep every result (the list way), for contrast")
    args = parser.parse_args()

    import torch

    from exifclip import SpliceLocalizer

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    loc = SpliceLocalizer(model=args.model, device="cpu", num_per_dim=args.num_per_dim,
                          batch_size=args.batch_size, errors="raise").fit()
    curve, held, scores = {}, [], []
    start = time.perf_counter()
    print(f"{'image':>6} {'rss_mb':>8} {'s/img':>6}", flush=True)
    for k, result in enumerate(loc.iter_localize(photos(args.images, args.megapixels)), start=1):
        scores.append(result.score)
        if args.hold:
            held.append(result)
        del result
        if k == 1 or k % args.every == 0 or k == args.images:
            curve[k] = round(rss_mb(), 1)
            print(f"{k:>6} {curve[k]:>8.1f} {(time.perf_counter() - start) / k:>6.2f}", flush=True)
    ref = min(args.every, args.images)
    summary = {
        "images": args.images, "megapixels": args.megapixels, "model": args.model,
        "num_per_dim": args.num_per_dim, "batch_size": args.batch_size, "hold": args.hold,
        "rss_mb": curve, f"growth_after_{ref}_mb": round(curve[args.images] - curve[ref], 1),
        "seconds": round(time.perf_counter() - start, 1), "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
