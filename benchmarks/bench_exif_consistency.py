"""Do the pixels match their EXIF? AUC of the learned check on camera models never seen in training.

For fold ``k`` of the leave-camera-models-out split (``unseen_camera_folds.json``,
shared with ``bench_unseen_cameras.py``), a model trained without fold ``k``'s
camera models (``--model``) embeds every photo of fold ``k`` (mean of its
patch embeddings) and the EXIF text of every photo of fold ``k`` (per tag
group of :data:`exifclip.exif_consistency.TAG_GROUPS`). A pair (photo i, EXIF
of photo j) is scored two ways:

* ``cosine``: the raw similarity of the photo's embedding and the text's;
* ``percentile``: :func:`exifclip.exif_consistency.pool_percentile` of the
  text among a reference pool: the EXIF of the *training* folds' photos
  (the pool a model ships with), the text's own camera left out.

Positives are (photo, its own EXIF). Negatives:

* ``cross-model``: (photo, EXIF of a photo of another camera model of the fold);
* ``same-model``: (photo, EXIF of another photo of the same camera model whose
  text differs: other settings).

AUC of positives against each kind of negatives, with a 95 % bootstrap
interval (photos resampled). 0.5 is chance.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_exif_consistency.py --data ../shared/data \\
        --model /work/ckpt/issue14/recipe-small-aug/fold0 --fold 0 --out-json exif_consistency.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_unseen_cameras import DEFAULT_SPLIT, file_cameras, fold_photos, load_split  # noqa: E402

from exifclip import ExifPatchEmbedder, read_exif  # noqa: E402
from exifclip.exif_consistency import TAG_GROUPS, group_text, pool_percentile  # noqa: E402


def _exif(paths):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [read_exif(p) for p in paths]


def pair_scores(images, texts, cameras, pool, pool_cameras):
    """Score matrices (n x n, photo i against the text of photo j): cosine and pool percentile."""
    cosine = images @ texts.T
    percentile = np.full(cosine.shape, np.nan)
    for j in range(len(texts)):
        others = pool[pool_cameras != cameras[j]]
        for i in range(len(images)):
            percentile[i, j] = pool_percentile(images[i], texts[j], others)
    return {"cosine": cosine, "percentile": percentile}


def pairs(cameras, strings):
    """Index pairs: positives (i, i), cross-model negatives, same-model negatives with another text."""
    n = len(cameras)
    cross = [(i, j) for i in range(n) for j in range(n) if cameras[i] != cameras[j]]
    same = [(i, j) for i in range(n) for j in range(n) if i != j and cameras[i] == cameras[j]
            and strings[i] != strings[j]]
    return cross, same


def auc_with_interval(scores, cross_or_same, n, rng, rounds=200):
    """AUC of the diagonal against the given negatives, and a photo-bootstrap 95 % interval."""
    if not cross_or_same:
        return None
    neg = np.asarray(cross_or_same)

    def auc(weights):
        pos_w = weights
        neg_w = weights[neg[:, 0]]
        if pos_w.sum() == 0 or neg_w.sum() == 0:
            return np.nan
        y = np.r_[np.ones(n), np.zeros(len(neg))]
        s = np.r_[np.diag(scores), scores[neg[:, 0], neg[:, 1]]]
        return roc_auc_score(y, s, sample_weight=np.r_[pos_w, neg_w])

    point = auc(np.ones(n))
    boot = [auc(np.bincount(rng.integers(0, n, n), minlength=n).astype(float)) for _ in range(rounds)]
    low, high = np.nanpercentile(boot, [2.5, 97.5])
    return {"auc": round(float(point), 3), "ci95": [round(float(low), 3), round(float(high), 3)],
            "negatives": len(neg)}


def run(args) -> dict:
    data = Path(args.data).resolve()
    split = load_split(args.split)
    train, test = fold_photos(split, args.fold, data)
    keys = file_cameras(data)
    test_exif, train_exif = _exif(test), _exif(train)
    kept = [i for i, e in enumerate(test_exif) if e.get("Model")]
    test = [test[i] for i in kept]
    test_exif = [test_exif[i] for i in kept]
    cameras = np.asarray([keys[str(Path(p).relative_to(data))] for p in test])
    pool_cams_all = np.asarray([keys.get(str(Path(p).relative_to(data)), "") for p in train])
    embedder = ExifPatchEmbedder(model=args.model, device=args.device, num_per_dim=args.num_per_dim).fit()
    start = time.perf_counter()
    images = embedder.transform(test)
    seconds = time.perf_counter() - start
    rng = np.random.default_rng(0)
    results = {"model": str(args.model), "fold": args.fold, "photos": len(test), "cameras": int(len(set(cameras))),
               "num_per_dim": args.num_per_dim, "embed_s_per_photo": round(seconds / len(test), 3), "groups": {}}
    for group in TAG_GROUPS:
        strings = [group_text(e, group) for e in test_exif]
        have = [i for i, s in enumerate(strings) if s]
        pool_strings = [(c, group_text(e, group)) for c, e in zip(pool_cams_all, train_exif)]
        pool_strings = [(c, s) for c, s in pool_strings if s]
        texts = embedder.embed_exif([strings[i] for i in have])
        pool = embedder.embed_exif([s for _, s in pool_strings])
        pool_cameras = np.asarray([c for c, _ in pool_strings])
        scores = pair_scores(images[have], texts, cameras[have], pool, pool_cameras)
        cross, same = pairs(cameras[have], [strings[i] for i in have])
        results["groups"][group] = {
            "photos": len(have), "pool": len(pool_strings),
            **{f"{kind}/{name}": auc_with_interval(s, neg, len(have), rng)
               for name, s in scores.items() for kind, neg in (("cross-model", cross), ("same-model", same))},
        }
    return results


def markdown(results: dict) -> str:
    lines = [f"Fold {results['fold']}: {results['photos']} photos of {results['cameras']} camera models never "
             f"seen in training; model `{results['model']}`.", "",
             "| tag group | score | cross-model AUC (95 % CI) | same-model AUC (95 % CI) |", "|---|---|---|---|"]
    for group, row in results["groups"].items():
        for name in ("cosine", "percentile"):
            cells = []
            for kind in ("cross-model", "same-model"):
                r = row[f"{kind}/{name}"]
                cells.append("n/a (no such pairs)" if r is None else
                             f"{r['auc']:.3f} ({r['ci95'][0]:.2f}-{r['ci95'][1]:.2f}), {r['negatives']} pairs")
            lines.append(f"| {group} | {name} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"), help="data root")
    parser.add_argument("--model", required=True, help="a model trained without the fold's camera models")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--split", type=Path, default=DEFAULT_SPLIT)
    parser.add_argument("--num-per-dim", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out-json", type=Path)
    args = parser.parse_args(argv)
    results = run(args)
    if args.out_json:
        args.out_json.write_text(json.dumps(results, indent=1) + "\n")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
