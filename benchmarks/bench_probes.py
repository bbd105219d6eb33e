"""Camera-model probes: what do the patch embeddings know about the camera?

On the photos of the training cameras of ``exifclip-small`` that its recipe
kept out of training (``recipes/exifclip_small.py``, ``split()``: the last
photo of every training camera with at least three photos), it measures
camera-model accuracy from pixels alone:

(a) zero shot (:class:`exifclip.probes.ExifZeroShotClassifier`): the
    candidates are all the training camera models, written as EXIF text
    in two ways, ``"Model: <Model>"`` (the single pair, the estimator's
    default) and ``"Make: <Make>, Model: <Model>"`` (the first two items of
    the training sentences); each with the three poolings of
    :func:`exifclip.probes.zero_shot_scores`;
(b) a linear probe (:func:`exifclip.probes.make_linear_probe`: image
    embeddings, standardised, logistic regression with ``C=1``) trained on
    the training photos of those cameras;

for the model under test and for a random-init model of the same
architecture (``create_model("small", seed=0)``), against chance
(1 / number of classes). Labels and candidates are the EXIF ``Model`` values
as :func:`exifclip.exif.read_exif` reads them (all distinct here). Accuracy
is the fraction of test photos whose top candidate is right; log-loss the
mean of ``-log p(true model)`` (lower is better; ``log(n_classes)`` is the
uniform guess). Patch embeddings are computed once per model and photo and
shared by all zero-shot variants, which go through the same functions as
the estimator; the estimator itself is run once on its defaults and must
agree. For the model under test, zero shot is also run on the localiser's
denser 30-per-side grid (``--dense-num-per-dim``). With 27 test photos one
photo is 0.037 of accuracy: read differences of a photo or two as noise.

Usage::

    python benchmarks/bench_probes.py --data ../shared/data/digicam --out /tmp/probes.json

Prints a markdown table and one JSON line; 8 minutes on 2 CPU cores shared with
other work (3 minutes of CPU time).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))
from exifclip_small import split  # noqa: E402

PROMPTS = {
    "Model": lambda make, model: f"Model: {model}",
    "Make+Model": lambda make, model: f"Make: {make}, Model: {model}",
}


def camera_of(path: str) -> tuple[str, str]:
    """(Make, Model) of a photo, as read_exif reads them."""
    from exifclip.exif import read_exif

    exif = read_exif(path)
    return exif.get("Make", ""), exif.get("Model", "")


def zero_shot_figures(
    patch_embeddings: list[np.ndarray],
    y_test: np.ndarray,
    makes: dict,
    classes: list,
    model,
    batch_size: int,
    prompts: tuple[str, ...] = tuple(PROMPTS),
    label: str = "",
) -> list[dict]:
    """Accuracy and log-loss of every prompt form x pooling, from shared patch embeddings."""
    from scipy.special import log_softmax

    from exifclip.embedder import embed_texts
    from exifclip.probes import POOLINGS, zero_shot_scores

    scale = float(model.get_logit_scale().detach())
    truth = np.array([classes.index(v) for v in y_test])
    rows = []
    for prompt_name in prompts:
        texts = [PROMPTS[prompt_name](makes[c], c) for c in classes]
        text_embeddings = embed_texts(model, texts, batch_size=batch_size)
        for pooling in POOLINGS:
            log_proba = np.stack(
                [log_softmax(zero_shot_scores(z, text_embeddings, scale, pooling)) for z in patch_embeddings]
            )
            rows.append(
                {
                    "method": f"zero-shot {prompt_name}, {pooling}{label}",
                    "prompt": prompt_name,
                    "pooling": pooling,
                    "accuracy": float((log_proba.argmax(1) == truth).mean()),
                    "n_correct": int((log_proba.argmax(1) == truth).sum()),
                    "top5_accuracy": float((np.argsort(-log_proba, axis=1)[:, :5] == truth[:, None]).any(1).mean()),
                    "log_loss": float(-log_proba[np.arange(len(truth)), truth].mean()),
                }
            )
    return rows


def evaluate_model(
    name: str,
    model_dir: str,
    train_files: list[str],
    test_files: list[str],
    y_train: np.ndarray,
    y_test: np.ndarray,
    makes: dict,
    classes: list,
    num_per_dim: int,
    batch_size: int,
    dense_num_per_dim: int = 0,
) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from exifclip.embedder import ExifPatchEmbedder, pool_patch_embeddings
    from exifclip.probes import ExifZeroShotClassifier

    embedder = ExifPatchEmbedder(
        model=model_dir, device="cpu", num_per_dim=num_per_dim, batch_size=batch_size, errors="raise"
    ).fit()
    start = time.perf_counter()
    test_patches = [item.embeddings for item in embedder.transform_patches(test_files)]
    test_s = time.perf_counter() - start
    rows = zero_shot_figures(test_patches, y_test, makes, classes, embedder.model_, batch_size)

    # The estimator on its defaults (pooling, "Model: <value>" texts) must agree with its row.
    clf = ExifZeroShotClassifier(
        tag="Model",
        candidates=classes,
        model=model_dir,
        device="cpu",
        num_per_dim=num_per_dim,
        batch_size=batch_size,
        errors="raise",
    ).fit()
    estimator_accuracy = float(clf.score(test_files, y_test))
    default_row = next(r for r in rows if r["prompt"] == "Model" and r["pooling"] == clf.pooling)
    if abs(estimator_accuracy - default_row["accuracy"]) > 1e-9:
        raise AssertionError(
            f"{name}: estimator accuracy {estimator_accuracy} != functional core {default_row['accuracy']}"
        )

    # Linear probe: the same pooled embeddings ExifPatchEmbedder.transform gives.
    start = time.perf_counter()
    train_embeddings = embedder.transform(train_files)
    train_s = time.perf_counter() - start
    test_embeddings = np.stack([pool_patch_embeddings(z) for z in test_patches])
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
    probe.fit(train_embeddings, y_train)
    proba = probe.predict_proba(test_embeddings)
    column = {c: i for i, c in enumerate(probe.classes_)}
    truth = np.array([column[v] for v in y_test])
    rows.append(
        {
            "method": "linear probe (C=1)",
            "prompt": None,
            "pooling": None,
            "accuracy": float((probe.predict(test_embeddings) == y_test).mean()),
            "n_correct": int((probe.predict(test_embeddings) == y_test).sum()),
            "top5_accuracy": float((np.argsort(-proba, axis=1)[:, :5] == truth[:, None]).any(1).mean()),
            "log_loss": float(-np.log(np.maximum(proba[np.arange(len(truth)), truth], 1e-300)).mean()),
        }
    )
    if dense_num_per_dim:
        # Zero shot on a denser grid: does classification need the localiser's 30 x 30 patches?
        dense = ExifPatchEmbedder(
            model=model_dir, device="cpu", num_per_dim=dense_num_per_dim, batch_size=batch_size, errors="raise"
        ).fit()
        dense_patches = [item.embeddings for item in dense.transform_patches(test_files)]
        rows.extend(
            zero_shot_figures(
                dense_patches,
                y_test,
                makes,
                classes,
                dense.model_,
                batch_size,
                prompts=("Model",),
                label=f", grid {dense_num_per_dim}",
            )
        )
    n_patches = sum(len(z) for z in test_patches)
    return {
        "model": name,
        "rows": rows,
        "estimator_default_accuracy": estimator_accuracy,
        "embed_s": {"test": round(test_s, 1), "train": round(train_s, 1)},
        "test_patches_per_s": round(n_patches / max(test_s, 1e-9), 1),
    }


def markdown_table(results: list[dict], chance: float, n_classes: int, n_test: int) -> str:
    lines = [
        f"Camera model, {n_classes} classes, {n_test} held-out photos of the training cameras "
        f"(chance accuracy {chance:.3f}, uniform log-loss {np.log(n_classes):.2f})",
        "",
        "| model | method | accuracy | top-5 accuracy | log-loss |",
        "|---|---|---|---|---|",
    ]
    for result in results:
        for row in result["rows"]:
            lines.append(
                f"| {result['model']} | {row['method']} | {row['accuracy']:.3f} "
                f"({row['n_correct']}/{n_test}) | "
                f"{row['top5_accuracy']:.3f} | {row['log_loss']:.2f} |"
            )
    lines.append(f"| - | chance | {chance:.3f} | {min(1.0, 5 * chance):.3f} | {np.log(n_classes):.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/digicam", help="the digicam folder (with MANIFEST.csv)")
    parser.add_argument("--model", default="exifclip-small", help="model under test")
    parser.add_argument("--num-per-dim", type=int, default=10, help="patch grid: patches along the longer side")
    parser.add_argument(
        "--dense-num-per-dim",
        type=int,
        default=30,
        help="also run zero shot on this denser grid, model under test only (0: skip)",
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--out", help="also write the figures as JSON here")
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    from exifclip.modeling.hub import resolve_model_dir
    from exifclip.modeling import create_model

    data = Path(args.data)
    if not (data / "MANIFEST.csv").is_file():
        raise SystemExit(f"{data}: no MANIFEST.csv; point --data at the digicam folder")
    train_files, _, test_files = split(data)
    train_cameras = [camera_of(f) for f in train_files]
    test_cameras = [camera_of(f) for f in test_files]
    makes = dict((model, make) for make, model in train_cameras)
    classes = sorted(makes)
    if len(set(train_cameras)) != len(classes):
        raise SystemExit("two makes share a Model value: the Model tag alone does not name the camera")
    y_train = np.array([model for _, model in train_cameras])
    y_test = np.array([model for _, model in test_cameras])
    if not set(y_test) <= set(classes):
        raise SystemExit(f"probe-test cameras missing from training: {sorted(set(y_test) - set(classes))}")
    chance = 1.0 / len(classes)

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        random_dir = str(Path(tmp) / "random-init-small")
        create_model("small", seed=0).save_pretrained(random_dir)
        results = [
            evaluate_model(
                name,
                directory,
                train_files,
                test_files,
                y_train,
                y_test,
                makes,
                classes,
                args.num_per_dim,
                args.batch_size,
                dense,
            )
            for name, directory, dense in (
                (args.model, str(resolve_model_dir(args.model)), args.dense_num_per_dim),
                ("random-init small", random_dir, 0),
            )
        ]
    figures = {
        "benchmark": "camera-model probes",
        "data": str(data),
        "n_classes": len(classes),
        "n_train": len(train_files),
        "n_test": len(test_files),
        "chance": chance,
        "num_per_dim": args.num_per_dim,
        "label": "EXIF Model",
        "results": results,
        "wall_s": round(time.perf_counter() - start, 1),
    }
    print(markdown_table(results, chance, len(classes), len(test_files)))
    print(json.dumps(figures))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
