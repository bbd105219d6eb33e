"""How big the triage report gets and how fast it builds and opens, for N generated images.

Writes a results folder as ``exifclip localize`` would (photos with EXIF,
heatmap, mask and overlay pictures, ``results.jsonl`` with a few failures),
without running a model: the report's cost does not depend on it. Then builds
the report with :func:`exifclip.report.build_report` and, when Chromium and
chromedriver are installed, opens it headless and times it until the page's
script has built every row (``document.documentElement.dataset.ready``).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_report.py --n 1000 --work /tmp/report-bench

Prints one JSON object: images, page MiB, preview-folder MiB, build seconds,
open seconds, rows shown.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import time
from pathlib import Path

import numpy as np
import piexif
from PIL import Image

from exifclip.report import build_report, file_sha256
from exifclip.viz import save_heatmap, save_mask, save_overlay


def _photo(rng, height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.uniform(0, 6.3, 3)
    base = np.stack([128 + 100 * np.sin(x / (40 + 30 * k) + phase[k]) * np.cos(y / 55) for k in range(3)], -1)
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def _exif(i: int) -> bytes:
    return piexif.dump({
        "0th": {piexif.ImageIFD.Make: b"Acme", piexif.ImageIFD.Model: f"Cam {i % 7}".encode(),
                piexif.ImageIFD.Orientation: (1, 6, 3, 8)[i % 4], piexif.ImageIFD.Software: b"Ver.1.0"},
        "Exif": {piexif.ExifIFD.ExposureTime: (1, 125), piexif.ExifIFD.FNumber: (40, 10),
                 piexif.ExifIFD.DateTimeOriginal: b"2024:01:01 12:00:00"},
    })


def make_results(folder: Path, n: int, distinct: int = 24, size=(1536, 2048), seed: int = 0) -> Path:
    """A results folder of ``n`` images (``distinct`` different pictures, reused), 2 % of them failed."""
    rng = np.random.default_rng(seed)
    inputs, out = folder / "in", folder / "results"
    inputs.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    templates = []
    for k in range(distinct):
        pixels = _photo(rng, *size)
        heat = np.clip(rng.random((size[0] // 64, size[1] // 64)), 0, 1).repeat(64, 0).repeat(64, 1).astype(np.float32)
        mask = heat > 0.8
        stem = out / f"template{k}"
        templates.append((pixels, save_heatmap(f"{stem}_heatmap.png", heat, max_side=1024),
                          save_mask(f"{stem}_mask.png", mask), save_overlay(f"{stem}_overlay.png", pixels, heat, mask,
                                                                            max_side=1024)))
    with open(out / "results.jsonl", "w") as log:
        for i in range(n):
            pixels, *pictures = templates[i % distinct]
            path = inputs / f"IMG_{i:05d}.jpg"
            buf = io.BytesIO()
            Image.fromarray(pixels).save(buf, "JPEG", quality=90, exif=_exif(i))
            path.write_bytes(buf.getvalue())
            if i % 50 == 49:
                failed = {"file": str(path), "status": "failed", "error": f"{path}: decoder gave up"}
                log.write(json.dumps(failed) + "\n")
                continue
            record = {"file": str(path), "status": "ok", "score": float(rng.beta(2, 8)), "score_method": "mean",
                      "flagged": None, "verdict": "no calibration", "spliced_fraction": float(rng.random() * 0.3),
                      "heatmap_max": 0.9, "heatmap_scale": [0.0, 1.0], "model": "exifclip-small",
                      "settings": {"model": "exifclip-small", "num_per_dim": 30, "method": "meanshift"},
                      "sha256": file_sha256(path), "exifclip_version": "bench"}
            for kind, picture in zip(("heatmap", "mask", "overlay"), pictures):
                target = out / f"IMG_{i:05d}_{kind}.png"
                shutil.copyfile(picture, target)
                record[kind] = str(target)
            log.write(json.dumps(record) + "\n")
    for stem in out.glob("template*"):
        stem.unlink()
    return out


def open_in_chromium(page: Path) -> dict | None:
    """Seconds until the page's script has built its rows, in headless Chromium; None without one."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver:
        return None
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(flag)
    options.binary_location = binary
    browser = webdriver.Chrome(service=Service(driver), options=options)
    try:
        start = time.perf_counter()
        browser.get(page.as_uri())  # returns after the load event: parsing, the script and the first layout
        seconds = time.perf_counter() - start
        rows = browser.execute_script("return document.querySelectorAll('#rows tr').length")
        ready = browser.execute_script("return document.documentElement.dataset.ready")
        loaded = browser.execute_script("return Array.from(document.querySelectorAll('#rows img'))"
                                        ".filter(i => i.complete && i.naturalWidth > 0).length")
        return {"open_s": round(seconds, 2), "rows": rows, "ready": ready == "1", "thumbnails_decoded": loaded}
    finally:
        browser.quit()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="images (default 1000)")
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (emptied first)")
    args = parser.parse_args(argv)
    if args.work.exists():
        shutil.rmtree(args.work)
    results = make_results(args.work, args.n)
    start = time.perf_counter()
    page = build_report(results)
    build_s = time.perf_counter() - start
    previews = sum(p.stat().st_size for p in (results / "report_files").iterdir())
    figures = {"images": args.n, "page_mib": round(page.stat().st_size / 2**20, 1),
               "preview_files_mib": round(previews / 2**20, 1), "build_s": round(build_s, 1)}
    figures.update(open_in_chromium(page) or {"open_s": None})
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
