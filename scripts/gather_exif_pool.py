"""Write exifclip/exif_pool.json: the reference EXIF pool of ExifConsistencyScorer.

Reads the training photos (default: ../shared/data/digicam and
../shared/data/cameras-extra, read-only) and keeps, per photo, only the
camera-pipeline tags of :data:`exifclip.exif.DEFAULT_TAGS` (make, model,
exposure, processing: no dates, names, serial numbers or GPS). No pixel is
stored.

Usage::

    python scripts/gather_exif_pool.py [FOLDER ...] [--out exifclip/exif_pool.json]
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

from exifclip.exif import DEFAULT_TAGS, read_exif
from exifclip.exif_consistency import DEFAULT_POOL_FILE
from exifclip.io import IMAGE_EXTENSIONS

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FOLDERS = [ROOT.parent / "shared" / "data" / "digicam", ROOT.parent / "shared" / "data" / "cameras-extra"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", type=Path, default=DEFAULT_FOLDERS, help="folders of camera JPEGs")
    parser.add_argument("--out", type=Path, default=DEFAULT_POOL_FILE, help="JSON file to write")
    args = parser.parse_args(argv)
    missing = [str(f) for f in args.folders if not f.is_dir()]
    if missing:
        parser.error(f"not a folder: {', '.join(missing)}")
    pool, seen = [], set()
    for path in sorted(p for f in args.folders for p in f.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                exif = read_exif(path)
            except (ValueError, OSError):
                continue
        entry = {t: exif[t] for t in DEFAULT_TAGS if exif.get(t)}
        key = json.dumps(entry, sort_keys=True)
        if entry.get("Model") and key not in seen:  # a camera is needed; identical entries once
            seen.add(key)
            pool.append(entry)
    data = {"about": "EXIF camera-pipeline tags (exifclip.exif.DEFAULT_TAGS) of camera photos, gathered by "
            "scripts/gather_exif_pool.py; no pixels", "folders": [f.name for f in args.folders], "pool": pool}
    args.out.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"{args.out}: {len(pool)} EXIF entries of {len({(e.get('Make'), e['Model']) for e in pool})} cameras")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
