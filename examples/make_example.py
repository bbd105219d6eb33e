"""Build an example spliced photo from two photos that scikit-image ships.

exifclip ships no third-party photographs. This script takes two photos
bundled inside the scikit-image package, both free of copyright:

* host: ``skimage.data.chelsea()`` - "Chelsea the cat", CC0 by the
  photographer (Stefan van der Walt);
* donor: ``skimage.data.rocket()`` - the launch of DSCOVR on a Falcon 9,
  captured by SpaceX and released into the public domain;

and pastes a smooth region of the donor into the host at the same place (no
resizing), as `exifclip.splice.synthetic.make_splices` does with real camera
photos. It writes ``spliced.png`` (lossless, so no recompression hides the
traces), its ground-truth ``spliced_mask.png``, and ``authentic.png`` (the
host alone). Install scikit-image first (``pip install "exifclip[examples]"``).

Usage::

    python examples/make_example.py --out examples/data
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image


def splice_mask(height: int, width: int, seed: int = 0, area: float = 0.2) -> np.ndarray:
    """A smooth, wobbly blob covering about ``area`` of the image."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(float)
    cy, cx = rng.uniform(0.35, 0.65) * height, rng.uniform(0.35, 0.65) * width
    angle = np.arctan2(y - cy, x - cx)
    radius = np.sqrt(area * height * width / np.pi)
    wobble = 1 + 0.15 * np.sin(3 * angle + rng.uniform(0, 6)) + 0.1 * np.sin(5 * angle + rng.uniform(0, 6))
    return np.hypot(y - cy, x - cx) < radius * wobble


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="examples/data", help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the region's shape")
    args = parser.parse_args()
    try:
        from skimage import data
    except ImportError:
        raise SystemExit("this example needs scikit-image: pip install 'exifclip[examples]'") from None
    host, donor = data.chelsea(), data.rocket()
    h, w = min(host.shape[0], donor.shape[0]), min(host.shape[1], donor.shape[1])
    host, donor = host[:h, :w], donor[:h, :w]
    mask = splice_mask(h, w, args.seed)
    spliced = np.where(mask[..., None], donor, host)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(spliced).save(out / "spliced.png")
    Image.fromarray((mask * 255).astype(np.uint8)).save(out / "spliced_mask.png")
    Image.fromarray(host).save(out / "authentic.png")
    print(f"wrote {out}/spliced.png ({mask.mean():.0%} of it from another photo), spliced_mask.png, authentic.png")


if __name__ == "__main__":
    main()
