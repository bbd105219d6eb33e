"""Throughput of ExifPatchEmbedder.transform against a bare forward pass.

For each architecture (random init: speed does not depend on the weights),
the same patches are embedded twice at the same batch size:

* ``bare``: the model's ``get_image_features`` on batches that are already
  normalised float tensors, under ``torch.inference_mode`` - the ceiling;
* ``pipeline``: ``ExifPatchEmbedder.transform`` from the images (arrays, or
  JPEG files that it must decode), which also grids, gathers, normalises and
  pools.

The ratio pipeline / bare is the overhead figure (target >= 0.9). Timings are
the best of ``--repeats`` runs, after one warm-up run.

Usage::

    python benchmarks/bench_embed.py --arch small paper-resnet50 --device cpu
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from exifclip.embedder import ExifPatchEmbedder
from exifclip.modeling.hub import clear_model_cache, load_model
from exifclip.modeling import create_model, patches_to_pixel_values
from exifclip.patches import iter_patch_batches, make_grid, patch_view


def _best_of(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench(arch: str, n_images: int, size: int, num_per_dim: int, batch_size: int, repeats: int, device: str):
    tmp = Path(tempfile.mkdtemp())
    create_model(arch, seed=0).save_pretrained(tmp / "model")
    model = load_model(tmp / "model", device=device)
    p = model.config.patch_size
    rng = np.random.default_rng(0)
    # Smooth random images (a real photo's JPEG decode cost, not white noise's).
    base = rng.integers(0, 256, (n_images, size // 8, size // 8, 3), dtype=np.uint8)
    images = [np.asarray(Image.fromarray(b).resize((size, size), Image.BILINEAR)) for b in base]
    files = []
    for i, img in enumerate(images):
        files.append(tmp / f"img{i}.jpg")
        Image.fromarray(img).save(files[-1], quality=92)

    grids = [make_grid(img.shape, p, num_per_dim=num_per_dim) for img in images]
    n_patches = sum(g.n_patches for g in grids)
    dev = next(model.parameters()).device
    batches = [
        patches_to_pixel_values(torch.from_numpy(b), model.config.image_mean, model.config.image_std).to(dev)
        for b, _, _ in iter_patch_batches([patch_view(im, g) for im, g in zip(images, grids)], batch_size)
    ]

    def bare():
        with torch.inference_mode():
            for x in batches:
                model.get_image_features(x)
        if dev.type == "cuda":
            torch.cuda.synchronize()

    embedder = ExifPatchEmbedder(model=str(tmp / "model"), num_per_dim=num_per_dim, batch_size=batch_size,
                                 device=device).fit()

    t_bare = _best_of(bare, repeats)
    t_arrays = _best_of(lambda: embedder.transform(images), repeats)
    t_files = _best_of(lambda: embedder.transform(files), repeats)
    clear_model_cache()
    return {
        "arch": arch,
        "device": str(dev),
        "images": n_images,
        "image_size": f"{size}x{size}",
        "patch_size": p,
        "patches": n_patches,
        "batch_size": batch_size,
        "bare_patches_per_s": n_patches / t_bare,
        "pipeline_arrays_patches_per_s": n_patches / t_arrays,
        "pipeline_jpeg_patches_per_s": n_patches / t_files,
        "ratio_arrays": t_bare / t_arrays,
        "ratio_jpeg": t_bare / t_files,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=["small", "paper-resnet50"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()
    settings = {  # sized so each run takes seconds on 2 CPU cores
        "small": dict(n_images=8, size=1024, num_per_dim=20),
        "paper-resnet50": dict(n_images=2, size=1024, num_per_dim=10),
    }
    results = []
    for arch in args.arch:
        s = settings.get(arch, settings["small"])
        results.append(bench(arch, batch_size=args.batch_size, repeats=args.repeats, device=args.device, **s))
        r = results[-1]
        print(
            f"{r['arch']:>15} {r['device']}: {r['patches']} patches of {r['patch_size']} px, batch {r['batch_size']}: "
            f"bare {r['bare_patches_per_s']:.0f}/s, pipeline from arrays {r['pipeline_arrays_patches_per_s']:.0f}/s "
            f"(ratio {r['ratio_arrays']:.2f}), from JPEG files {r['pipeline_jpeg_patches_per_s']:.0f}/s "
            f"(ratio {r['ratio_jpeg']:.2f})",
            flush=True,
        )
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
            "processor": platform.processor(), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print(json.dumps(meta))
    if args.out:
        Path(args.out).write_text(json.dumps({"meta": meta, "results": results}, indent=2))


if __name__ == "__main__":
    main()
