"""Fast mode against exact mode: speed, and how far the results move.

Five parts, each in one run so that ratios compare like with like:

``speed``
    Seconds per photo of ``SpliceLocalizer(mode=...).localize`` (embedding
    and post-processing) for the packaged ``exifclip-small`` and
    ``exifclip-small-s16`` (the default splice model) and a random-init
    ``paper-resnet50`` (or ``--models``: packaged names or model folders),
    on 1, 12 and 50 MP photos (camera photos from
    ``--data`` tiled up to size, so the pixels have real camera statistics),
    on the default grid (30 patches along the longer side) and, at 12 MP, on
    a dense grid (stride = patch / 4, the paper's overlap on a 1-MP photo). The cost
    of exact mode follows the number of patches; that of fast mode the number
    of pixels, so the ratio is about the grid's overlap ``(patch / stride)^2``.
    ``--device cuda`` times the same on a GPU (photos/s in each row).
``interleaved``
    Two or more ``--models`` timed against each other in one process: the
    models alternate on the same 1024x1024 crops of ``--data`` photos, in
    reversed order every other round, each mode in turn; the median and
    minimum seconds per photo and each model's ratio of medians to the
    first's. Timed one after the other, two models meet different moments
    of a shared machine's load; interleaved, they meet the same.
``agreement``
    On real photos: cosine between the exact and fast embedding of each
    patch, and the correlation of the two heatmaps, for each of ``--models``
    (default: both packaged models).
``context``
    For one model: the cosine between fast mode's embedding of a window and
    that of views of it with growing context (the window's own cells pooled,
    as a ``patch_context`` model reads a patch), on windows whose views lie
    inside the photo. Where the cosine reaches 1, the view holds all the
    cells depend on (``exifclip.modeling.dense.trunk_margin``).
``margin``
    Seconds of fast mode's trunk over a 12-MP photo with the context each
    tile reads fixed at 128 px (the old default: seams for the ResNet-50s)
    against the trunk's own margin (what its cells' receptive field needs), alternating,
    best of ``--repeats``.
``tile``
    Seconds and peak memory of fast mode's trunk over a 12-MP (or
    ``--size``) photo for each of ``--tiles`` (the side of the square each
    pass computes; every tile also reads the trunk's margin around it, so
    larger tiles re-read fewer pixels). Each tile size runs in its own
    process, so that its peak resident memory is its own.

Usage::

    OMP_NUM_THREADS=2 python benchmarks/bench_fast_mode.py speed --data ../shared/data/digicam
    OMP_NUM_THREADS=2 python benchmarks/bench_fast_mode.py interleaved --data ../shared/data/digicam \
        --models exifclip-small-srm exifclip-small-s16
    python benchmarks/bench_fast_mode.py agreement --data ../shared/data/digicam --n 20
    OMP_NUM_THREADS=1 python benchmarks/bench_fast_mode.py margin --data ../shared/data/digicam
    OMP_NUM_THREADS=1 python benchmarks/bench_fast_mode.py tile --data ../shared/data/digicam --tiles 1024 2048
    python benchmarks/bench_fast_mode.py context --model CKPT/fold0 --data CACHE/splices/.../fold0/authentic
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

SIZES_MP = {"1": (1024, 1024), "12": (3000, 4000), "50": (6144, 8192)}


def _camera_jpegs(data: Path) -> list[Path]:
    return sorted(p for p in data.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))


def _camera_mosaic(data: Path, shape: tuple[int, int]) -> np.ndarray:
    """A photo of ``shape`` tiled from real camera photos (no resizing)."""
    from exifclip import load_image

    files = _camera_jpegs(data)
    out = np.empty((*shape, 3), np.uint8)
    y = i = 0
    while y < shape[0]:
        x, row_h = 0, None
        while x < shape[1]:
            tile = load_image(files[i % len(files)])
            i += 1
            h, w = min(tile.shape[0], shape[0] - y), min(tile.shape[1], shape[1] - x)
            row_h = h if row_h is None else min(row_h, h)
            out[y:y + h, x:x + w] = tile[:h, :w]
            x += w
        y += row_h
    return out


def _models(work: Path) -> dict[str, str]:
    from exifclip.modeling import create_model

    paper = work / "paper-resnet50-random"
    if not (paper / "config.json").is_file():
        create_model("paper-resnet50", seed=0).save_pretrained(paper)
    return {"exifclip-small": "exifclip-small", "exifclip-small-s16": "exifclip-small-s16",
            "paper-resnet50 (random)": str(paper)}


def _time(localizer, image: np.ndarray, repeats: int) -> float:
    import torch

    def sync():
        if torch.cuda.is_initialized():
            torch.cuda.synchronize()

    localizer.localize([image[:512, :512]])  # warm-up: model load, kernel selection
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        localizer.localize([image])  # results come back to the host: the time is the whole call's
        sync()
        times.append(time.perf_counter() - start)
    return min(times)


def speed(args: argparse.Namespace) -> list[dict]:
    import torch

    from exifclip import SpliceLocalizer, make_grid

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        known = _models(Path(tmp))
        models = {m: known.get(m, m) for m in args.models} if args.models else known
        for size in args.sizes:
            image = _camera_mosaic(Path(args.data), SIZES_MP[size])
            for label, model in models.items():
                for grid in args.grids:
                    if grid == "dense" and size != "12":
                        continue  # at 1 MP the default grid already has the paper's overlap
                    for runtime in args.runtimes:
                        row = {"model": label, "megapixels": size, "grid": grid, "device": args.device,
                               "runtime": runtime, "threads": torch.get_num_threads()}
                        for mode in ("exact", "fast"):
                            loc = SpliceLocalizer(model=model, device=args.device, mode=mode, runtime=runtime,
                                                  errors="raise").fit()
                            if grid == "dense":  # parameters count at fit: refit with the stride
                                loc = loc.set_params(stride=max(loc.embedder_.patch_size_ // 4, 1)).fit()
                            row[f"{mode}_s"] = round(_time(loc, image, args.repeats), 3)
                        row["patches"] = make_grid(image.shape, loc.embedder_.patch_size_,
                                                   num_per_dim=loc.num_per_dim, stride=loc.stride).n_patches
                        row["speedup"] = round(row["exact_s"] / row["fast_s"], 2)
                        row.update({f"{m}_photos_per_s": round(1 / row[f"{m}_s"], 3) for m in ("exact", "fast")})
                        print(json.dumps(row), flush=True)
                        rows.append(row)
    return rows


def interleaved(args: argparse.Namespace) -> list[dict]:
    import torch

    from exifclip import SpliceLocalizer, load_image

    if args.threads:
        torch.set_num_threads(args.threads)
    files = _camera_jpegs(Path(args.data))
    picks = files[:: max(len(files) // args.photos, 1)][: args.photos]
    crops = [np.ascontiguousarray(load_image(f)[:1024, :1024]) for f in picks]
    rows = []
    for mode in ("exact", "fast"):
        localizers = [(m, SpliceLocalizer(model=m, device="cpu", mode=mode, errors="raise").fit())
                      for m in args.models]
        for _, loc in localizers:
            loc.localize(crops[:1])  # warm-up: model load, kernel selection
        times: dict[str, list[float]] = {m: [] for m in args.models}
        for r in range(args.rounds):
            for model, loc in localizers if r % 2 == 0 else localizers[::-1]:
                for crop in crops:
                    start = time.perf_counter()
                    loc.localize([crop])
                    times[model].append(time.perf_counter() - start)
        medians = {model: float(np.median(t)) for model, t in times.items()}
        for model in args.models:
            row = {"model": model, "mode": mode, "threads": torch.get_num_threads(),
                   "median_s": round(medians[model], 3), "min_s": round(min(times[model]), 3),
                   "n": len(times[model]), "ratio_of_medians": round(medians[model] / medians[args.models[0]], 3)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def agreement(args: argparse.Namespace) -> list[dict]:
    from exifclip import ExifPatchEmbedder, SpliceLocalizer, load_image

    files = sorted(p for p in Path(args.data).iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    rng = np.random.default_rng(0)
    files = [files[i] for i in sorted(rng.choice(len(files), size=min(args.n, len(files)), replace=False))]
    rows = []
    for model in args.models:
        embedder = ExifPatchEmbedder(model=model, device="cpu").fit()
        localizers = {m: SpliceLocalizer(model=model, device="cpu", mode=m).fit() for m in ("exact", "fast")}
        for f in files:
            image = load_image(f)
            exact = embedder.set_params(mode="exact").transform_patches([image])[0]
            fast = embedder.set_params(mode="fast").transform_patches([image])[0]
            cosine = np.sum(exact.embeddings * fast.embeddings, axis=1)
            heat = [localizers[m].localize([image])[0].heatmap for m in ("exact", "fast")]
            corr = float(np.corrcoef(heat[0].ravel(), heat[1].ravel())[0, 1])
            rows.append({"model": model, "file": f.name,
                         "megapixels": round(image.shape[0] * image.shape[1] / 1e6, 2),
                         "patch_cosine_median": float(np.median(cosine)),
                         "patch_cosine_p10": float(np.quantile(cosine, 0.1)), "heatmap_correlation": corr})
            print(json.dumps(rows[-1]), flush=True)
        mine = [r for r in rows if r["model"] == model]
        summary = {k: float(np.median([r[k] for r in mine])) for k in ("patch_cosine_median", "heatmap_correlation")}
        summary["heatmap_correlation_quartiles"] = [float(q) for q in np.quantile(
            [r["heatmap_correlation"] for r in mine], [0.25, 0.75])]
        summary["photos_at_least_0.9"] = sum(r["heatmap_correlation"] >= 0.9 for r in mine)
        print(json.dumps({"model": model, "median over photos": summary, "photos": len(mine)}), flush=True)
    return rows


def context(args: argparse.Namespace) -> list[dict]:
    import torch
    import torch.nn.functional as F

    from exifclip import load_image
    from exifclip.modeling.dense import dense_patch_embeddings, feature_stride
    from exifclip.modeling.hub import load_model
    from exifclip.modeling.model import patches_to_pixel_values
    from exifclip.patches import make_grid

    model = load_model(args.model, device="cpu").eval()
    s, p = feature_stride(model), model.config.patch_size
    rng = np.random.default_rng(0)
    rows = []
    for path in sorted(Path(args.data).iterdir())[:args.n]:
        image = load_image(path)
        grid = make_grid(image.shape, p, stride=s)  # windows on the cells, as in training
        row = {"photo": path.name}
        with torch.inference_mode():
            fast = dense_patch_embeddings(model, image, grid)
            for c in args.contexts:
                height, width = image.shape[:2]
                inside = [(i, j) for i in range(grid.n_rows) for j in range(grid.n_cols)
                          if min(i * s, j * s) >= c and i * s + p + c <= height and j * s + p + c <= width]
                picks = [inside[k] for k in rng.choice(len(inside), min(args.windows, len(inside)), replace=False)]
                views = torch.from_numpy(np.stack([image[i * s - c:i * s + p + c, j * s - c:j * s + p + c]
                                                   for i, j in picks]))
                pixels = patches_to_pixel_values(views, model.config.image_mean, model.config.image_std)
                trained, model.config.patch_context = model.config.patch_context, c  # read as a context-c model
                try:
                    z = F.normalize(model.get_image_features(pixels), dim=-1).numpy()
                finally:
                    model.config.patch_context = trained
                cosine = np.sum(z * fast[[i * grid.n_cols + j for i, j in picks]], axis=1)
                row[f"context_{c}"] = round(float(np.median(cosine)), 4)
        print(json.dumps(row), flush=True)
        rows.append(row)
    print(json.dumps({"median over photos": {f"context_{c}": float(np.median([r[f"context_{c}"] for r in rows]))
                                             for c in args.contexts}}))
    return rows


#: The trunks whose tiling the ``margin`` and ``tile`` parts time: (architecture, front-end), random weights.
TRUNKS = (("paper-resnet50", "rgb"), ("small", "srm"))


def _trunk_model(arch: str, front_end: str):
    """A random-init model of ``arch`` with ``front_end``, in eval mode and channels_last, as models load."""
    import torch

    from exifclip.modeling import create_model

    return create_model(arch, seed=0, vision_front_end=front_end).eval().to(memory_format=torch.channels_last)


def margin(args: argparse.Namespace) -> list[dict]:
    import torch

    from exifclip.modeling.dense import trunk_features, trunk_margin

    image = _camera_mosaic(Path(args.data), SIZES_MP["12"])
    rows = []
    for arch, front_end in TRUNKS:
        model = _trunk_model(arch, front_end)
        seconds: dict = {128: [], None: []}
        with torch.inference_mode():
            for rep in range(args.repeats):
                for m in ((128, None) if rep % 2 == 0 else (None, 128)):
                    start = time.perf_counter()
                    trunk_features(model, image, margin=m)
                    seconds[m].append(time.perf_counter() - start)
        row = {"arch": arch, "front_end": front_end, "threads": torch.get_num_threads(), "margin": trunk_margin(model),
               "margin_128_s": round(min(seconds[128]), 2), "own_margin_s": round(min(seconds[None]), 2)}
        row["ratio"] = round(row["own_margin_s"] / row["margin_128_s"], 2)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def _tile_run(arch: str, front_end: str, size: str, data: str, tile: int, repeats: int) -> dict:
    """One tile size, timed in this (child) process: best of ``repeats`` and the process's peak RSS."""
    import resource

    import torch

    from exifclip.modeling.dense import trunk_features

    image = _camera_mosaic(Path(data), SIZES_MP[size])
    model = _trunk_model(arch, front_end)
    base_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    seconds = []
    with torch.inference_mode():
        for _ in range(repeats):
            start = time.perf_counter()
            features = trunk_features(model, image, tile=tile)
            seconds.append(time.perf_counter() - start)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"arch": arch, "front_end": front_end, "megapixels": size, "tile": tile, "threads": torch.get_num_threads(),
            "trunk_s": round(min(seconds), 2), "peak_rss_mib": round(peak_mib), "before_trunk_mib": round(base_mib),
            "feature_cells": int(features.shape[-2] * features.shape[-1])}


