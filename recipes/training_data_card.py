"""The training-data section of a model card: sources, licences, credits.

Reads the manifests of the shared photo sets (``digicam/MANIFEST.csv``,
``cameras-extra/MANIFEST.csv``) for the files a model was trained on and
writes Markdown: photos and camera models per source, photos per licence,
and the credit every CC BY-SA photo needs (its source repository and path;
the photos are (c) their authors on PIXLS.US, CC BY-SA 4.0)::

    python recipes/training_data_card.py --data ../shared/data --files train_files.txt > data_section.md

Without ``--files`` every photo of both sets is listed (a model trained on
all of them).
"""

from __future__ import annotations

import argparse
import csv
from collections import Counter
from pathlib import Path

#: Licence of the digicam corpus as a whole (github.com/drewnoakes/digicam_corpus).
DIGICAM_LICENCE = "CC0-1.0"


def manifest_rows(data: Path) -> list[dict]:
    """One dict per photo of both sets: ``set``, ``file``, ``make``, ``model``, ``licence``, ``repo``, ``path``."""
    rows = []
    for name in ("digicam", "cameras-extra"):
        path = data / name / "MANIFEST.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the manifest of {name} is missing")
        with path.open(newline="", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                rows.append({"set": name, "file": r["file"], "make": r["make"].strip(), "model": r["model"].strip(),
                             "licence": r.get("licence") or DIGICAM_LICENCE,
                             "repo": r.get("repo") or "drewnoakes/digicam_corpus", "path": r.get("path") or r["file"]})
    return rows


def data_section(rows: list[dict]) -> str:
    """Markdown: per-set and per-licence counts, then the CC BY-SA credits."""
    lines = ["| set | photos | camera models (EXIF make + model) |", "|---|---|---|"]
    for name in ("digicam", "cameras-extra"):
        mine = [r for r in rows if r["set"] == name]
        lines.append(f"| {name} | {len(mine)} | {len({(r['make'], r['model']) for r in mine})} |")
    lines += ["", "| licence of the photos | photos |", "|---|---|"]
    for licence, n in sorted(Counter(r["licence"] for r in rows).items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"| {licence} | {n} |")
    by_sa = [r for r in rows if "BY-SA" in r["licence"].upper()]
    if by_sa:
        lines += ["", f"Credits: {len(by_sa)} training photos are (c) their authors on PIXLS.US "
                  "(github.com/pixlsus/website), licensed CC BY-SA 4.0 "
                  "(creativecommons.org/licenses/by-sa/4.0); 1024-px lossless crops were used, unchanged "
                  "otherwise. Each, by its path in that repository:", ""]
        lines += [f"- `{r['path']}` ({r['make']} {r['model']})" for r in sorted(by_sa, key=lambda r: r["path"])]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--files", help="text file of the training files (one path per line); default: all")
    args = parser.parse_args()
    rows = manifest_rows(Path(args.data))
    if args.files:
        names = {Path(line.strip()).name for line in Path(args.files).read_text().splitlines() if line.strip()}
        rows = [r for r in rows if r["file"] in names]
    print(data_section(rows), end="")


if __name__ == "__main__":
    main()
