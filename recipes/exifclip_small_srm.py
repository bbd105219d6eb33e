"""Regenerate the packaged models ``exifclip-small-srm`` and ``exifclip-small-s16`` from the data.

The ``small`` architecture with the SRM residual front-end
(:mod:`exifclip.modeling.front_end`), the patch-to-patch term and processing
augmentations, trained on every photo of ``digicam`` and ``cameras-extra``
(about 120 camera models; the benchmark that chose it, and its figures, are
in docs/benchmarks.md, "Unseen-camera benchmark")::

    python recipes/exifclip_small_srm.py --data ../shared/data --out CKPT/exifclip-small-srm --install

Rerunning the command resumes from the last checkpoint. The same recipe,
trained without one fold's cameras, is what the unseen-camera benchmark
scores: ``python recipes/fold_training.py --recipe small-srm ...``.
``--arch small-s16`` trains the same recipe on the three-stage trunk: the
packaged default ``exifclip-small-s16`` is that, distilled for fast mode
(``recipes/fast_mode_distill.py --teacher CKPT/exifclip-small-s16 ...
--install exifclip-small-s16``).
``--install`` copies the weights, config and tokenizer into
``exifclip/models/exifclip-small-srm/``, or ``exifclip/models/NAME/`` with
``--install NAME`` (its model card is written by hand from the measured
figures; ``recipes/training_data_card.py`` writes its
training-data section).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from exifclip_small import RECIPE as SMALL_RECIPE  # noqa: E402
from exifclip_small import install  # noqa: E402
from training_data_card import manifest_rows  # noqa: E402

#: The training settings (exifclip.training.TrainingConfig fields): exifclip-small's, and what the
#: unseen-camera screening chose on its five folds (docs/benchmarks.md): front_end "srm", patch_pairs,
#: augmentations; 4800 steps with the text tower's attention dropout at 0 (over 2400 steps at 0.1:
#: detection AP +0.009 / +0.025 on PNG / JPEG-90, and each step 1.3-1.5x cheaper on a CPU).
RECIPE = dict(SMALL_RECIPE, steps=4800, augment=True, patch_pairs=True, front_end="srm",
              text_attention_dropout=0.0, checkpoint_every=100)



def all_photos(data: Path) -> list[str]:
    """Every photo of both sets, sorted (the manifests' files)."""
    return sorted(str((data / r["set"] / r["file"]).resolve()) for r in manifest_rows(data))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data", help="folder holding digicam/ and cameras-extra/")
    parser.add_argument("--out", required=True, help="training output folder (keep it outside the repository)")
    parser.add_argument("--steps", type=int, default=RECIPE["steps"], help="optimiser steps (default: the recipe's)")
    parser.add_argument("--arch", default=RECIPE["arch"],
                        help="registered architecture (default: the recipe's; small-s16 for the 16-px trunk)")
    parser.add_argument("--install", metavar="NAME", nargs="?", const="exifclip-small-srm",
                        help="copy the result into exifclip/models/NAME (default name: exifclip-small-srm)")
    args = parser.parse_args()

    from exifclip.training import TrainingConfig, train

    files = all_photos(Path(args.data))
    recipe = dict(RECIPE, steps=args.steps, arch=args.arch)
    config = TrainingConfig(images=files, out_dir=args.out, resume=True, **dict(recipe, progress=False))
    start = time.perf_counter()
    result = train(config)
    out = Path(args.out)
    (out / "train_files.txt").write_text("\n".join(files) + "\n")
    summary = {"recipe": recipe, "photos": len(files), "used": result.dataset["images"],
               "skipped": result.dataset["skipped"], "resumed_from": result.resumed_from,
               "wall_s": round(time.perf_counter() - start, 1)}
    (out / "recipe_summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary), flush=True)
    if args.install:
        print(f"installed into {install(out, args.install)}")


if __name__ == "__main__":
    main()
