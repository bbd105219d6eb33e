"""How good is the packaged default model? Figures for its model card.

On splices built only from the camera models that ``exifclip-small`` never
saw in training (``recipes/exifclip_small.py``, ``HELD_OUT_MODELS``), in PNG
and JPEG-90 variants plus authentic crops, it reports p-mAP, cIoU, F1, MCC,
detection AP and seconds per image for:

* ``exifclip-small`` (or ``--model``),
* the random-init ``small`` architecture (same code, untrained weights),
* a classical baseline: local variance of the noise residual (the image
  minus its 3x3 median), whose deviation from the image's median is the
  heatmap.

It also reports camera-model linear-probe accuracy (embeddings + logistic
regression) on the photos of the training cameras that the recipe kept out
of training, against chance and the random-init model.

Usage::

    python benchmarks/bench_default_model.py --data ../shared/data/digicam --out /tmp/default-model.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))
from exifclip_small import split  # noqa: E402


@dataclass
class BaselineResult:
    heatmap: np.ndarray
    mask: np.ndarray
    score: float


def noise_residual_localize(image: np.ndarray, window: int = 32) -> BaselineResult:
    """Classical baseline: where the local noise level departs from the image's typical level."""
    from scipy.ndimage import median_filter, uniform_filter

    from exifclip.splice import split_two_means

    grey = image.astype(np.float32).mean(axis=2)
    residual = grey - median_filter(grey, size=3)
    local_var = uniform_filter(residual * residual, size=window)
    log_var = np.log(local_var + 1e-3)
    deviation = np.abs(log_var - np.median(log_var))
    heatmap = (deviation / max(float(deviation.max()), 1e-6)).astype(np.float32)
    coarse = heatmap[::8, ::8]
    cut = split_two_means(coarse.ravel())
    threshold = coarse.ravel()[cut].min() if cut.any() else 1.0
    score = float(np.percentile(deviation, 95) - np.percentile(deviation, 50))
    return BaselineResult(heatmap, heatmap >= threshold, score)


def build_splices(held: dict, work: Path, n: int, seed: int) -> Path:
    from exifclip.splice.synthetic import make_splices

    photos = work / "heldout-photos"
    photos.mkdir(parents=True, exist_ok=True)
    for files in held.values():
        for f in files:
            link = photos / Path(f).name
            if not link.exists():
                link.symlink_to(f)
    out = work / "splices"
    if not (out / "manifest.csv").is_file():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            make_splices(photos, out, n=n, seed=seed, jpeg_quality=90, n_authentic=n, max_size=1024)
    return out


def evaluate(name: str, localize, samples) -> dict:
    from exifclip.splice.evaluation import evaluate_localization
    from exifclip.io import load_image

    results, seconds = [], []
    for s in samples:
        image = load_image(s.image)
        start = time.perf_counter()
        results.append(localize(image))
        seconds.append(time.perf_counter() - start)
    report = evaluate_localization(results, [s.mask for s in samples], labels=[s.label for s in samples])

    def r(v):
        return None if v is None else round(float(v), 4)

    from exifclip.splice.metrics import detection_ap

    labels = [s.label for s in samples]
    by_score = {}
    if results and getattr(results[0], "scores", None):
        for key in results[0].scores:
            by_score[key] = r(detection_ap([res.scores[key] for res in results], labels))
    return {"method": name, "detection_ap_by_score": by_score, "pmap": r(report.pmap), "ciou": r(report.ciou),
            "f1": r(report.f1),
            "mcc": r(report.mcc), "detection_ap": r(report.detection_ap), "roc_auc": r(report.roc_auc),
            "s_per_image": round(float(np.mean(seconds)), 3), "n_spliced": report.n_spliced,
            "n_authentic": report.n_authentic}


def linear_probe(model_dir: str, train_files: list[str], test_files: list[str]) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from exifclip.embedder import ExifPatchEmbedder
    from exifclip.exif import read_exif

    def label(f):
        e = read_exif(f)
        return f"{e.get('Make', '')} {e.get('Model', '')}".strip()

    y_train = [label(f) for f in train_files]
    y_test = [label(f) for f in test_files]
    emb = ExifPatchEmbedder(model=model_dir, device="cpu", num_per_dim=10).fit()
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    clf.fit(emb.transform(train_files), y_train)
    accuracy = float((clf.predict(emb.transform(test_files)) == np.array(y_test)).mean())
    return {"accuracy": round(accuracy, 4), "n_test": len(test_files), "n_classes": len(set(y_train)),
            "chance": round(1 / len(set(y_train)), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/digicam")
    parser.add_argument("--model", default="exifclip-small")
    parser.add_argument("--work", default=None, help="where the held-out splices are built (kept)")
    parser.add_argument("--n", type=int, default=30, help="spliced images (and as many authentic)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    from exifclip.splice.datasets import load_synthetic
    from exifclip.modeling.hub import resolve_model_dir
    from exifclip.modeling import create_model
    from exifclip.splice import SpliceLocalizer

    train_files, held, probe_test = split(Path(args.data))
    work = Path(args.work or tempfile.mkdtemp(prefix="default-model-"))
    bench = build_splices(held, work, args.n, args.seed)
    random_dir = work / "random-init-small"
    create_model("small", seed=0).save_pretrained(random_dir)
    model_dir = str(resolve_model_dir(args.model))

    figures: dict = {"model": args.model, "held_out_models": sorted(held), "splices": {}}
    for variant in ("png", "jpeg90"):
        samples = list(load_synthetic(bench, variant=variant))
        rows = []
        for name, directory in ((args.model, model_dir), ("random-init small", str(random_dir))):
            loc = SpliceLocalizer(model=directory, device="cpu").fit()
            rows.append(evaluate(name, lambda img, loc=loc: loc.localize([img])[0], samples))
        rows.append(evaluate("noise-residual baseline", noise_residual_localize, samples))
        figures["splices"][variant] = rows
        for row in rows:
            print(variant, json.dumps(row), flush=True)
    figures["linear_probe"] = {
        args.model: linear_probe(model_dir, train_files, probe_test),
        "random-init small": linear_probe(str(random_dir), train_files, probe_test),
    }
    print(json.dumps(figures["linear_probe"]))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
