"""Can patch embeddings tell how strongly a photo is radially distorted?

Photos: every photo of the camera models that ``exifclip-small`` never saw in
training (``recipes/exifclip_small.py``, ``HELD_OUT_MODELS``: 71 photos of 9
cameras in ``../shared/data/digicam``).

Task: each photo is distorted ``--per-photo`` times with the division model
(:func:`exifclip.distortion.distort`, image-centred), ``k1`` drawn uniformly
from ``--k-range`` (default ``[-0.3, 0.1]``, half-diagonal units, ``k1 < 0``
barrel). Why this range: in these units the output's corner shows the scene
point a pinhole camera would put at ``1 / (1 + k1)`` half-diagonals, so
``-0.3`` displaces the corner by 43 % (the strong barrel of uncorrected
action and ultra-wide cameras; fisheyes are beyond any polynomial model) and
``+0.1`` by -9 % (the mild pincushion of telephoto zooms); ordinary lenses,
with a few percent of distortion, sit at ``|k1| < 0.1``. The range leans to
barrel because real lenses do. The photos' own lens distortion is label
noise, small here: each is a centre crop of about 0.4 of the original's
half-diagonal, which scales its ``k1`` by about 0.4^2.

Resolution: photos are distorted at full resolution (at most 1536 px a side)
and fed to the embedder as they are, never resized: the embedder looks at
full-resolution patches, and ``k`` in half-diagonal units does not change
with resizing anyway. ``--sensor-downsample F`` instead averages FxF pixel
blocks after the warp, which imitates a sensor integrating an optically
distorted image and hides most of the bilinear-interpolation pattern that a
synthetic warp leaves but real optics do not: the gap between the two runs
shows how much a model reads the resampling rather than the geometry.

Evaluation: grouped 5-fold cross-validation, grouped by source photo (no
photo in both train and test), the same regressor on each feature set:
standardised ridge regression whose alpha is chosen, inside each training
fold, by grouped cross-validation again
(:func:`exifclip.distortion.fit_ring_regressor` with the photos as groups;
leave-one-out alpha selection lets the copies of a photo vote for far too
little regularisation):

(a) ``exifclip-small`` ring features (:func:`exifclip.distortion.ring_features`);
(b) a classical baseline: per ring, log energy of the radial and tangential
    image gradients, their log ratio and the log energy of the Laplacian;
(c) predicting the training mean;
(d) the random-init ``small`` architecture's ring features (same code,
    untrained weights).

Reported: MAE of ``k1``, accuracy over 5 equal bins of the range, Pearson r,
seconds; plus the time to distort a 12-megapixel photo.

Usage::

    python benchmarks/bench_distortion.py --data ../shared/data/digicam --out /tmp/distortion.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))
from exifclip_small import split  # noqa: E402


def radial_gradient_features(image: np.ndarray, n_rings: int = 4) -> np.ndarray:
    """Classical features: how sharp the image is along and across the radius, ring by ring.

    Barrel distortion minifies the periphery radially more than
    tangentially (pincushion magnifies it), so the balance of radial and
    tangential gradient energy, and the high-frequency energy, change with
    radius by an amount that grows with ``|k1|``.
    """
    grey = image.astype(np.float32).mean(axis=2)
    gy, gx = np.gradient(grey)
    laplacian = -4 * grey[1:-1, 1:-1] + grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:]
    height, width = grey.shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    dy, dx = ys - (height - 1) / 2, xs - (width - 1) / 2
    radius = np.hypot(dx, dy)
    with np.errstate(invalid="ignore", divide="ignore"):
        ux, uy = np.nan_to_num(dx / radius), np.nan_to_num(dy / radius)
    radial = (gx * ux + gy * uy) ** 2
    tangential = (gy * ux - gx * uy) ** 2
    ring = np.minimum((radius / (0.5 * math.hypot(width, height)) * n_rings).astype(int), n_rings - 1)
    inner_ring = ring[1:-1, 1:-1]
    rows = []
    for k in range(n_rings):
        sel, inner = ring == k, inner_ring == k
        r_energy = np.log(radial[sel].mean() + 1e-3) if sel.any() else 0.0
        t_energy = np.log(tangential[sel].mean() + 1e-3) if sel.any() else 0.0
        lap = np.log((laplacian[inner] ** 2).mean() + 1e-3) if inner.any() else 0.0
        rows.append([r_energy, t_energy, r_energy - t_energy, lap])
    rows = np.asarray(rows)
    return np.concatenate([rows.ravel(), np.diff(rows, axis=0).ravel()])


def sensor_downsample(image: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor x factor`` pixel blocks (the leftover edge rows/columns are dropped)."""
    if factor <= 1:
        return image
    h, w = image.shape[0] // factor * factor, image.shape[1] // factor * factor
    blocks = image[:h, :w].reshape(h // factor, factor, w // factor, factor, 3).astype(np.float32)
    return np.clip(np.rint(blocks.mean(axis=(1, 3))), 0, 255).astype(np.uint8)


def embedder_features(model: str, images: list, num_per_dim: int, n_rings: int, batch_size: int) -> np.ndarray:
    from exifclip.distortion import ring_features
    from exifclip.embedder import ExifPatchEmbedder

    embedder = ExifPatchEmbedder(
        model=model, num_per_dim=num_per_dim, batch_size=batch_size, device="auto", errors="raise"
    ).fit()
    rows = []
    for start in range(0, len(images), 16):  # bounded memory: 16 photos' patches at a time
        for item in embedder.transform_patches(images[start : start + 16]):
            rows.append(ring_features(item.embeddings, item.grid, n_rings=n_rings))  # DistortionRegressor's
    return np.asarray(rows)


def bin_index(k: np.ndarray, low: float, high: float, n_bins: int = 5) -> np.ndarray:
    return np.clip(np.floor((k - low) / (high - low) * n_bins), 0, n_bins - 1).astype(int)


def evaluate(features: np.ndarray | None, k1: np.ndarray, groups: np.ndarray, k_range, folds: int) -> dict:
    """Grouped cross-validated predictions of ``k1``; ``features=None`` predicts the training mean.

    Inside each training fold the ridge alpha is again chosen by grouped
    cross-validation (``fit_ring_regressor`` with the photos as groups, as
    ``DistortionRegressor.fit(X, y, groups=...)`` does).
    """
    from sklearn.model_selection import GroupKFold

    from exifclip.distortion import fit_ring_regressor

    predicted = np.empty_like(k1)
    for train, test in GroupKFold(n_splits=folds).split(k1, k1, groups):
        if features is None:
            predicted[test] = k1[train].mean()
            continue
        regressor = fit_ring_regressor(features[train], k1[train], groups=groups[train])
        predicted[test] = regressor.predict(features[test])
    low, high = k_range
    accuracy = float(np.mean(bin_index(predicted, low, high) == bin_index(k1, low, high)))
    r = float(np.corrcoef(predicted, k1)[0, 1]) if np.std(predicted) > 0 else float("nan")
    return {"mae_k1": float(np.mean(np.abs(predicted - k1))), "bin_accuracy": accuracy, "pearson_r": r}


def time_12mp_distortion() -> float:
    from exifclip.distortion import distort

    photo = np.random.default_rng(0).integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
    start = time.perf_counter()
    distort(photo, -0.2)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/digicam", help="the digicam folder (with MANIFEST.csv)")
    parser.add_argument("--model", default="exifclip-small", help="model for (a)")
    parser.add_argument("--per-photo", type=int, default=3, help="distorted copies of each photo")
    parser.add_argument("--k-range", type=float, nargs=2, default=(-0.3, 0.1), metavar=("LOW", "HIGH"))
    parser.add_argument("--num-per-dim", type=int, default=12, help="patch grid of the embedder")
    parser.add_argument("--n-rings", type=int, default=4)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--sensor-downsample", type=int, default=1, help="average FxF blocks after the warp")
    parser.add_argument("--no-random-init", action="store_true", help="skip (d), the random-init model")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the JSON summary here too")
    args = parser.parse_args()

    from exifclip.distortion import make_distortion_dataset

    data = Path(args.data)
    if not (data / "MANIFEST.csv").is_file():
        raise SystemExit(f"{data}: no MANIFEST.csv; point --data at ../shared/data/digicam")
    _, held, _ = split(data)
    photos = [f for files in held.values() for f in files]
    k_range = tuple(args.k_range)
    timings = {}

    start = time.perf_counter()
    images, params, groups = make_distortion_dataset(
        photos, n=args.per_photo * len(photos), k_range=k_range, seed=args.seed, return_source_index=True
    )
    images = [sensor_downsample(image, args.sensor_downsample) for image in images]
    k1 = params[:, 0]
    timings["distort_s"] = time.perf_counter() - start

    feature_sets: dict[str, np.ndarray | None] = {}
    start = time.perf_counter()
    feature_sets[f"{args.model} ring features"] = embedder_features(
        args.model, images, args.num_per_dim, args.n_rings, args.batch_size
    )
    timings["embed_s"] = time.perf_counter() - start
    start = time.perf_counter()
    feature_sets["radial gradient statistics"] = np.stack(
        [radial_gradient_features(image, args.n_rings) for image in images]
    )
    timings["gradient_features_s"] = time.perf_counter() - start
    feature_sets["training mean"] = None
    if not args.no_random_init:
        from exifclip.modeling import create_model

        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            create_model("small", seed=0).save_pretrained(tmp)
            feature_sets["random-init small ring features"] = embedder_features(
                tmp, images, args.num_per_dim, args.n_rings, args.batch_size
            )
        timings["embed_random_init_s"] = time.perf_counter() - start

    results = {name: evaluate(f, k1, groups, k_range, args.folds) for name, f in feature_sets.items()}
    timings["distort_12mp_s"] = time_12mp_distortion()

    print(
        f"\n{len(images)} distorted images of {len(photos)} held-out photos ({len(held)} camera models), "
        f"division k1 ~ U{list(k_range)}, sensor downsample {args.sensor_downsample}, "
        f"grouped {args.folds}-fold CV by photo\n"
    )
    print("| features | MAE k1 | 5-bin accuracy | Pearson r |")
    print("|---|---|---|---|")
    for name, row in results.items():
        print(f"| {name} | {row['mae_k1']:.4f} | {row['bin_accuracy']:.3f} | {row['pearson_r']:.3f} |")
    print(f"\nchance 5-bin accuracy: 0.200; distort a 12 MP photo: {timings['distort_12mp_s']:.2f} s")
    summary = {
        "benchmark": "distortion",
        "photos": len(photos),
        "camera_models": len(held),
        "images": len(images),
        "k_range": list(k_range),
        "model": args.model,
        "num_per_dim": args.num_per_dim,
        "n_rings": args.n_rings,
        "sensor_downsample": args.sensor_downsample,
        "folds": args.folds,
        "seed": args.seed,
        "results": results,
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
    }
    print(json.dumps(summary))
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