def tile(args: argparse.Namespace) -> list[dict]:
    import multiprocessing

    rows = []
    spawn = multiprocessing.get_context("spawn")
    for arch, front_end in TRUNKS:
        for side in args.tiles:
            with spawn.Pool(1) as pool:
                row = pool.apply(_tile_run, (arch, front_end, args.size, args.data, side, args.repeats))
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="part", required=True)
    p = sub.add_parser("speed")
    p.add_argument("--data", required=True, help="a folder of camera JPEGs (e.g. ../shared/data/digicam)")
    p.add_argument("--sizes", nargs="+", default=list(SIZES_MP), choices=list(SIZES_MP))
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--grids", nargs="+", default=["default", "dense"], choices=["default", "dense"])
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (CUDA runs under bf16 autocast)")
    p.add_argument("--runtimes", nargs="+", default=["torch"], choices=["torch", "onnxruntime"],
                   help="the image tower's runtime, a row each (onnxruntime: the [onnx] extra; its export, once per "
                   "model, is in the warm-up)")
    p.add_argument("--models", nargs="*", metavar="MODEL",
                   help="packaged names, model folders or 'paper-resnet50 (random)' (default: exifclip-small, "
                   "exifclip-small-s16 and that)")
    p = sub.add_parser("interleaved")
    p.add_argument("--data", required=True, help="a folder of camera JPEGs")
    p.add_argument("--models", nargs="+", required=True, help="packaged names or model folders; ratios to the first")
    p.add_argument("--photos", type=int, default=3)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p = sub.add_parser("agreement")
    p.add_argument("--data", required=True)
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--models", nargs="+", default=["exifclip-small", "exifclip-small-s16"])
    p = sub.add_parser("context")
    p.add_argument("--model", required=True, help="packaged name or directory")
    p.add_argument("--data", required=True, help="a folder of photos")
    p.add_argument("--n", type=int, default=6, help="photos")
    p.add_argument("--windows", type=int, default=40, help="windows per photo")
    p.add_argument("--contexts", type=int, nargs="+", default=[0, 32, 64, 96, 128, 160])
    p = sub.add_parser("margin")
    p.add_argument("--data", required=True)
    p.add_argument("--repeats", type=int, default=2)
    p = sub.add_parser("tile")
    p.add_argument("--data", required=True)
    p.add_argument("--size", default="12", choices=list(SIZES_MP))
    p.add_argument("--tiles", type=int, nargs="+", default=[1024, 1536, 2048, 4096])
    p.add_argument("--repeats", type=int, default=1)
    for p in sub.choices.values():
        p.add_argument("--out", help="also write the rows as JSON")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    parts = {"speed": speed, "interleaved": interleaved, "agreement": agreement, "context": context, "margin": margin,
             "tile": tile}
    rows = parts[args.part](args)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
