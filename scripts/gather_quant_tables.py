"""Write exifclip/report/quant_tables.json: the JPEG quantisation tables of each camera model.

Reads the training photos (default: ../shared/data/digicam and
../shared/data/cameras-extra, read-only) and keeps only their tables, keyed by
the EXIF ``Make|Model``; no photo or pixel is stored. The metadata red flag
"quantisation tables unlike the claimed camera's"
(:func:`exifclip.report.red_flags.check_quantization`) compares against it.

Usage::

    python scripts/gather_quant_tables.py [FOLDER ...] [--out exifclip/report/quant_tables.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from exifclip.io import IMAGE_EXTENSIONS
from exifclip.report.quantization import CAMERA_TABLES_FILE, gather_camera_tables

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FOLDERS = [ROOT.parent / "shared" / "data" / "digicam", ROOT.parent / "shared" / "data" / "cameras-extra"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", type=Path, default=DEFAULT_FOLDERS, help="folders of camera JPEGs")
    parser.add_argument("--out", type=Path, default=CAMERA_TABLES_FILE, help="JSON file to write")
    args = parser.parse_args(argv)
    missing = [str(f) for f in args.folders if not f.is_dir()]
    if missing:
        parser.error(f"not a folder: {', '.join(missing)}")
    paths = sorted(p for f in args.folders for p in f.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    cameras = gather_camera_tables(paths)
    data = {
        "about": "JPEG quantisation tables (row-major 8x8, as Pillow reads them) per EXIF 'Make|Model', gathered from "
        "camera photos by scripts/gather_quant_tables.py; tables only, no pixels",
        "folders": [f.name for f in args.folders],
        "cameras": cameras,
    }
    args.out.write_text(json.dumps(data, separators=(",", ":")) + "\n", encoding="utf-8")
    photos = sum(c["photos"] for c in cameras.values())
    print(f"{args.out}: {len(cameras)} camera models from {photos} photos ({len(paths)} files read)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
