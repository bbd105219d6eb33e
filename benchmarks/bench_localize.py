"""Speed and memory of splice localisation.

Two measurements:

``postprocess``
    consistency + mean shift + ncut + upsampling for the default grid
    (``num_per_dim=30``) of a 4000x3000 photo, on the same random patch
    embeddings, for exifclip's vectorised functions and for a per-pair
    reference written the way the official evaluator works (a Python loop
    over every patch pair accumulating into the 4-D response array, mean
    shift point by point with a k-d tree, scikit-learn spectral clustering,
    bilinear resize of the cell map to the image).

``localize``
    the whole ``SpliceLocalizer.localize`` on one synthetic photo of the
    given megapixels (default 50), in a fresh subprocess per architecture so
    that its peak RSS is its own.

``cli``
    the whole command ``exifclip localize PHOTO.jpg --out DIR`` (decoding,
    localisation, every output written) on synthetic JPEG photos of 12, 50
    and 150 megapixels, each run a fresh process whose peak RSS is read from
    the kernel when it ends (``os.wait4``); ``--max-side 0`` adds the
    full-resolution pictures.

Usage::

    python benchmarks/bench_localize.py postprocess
    python benchmarks/bench_localize.py localize --arch small paper-resnet50 --megapixels 50
    python benchmarks/bench_localize.py cli --megapixels 12 50 150 --model exifclip-small paper-resnet50 \\
        --max-side 2048 0
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def reference_postprocess(z: np.ndarray, grid, shape):
    """The official evaluator's algorithm, pair by pair (slow on purpose)."""
    import scipy.spatial
    import sklearn.cluster
    from PIL import Image

    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    spread = max(1, grid.patch_size // grid.stride)
    hc, wc = grid.n_rows + spread - 1, grid.n_cols + spread - 1
    responses = np.zeros((hc, wc, hc, wc))
    votes = np.zeros((hc, wc, hc, wc)) + 1e-4
    for a in range(grid.n_patches):
        ai, aj = divmod(a, grid.n_cols)
        for b in range(grid.n_patches):
            bi, bj = divmod(b, grid.n_cols)
            d = 1.0 - float(z[a] @ z[b])
            responses[ai : ai + spread, aj : aj + spread, bi : bi + spread, bj : bj + spread] += d
            votes[ai : ai + spread, aj : aj + spread, bi : bi + spread, bj : bj + spread] += 1
    R = responses / votes
    points = R.reshape(hc * wc, hc * wc).copy()
    tree = scipy.spatial.cKDTree(points)
    eps = np.percentile(scipy.spatial.distance.cdist(points, points), 10)
    for _ in range(5):
        for i in range(points.shape[0]):
            near = tree.query_ball_point(points[i], r=eps)
            if near:
                points[i] = points[near].mean(0)
    counts = np.array([len(tree.query_ball_point(p, r=eps)) for p in points])
    mode = points[counts == counts.max()].mean(0).reshape(hc, wc)
    labels = sklearn.cluster.SpectralClustering(n_clusters=2, affinity="precomputed", random_state=0).fit_predict(
        np.maximum(1 - R.reshape(hc * wc, hc * wc), 0)
    )
    heat = np.asarray(Image.fromarray(mode.astype(np.float32)).resize((shape[1], shape[0]), Image.BILINEAR))
    return heat, labels


def bench_postprocess(height: int, width: int, patch_size: int, dim: int, repeats: int) -> dict:
    from exifclip.patches import make_grid
    from exifclip.splice import cell_shape, consistency, mean_shift_heatmap, ncut_mask, to_image

    grid = make_grid((height, width), patch_size, num_per_dim=30)
    rng = np.random.default_rng(0)
    z = rng.normal(size=(grid.n_patches, dim)).astype(np.float32)
    z[: grid.n_patches // 5] += 2.0  # a "spliced" group

    def ours():
        R = consistency(z, grid)
        heat = to_image(mean_shift_heatmap(R).astype(np.float32), grid)
        mask = to_image(ncut_mask(R), grid)
        return heat, mask

    ours()
    best = min(_timed(ours) for _ in range(repeats))
    ref = _timed(lambda: reference_postprocess(z, grid, (height, width)))
    return {"image": f"{width}x{height}", "patch_size": patch_size, "patches": grid.n_patches,
            "cells": int(np.prod(cell_shape(grid))), "exifclip_s": best, "reference_s": ref, "speedup": ref / best}


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _localize_child(arch: str, megapixels: float) -> None:
    """Runs in a subprocess: one localize call, report time and peak RSS."""
    import resource
    import tempfile

    from exifclip.modeling import create_model
    from exifclip.splice import SpliceLocalizer

    tmp = tempfile.mkdtemp()
    create_model(arch, seed=0).save_pretrained(tmp)
    width = int(round((megapixels * 1e6 * 3 / 2) ** 0.5))
    height = int(round(width * 2 / 3))
    rng = np.random.default_rng(0)
    image = np.repeat(np.repeat(rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8),
                                16, axis=0), 16, axis=1)[:height, :width]
    image = np.ascontiguousarray(image)
    loc = SpliceLocalizer(model=tmp, device="cpu").fit()
    start = time.perf_counter()
    result = loc.localize([image])[0]
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"arch": arch, "image": f"{width}x{height}", "megapixels": width * height / 1e6,
                      "patches": result.grid.n_patches, "seconds": seconds,
                      "embed_s": result.timings["embed_s"], "postprocess_s": result.timings["postprocess_s"],
                      "peak_rss_mb": rss}))


