"""Render example photos from two simulated cameras, and a splice of them.

exifclip's examples must not ship anyone's photographs, so this script makes
its own: a smooth synthetic scene is "shot" by two simulated camera
pipelines that differ the way real ones do (colour filter array and
demosaicing, sensor noise, sharpening, JPEG quantisation), each file with its
own EXIF. The splice pastes a smooth region of camera B's shot into camera
A's at the same place, then saves the result as camera A would.

These images exercise the code paths; they are not a benchmark. Camera
traces here are synthetic and much simpler than a real camera's.

Usage::

    python examples/make_example.py --out examples/data
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
import piexif
from PIL import Image, ImageFilter

CAMERAS = {
    "A": dict(make="ExampleCam", model="Synthetic A100", noise=2.0, sharpen=False, quality=92, cfa="RGGB",
              exposure=(1, 250), fnumber=(28, 10), iso=100, focal=(350, 10)),
    "B": dict(make="OtherCam", model="Synthetic B7", noise=6.0, sharpen=True, quality=75, cfa="GBRG",
              exposure=(1, 60), fnumber=(56, 10), iso=800, focal=(60, 10)),
}


def render_scene(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth colourful scene (float RGB in [0, 1]): gradients, discs, a horizon."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    sky = np.stack([0.35 + 0.3 * y, 0.55 + 0.2 * y, 0.9 - 0.2 * y], axis=-1)
    ground = np.stack([0.3 + 0.2 * x, 0.45 - 0.1 * y, 0.2 + 0.1 * x], axis=-1)
    horizon = 0.55 + 0.05 * np.sin(9 * x + rng.uniform(0, 6))
    scene = np.where((y > horizon * height / max(height, width))[..., None], ground, sky)
    for _ in range(7):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(0.04, 0.15) * max(height, width)
        colour = rng.uniform(0.1, 0.95, 3)
        disc = ((np.mgrid[0:height, 0:width][0] - cy) ** 2 + (np.mgrid[0:height, 0:width][1] - cx) ** 2) < r * r
        scene[disc] = 0.6 * scene[disc] + 0.4 * colour
    return np.clip(scene, 0, 1)


def _mosaic_demosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """Sample one colour per pixel on a 2x2 CFA, then bilinear-demosaic."""
    h, w, _ = rgb.shape
    masks = np.zeros((h, w, 3), bool)
    index = {"R": 0, "G": 1, "B": 2}
    for k, ch in enumerate(pattern):
        masks[k // 2 :: 2, k % 2 :: 2, index[ch]] = True
    raw = np.where(masks, rgb, 0.0)
    out = np.empty_like(rgb)
    kernel = np.array([[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]])
    for c in range(3):
        num = _conv3(raw[..., c], kernel)
        den = _conv3(masks[..., c].astype(float), kernel)
        out[..., c] = num / np.maximum(den, 1e-6)
    return out


def _conv3(a: np.ndarray, k: np.ndarray) -> np.ndarray:
    p = np.pad(a, 1, mode="reflect")
    return sum(k[i, j] * p[i : i + a.shape[0], j : j + a.shape[1]] for i in range(3) for j in range(3))


def shoot(scene: np.ndarray, camera: str, seed: int) -> np.ndarray:
    """The scene through one simulated camera pipeline, as uint8 RGB (before JPEG)."""
    cam = CAMERAS[camera]
    rng = np.random.default_rng(seed)
    linear = scene**2.2
    linear = linear + rng.normal(0, cam["noise"] / 255.0, linear.shape) * np.sqrt(np.maximum(linear, 1e-4) * 4)
    rgb = _mosaic_demosaic(np.clip(linear, 0, 1), cam["cfa"]) ** (1 / 2.2)
    image = Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8))
    if cam["sharpen"]:
        image = image.filter(ImageFilter.UnsharpMask(radius=1.5, percent=120, threshold=1))
    return np.asarray(image)


def exif_bytes(camera: str) -> bytes:
    cam = CAMERAS[camera]
    return piexif.dump({
        "0th": {piexif.ImageIFD.Make: cam["make"].encode(), piexif.ImageIFD.Model: cam["model"].encode(),
                piexif.ImageIFD.Software: b"exifclip examples/make_example.py"},
        "Exif": {piexif.ExifIFD.ExposureTime: cam["exposure"], piexif.ExifIFD.FNumber: cam["fnumber"],
                 piexif.ExifIFD.ISOSpeedRatings: cam["iso"], piexif.ExifIFD.FocalLength: cam["focal"],
                 piexif.ExifIFD.MeteringMode: 5, piexif.ExifIFD.Flash: 16, piexif.ExifIFD.WhiteBalance: 0},
    })


def save_jpeg(pixels: np.ndarray, path: Path, camera: str) -> None:
    Image.fromarray(pixels).save(path, quality=CAMERAS[camera]["quality"], exif=exif_bytes(camera))


def splice_mask(height: int, width: int, seed: int, area: float = 0.15) -> np.ndarray:
    """A smooth blob covering about ``area`` of the image."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(float)
    cy, cx = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width
    angle = np.arctan2(y - cy, x - cx)
    radius = np.sqrt(area * height * width / np.pi)
    wobble = 1 + 0.15 * np.sin(3 * angle + rng.uniform(0, 6)) + 0.1 * np.sin(5 * angle + rng.uniform(0, 6))
    return np.hypot(y - cy, x - cx) < radius * wobble


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="examples/data", help="output folder")
    parser.add_argument("--size", type=int, nargs=2, default=(768, 1024), metavar=("H", "W"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    h, w = args.size
    # Both cameras shoot the same scene: the splice differs only in its traces.
    scene = render_scene(h, w, args.seed)
    shot_a, shot_b = shoot(scene, "A", args.seed), shoot(scene, "B", args.seed + 1)
    save_jpeg(shot_a, out / "camera_a.jpg", "A")
    save_jpeg(shot_b, out / "camera_b.jpg", "B")
    # The donor region carries camera B's JPEG history: decode B's file first.
    donor = np.asarray(Image.open(io.BytesIO((out / "camera_b.jpg").read_bytes())).convert("RGB"))
    mask = splice_mask(h, w, args.seed)
    spliced = np.where(mask[..., None], donor, shot_a)
    save_jpeg(spliced, out / "spliced.jpg", "A")
    Image.fromarray((mask * 255).astype(np.uint8)).save(out / "spliced_mask.png")
    print(f"wrote {out}/camera_a.jpg, camera_b.jpg, spliced.jpg (+ spliced_mask.png, {mask.mean():.0%} spliced)")


if __name__ == "__main__":
    main()
