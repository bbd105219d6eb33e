"""Train one model per leave-camera-models-out fold of the unseen-camera benchmark.

Fold ``k``'s model trains on the photos of the other folds' cameras
(``benchmarks/unseen_camera_folds.json``: digicam + cameras-extra), so the
benchmark can score fold ``k`` with a model that never saw its cameras::

    python recipes/fold_training.py --data ../shared/data --out /work/ckpt/issue14/recipe-small --folds 0 1
    python benchmarks/bench_unseen_cameras.py --data ../shared/data --folds 0 1 --methods model \\
        --fold-models /work/ckpt/issue14/recipe-small/fold{k}

Runs checkpoint every ``--checkpoint-every`` steps and resume exactly where
they stopped when the same command is run again (keep ``--out`` outside the
repository). ``--set key=value`` changes any TrainingConfig field of the
recipe (JSON values), for ablations.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "benchmarks"))
from exifclip_small import RECIPE as SMALL_RECIPE  # noqa: E402
from exifclip_small_srm import RECIPE as SMALL_SRM_RECIPE  # noqa: E402

#: Recipes by the packaged model they make (TrainingConfig fields).
RECIPES = {"small": SMALL_RECIPE, "small-srm": SMALL_SRM_RECIPE}


def main() -> None:
    from bench_unseen_cameras import DEFAULT_SPLIT, fold_photos, load_split

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data", help="folder holding digicam/ and cameras-extra/")
    parser.add_argument("--split", default=str(DEFAULT_SPLIT))
    parser.add_argument("--out", required=True, help="one folder per fold is made inside: fold0, fold1, ...")
    parser.add_argument("--folds", type=int, nargs="+", required=True)
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="small",
                        help="the recipe of exifclip-small or of exifclip-small-srm")
    parser.add_argument("--steps", type=int, help="default: the recipe's")
    parser.add_argument("--augment", action="store_true",
                        help="processing augmentations (the small-srm recipe has them)")
    parser.add_argument("--checkpoint-every", type=int, default=200)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="override a TrainingConfig field, e.g. --set lr=5e-4")
    args = parser.parse_args()

    from exifclip.training import TrainingConfig, train

    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value)
    split = load_split(Path(args.split))
    for k in args.folds:
        train_files, test_files = fold_photos(split, k, Path(args.data))
        out = Path(args.out) / f"fold{k}"
        base = RECIPES[args.recipe]
        recipe = dict(base, steps=args.steps or base["steps"], augment=True if args.augment else base["augment"],
                      checkpoint_every=args.checkpoint_every, progress=False)
        recipe.update(overrides)  # --set wins, also over the fields set just above (e.g. augment settings)
        config = TrainingConfig(images=train_files, out_dir=str(out), resume=True, **recipe)
        start = time.perf_counter()
        result = train(config)
        summary = {"fold": k, "recipe": recipe, "train_photos": len(train_files), "test_photos": len(test_files),
                   "used": result.dataset["images"], "skipped": result.dataset["skipped"],
                   "resumed_from": result.resumed_from, "wall_s": round(time.perf_counter() - start, 1),
                   "final_loss": result.losses[-1] if result.losses else None}
        (out / "fold_summary.json").write_text(json.dumps(summary, indent=2))
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