def synthetic_jpeg(megapixels: float, path: Path) -> tuple[int, int]:
    """A 3:2 JPEG (quality 90) of smooth shading, 16-pixel blocks and noise, built in bands of rows."""
    from PIL import Image

    width = int(round((megapixels * 1e6 * 3 / 2) ** 0.5))
    height = int(round(width * 2 / 3))
    rng = np.random.default_rng(0)
    canvas = Image.new("RGB", (width, height))
    blocks = rng.integers(0, 64, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
    xs = (np.arange(width) * 191 // max(width - 1, 1)).astype(np.uint8)
    for top in range(0, height, 512):
        rows = min(512, height - top)
        band = np.repeat(np.repeat(blocks[top // 16 : (top + rows) // 16 + 1], 16, axis=0), 16, axis=1)
        band = band[top % 16 : top % 16 + rows, :width] + xs[None, :, None]
        band = band + rng.integers(0, 3, band.shape, dtype=np.uint8)
        canvas.paste(Image.fromarray(band), (0, top))
    canvas.save(path, quality=90)
    return width, height


def _model_dir(model: str, folder: Path) -> str:
    """A packaged name as it is; an architecture name (``paper-resnet50``) saved with random weights."""
    if model.startswith("exifclip-") or Path(model).is_dir():
        return model
    from exifclip.modeling import create_model

    target = folder / model
    if not target.is_dir():
        create_model(model, seed=0).save_pretrained(target)
    return str(target)


def _peak_rss_run(argv: list[str]) -> tuple[int, float, float]:
    """Run ``argv``; returns (exit status, seconds, peak RSS in bytes of that process alone)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr.read().decode())
    proc.stderr.close()
    return proc.returncode, seconds, usage.ru_maxrss * 1024  # Linux: KiB


def bench_cli(megapixels: list[float], models: list[str], sides: list[int]) -> list[dict]:
    """The whole ``exifclip localize`` command per photo size, model and picture size: peak RSS and time."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model_dirs = {m: _model_dir(m, folder) for m in models}
        for mp in megapixels:
            photo = folder / f"photo_{mp:g}mp.jpg"
            width, height = synthetic_jpeg(mp, photo)
            for model in models:
                for side in sides:
                    out = folder / f"out_{mp:g}_{side}"
                    argv = [sys.executable, "-m", "exifclip", "localize", str(photo), "--out", str(out),
                            "--model", model_dirs[model], "--device", "cpu", "--max-side", str(side)]
                    status, seconds, rss = _peak_rss_run(argv)
                    record = json.loads((out / f"{photo.stem}.json").read_text()) if status == 0 else {}
                    rows.append({"megapixels": round(width * height / 1e6, 1), "image": f"{width}x{height}",
                                 "model": model, "max_side": side, "status": status, "seconds": round(seconds, 1),
                                 "peak_rss_gb": round(rss / 1e9, 2),
                                 "bytes_per_pixel": round(rss / (width * height), 1),
                                 "timings": record.get("timings", {})})
                    print(json.dumps(rows[-1]), flush=True)
            photo.unlink()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("postprocess")
    p.add_argument("--repeats", type=int, default=5)
    p = sub.add_parser("localize")
    p.add_argument("--arch", nargs="+", default=["small", "paper-resnet50"])
    p.add_argument("--megapixels", type=float, default=50.0)
    p = sub.add_parser("cli")
    p.add_argument("--megapixels", type=float, nargs="+", default=[12, 50, 150])
    p.add_argument("--model", nargs="+", default=["exifclip-small"],
                   help="packaged names, model folders, or architectures (saved with random weights)")
    p.add_argument("--max-side", type=int, nargs="+", default=[2048], help="0: full-resolution pictures")
    p = sub.add_parser("_child")
    p.add_argument("arch")
    p.add_argument("megapixels", type=float)
    args = parser.parse_args()
    if args.what == "postprocess":
        for patch_size, dim in [(124, 768), (64, 128)]:
            r = bench_postprocess(3000, 4000, patch_size, dim, args.repeats)
            print(f"4000x3000, P={patch_size}: {r['patches']} patches, {r['cells']} cells: exifclip "
                  f"{r['exifclip_s']:.3f} s, per-pair reference {r['reference_s']:.1f} s, {r['speedup']:.0f}x")
            print(json.dumps(r))
    elif args.what == "cli":
        rows = bench_cli(args.megapixels, args.model, args.max_side)
        print("| photo | model | pictures | peak RSS | bytes/pixel | seconds | decode | embed | write |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            t = r["timings"]
            pictures = "full resolution" if r["max_side"] == 0 else f"longest side {r['max_side']}"
            print(f"| {r['megapixels']:g} MP ({r['image']}) | `{r['model']}` | {pictures} | "
                  f"{r['peak_rss_gb']:.2f} GB | "
                  f"{r['bytes_per_pixel']:.1f} | {r['seconds']:.1f} s | {t.get('decode_s', float('nan')):.1f} s | "
                  f"{t.get('embed_s', float('nan')):.1f} s | {t.get('write_s', float('nan')):.1f} s |")
    elif args.what == "localize":
        for arch in args.arch:
            out = subprocess.run([sys.executable, __file__, "_child", arch, str(args.megapixels)],
                                 capture_output=True, text=True, check=True)
            print(out.stdout.strip().splitlines()[-1])
    else:
        _localize_child(args.arch, args.megapixels)


if __name__ == "__main__":
    main()
