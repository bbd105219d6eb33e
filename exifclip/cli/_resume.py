"""Output folders of batch commands that can be interrupted and resumed.

Two layouts, one rule: an image's results are either complete or absent, and
completeness is known from a file written last, atomically
(:func:`exifclip._atomic.atomic_write`).

``exifclip localize`` (one set of files per image)
    ``STEM_heatmap.png``, ``STEM_mask.png``, ``STEM_overlay.png``, then
    ``STEM.json``: the completion marker. The JSON names the image (its
    absolute path) and the settings it was made with, so ``--resume`` skips
    an image only if its marker names the same file and settings and the
    pictures it lists exist (:func:`completed_record`). Stems are stable
    across runs (:func:`assign_stems`): a file keeps the stem whose marker
    names it, and never takes one whose marker names another file.
``exifclip embed`` (one ``.npz`` for the whole run)
    Work is saved every few images as ``.OUT.npz.parts/part-NNNNN.npz``
    (:class:`EmbedParts`); the final file is assembled from them, written
    atomically, and the parts folder removed. ``--resume`` reuses the parts
    and the rows of an existing final file made with the same settings.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_write, remove_stale_parts

__all__ = [
    "EmbedParts",
    "EmbedShards",
    "assign_stems",
    "completed_record",
    "read_record",
    "source_key",
]


def source_key(path: str | os.PathLike) -> str:
    """How an input file is identified across runs: its absolute path.

    Examples
    --------
    >>> source_key("/data/a.jpg")
    '/data/a.jpg'
    """
    return os.path.abspath(os.fspath(path))


def read_record(path: Path) -> dict | None:
    """The JSON object in ``path``, or ``None`` if absent or unreadable."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def assign_stems(paths: Sequence[str], out: Path) -> list[str]:
    """Output stems of ``paths`` in ``out``: unique, and stable across runs.

    A file is named after its own stem (``photo``), or ``photo_2``,
    ``photo_3``, ... when an earlier input of this run took that name or the
    marker ``out/NAME.json`` already holds another file's results. A file
    whose marker exists keeps that name, so a rerun with the inputs in
    another order still finds its finished work and overwrites nobody's.

    Examples
    --------
    >>> import tempfile
    >>> assign_stems(["a/photo.png", "b/photo.png", "c.jpg"], Path(tempfile.mkdtemp()))
    ['photo', 'photo_2', 'c']
    """
    used: set[str] = set()
    stems = []
    for path in paths:
        key = source_key(path)
        base = Path(path).stem or "image"
        k = 0
        while True:
            k += 1
            name = base if k == 1 else f"{base}_{k}"
            if name in used:
                continue
            record = read_record(out / f"{name}.json")
            owner = record.get("abspath") if record else None
            if owner is not None and owner != key:
                continue  # another file's results (of this run or an earlier one): kept
            break
        used.add(name)
        stems.append(name)
    return stems


def completed_record(out: Path, stem: str, path: str, settings: dict, outputs: Sequence[str]) -> dict | None:
    """The marker record of ``path`` if its results in ``out`` are complete.

    Complete means: ``out/STEM.json`` exists, names this file (absolute
    path), was made with the same ``settings``, and every output it lists
    under the keys ``outputs`` exists.

    Returns
    -------
    dict or None
    """
    record = read_record(out / f"{stem}.json")
    if record is None or record.get("abspath") != source_key(path) or record.get("settings") != settings:
        return None
    for key in outputs:
        name = record.get(key)
        if not isinstance(name, str) or not (out / Path(name).name).is_file():
            return None
    return record


_PART = re.compile(r"^part-(\d+)\.npz$")


class EmbedParts:
    """The resumable work of one ``exifclip embed`` run.

    Parameters
    ----------
    out : Path
        The final ``.npz``; parts live in the hidden folder
        ``.OUT_NAME.parts`` beside it.
    settings : dict
        What the embeddings depend on (model, grid, ...); only parts and
        final files with equal settings are reused.
    resume : bool
        Reuse earlier work; otherwise the parts folder is cleared.

    Attributes
    ----------
    done : dict
        Source key -> ``{"embedding": ..., "patches": ..., "positions": ...}``
        (the last two only when patches are kept).
    """

    def __init__(self, out: Path, settings: dict, resume: bool):
        self.out = Path(out)
        self.folder = self.out.with_name(f".{self.out.name}.parts")
        self.settings = settings
        self._settings_json = json.dumps(settings, sort_keys=True)
        self.done: dict[str, dict] = {}
        remove_stale_parts(self.out.parent)
        if not resume:
            shutil.rmtree(self.folder, ignore_errors=True)
            return
        remove_stale_parts(self.folder)
        if self.out.is_file():
            self._load(self.out)
        for part in sorted(self.folder.glob("part-*.npz")) if self.folder.is_dir() else []:
            self._load(part)

    def _load(self, path: Path) -> None:
        try:
            with np.load(path, allow_pickle=False) as data:
                if "settings" not in data.files or str(data["settings"]) != self._settings_json:
                    return
                keys = [str(k) for k in data["abspaths"]]
                embeddings = data["embeddings"]
                for j, key in enumerate(keys):
                    item: dict[str, Any] = {"embedding": embeddings[j]}
                    if self.settings.get("patches"):
                        item["patches"] = data[f"patches_{j}"]
                        item["positions"] = data[f"positions_{j}"]
                    self.done[key] = item
        except (OSError, ValueError, KeyError):
            return  # not ours or unreadable: recomputed

    def save_part(self, items: dict[str, dict]) -> Path:
        """Save newly embedded images (source key -> item) as the next part."""
        self.folder.mkdir(parents=True, exist_ok=True)
        numbers = [int(m.group(1)) for p in self.folder.iterdir() if (m := _PART.match(p.name))]
        path = self.folder / f"part-{max(numbers, default=-1) + 1:05d}.npz"
        keys = list(items)
        arrays: dict[str, Any] = {
            "abspaths": np.asarray(keys, dtype=str),
            "embeddings": np.stack([items[k]["embedding"] for k in keys]),
            "settings": np.asarray(self._settings_json),
        }
        if self.settings.get("patches"):
            for j, key in enumerate(keys):
                arrays[f"patches_{j}"] = items[key]["patches"]
                arrays[f"positions_{j}"] = items[key]["positions"]
        with atomic_write(path) as f:
            np.savez(f, **arrays)
        self.done.update(items)
        return path

    def finish(self, files: Sequence[str], failed: Sequence[str], dim: int, extra: dict) -> int:
        """Write the final ``.npz`` (rows in input order) and remove the parts.

        Returns
        -------
        int
            Images in it.
        """
        ok = [f for f in files if source_key(f) in self.done]
        items = [self.done[source_key(f)] for f in ok]
        arrays: dict[str, Any] = {
            "files": np.asarray([str(f) for f in ok], dtype=str),
            "abspaths": np.asarray([source_key(f) for f in ok], dtype=str),
            "embeddings": np.stack([it["embedding"] for it in items]) if items else np.empty((0, dim), np.float32),
            "failed_files": np.asarray([str(f) for f in failed], dtype=str),
            "settings": np.asarray(self._settings_json),
            **extra,
        }
        if self.settings.get("patches"):
            for j, it in enumerate(items):
                arrays[f"patches_{j}"] = it["patches"]
                arrays[f"positions_{j}"] = it["positions"]
        with atomic_write(self.out) as f:
            np.savez(f, **arrays)
        shutil.rmtree(self.folder, ignore_errors=True)
        return len(ok)


class EmbedShards:
    """The work of an ``exifclip embed --format parquet|jsonl`` run: a folder of shards.

    Every ``--save-every`` images become one shard, ``OUT/part-NNNNN.parquet``
    (or ``.jsonl``), written atomically and never rewritten, so a run of any
    size holds one shard in memory and a reader sees only whole shards
    (``pandas.read_parquet(OUT)`` reads them all: files starting with ``_``
    are not data). ``OUT/_settings.json`` says what the embeddings depend on;
    ``OUT/_failures.jsonl`` lists the images that failed in the latest run.

    Parameters
    ----------
    out : Path
        The folder.
    settings : dict
        Only shards made with equal settings are reused by ``resume``.
    resume : bool
        Keep the shards there (and skip their images); otherwise they are removed.
    format : {"parquet", "jsonl"}
    dim : int
        Embedding size.

    Attributes
    ----------
    done : set of str
        Source keys of the images in the shards.
    """

    def __init__(self, out: Path, settings: dict, resume: bool, format: str, dim: int):
        self.out = self.folder = Path(out)
        self.settings, self.format, self.dim = settings, format, dim
        self.done: set[str] = set()
        remove_stale_parts(self.out)
        marker = self.out / "_settings.json"
        if resume and read_record(marker) == settings:
            for shard in sorted(self.out.glob(f"part-*.{format}")):
                self.done.update(self._keys(shard))
            return
        for old in [*self.out.glob("part-*.parquet"), *self.out.glob("part-*.jsonl"), self.out / "_failures.jsonl"]:
            old.unlink(missing_ok=True)
        with atomic_write(marker, "w") as f:
            json.dump(settings, f, sort_keys=True)

    def _keys(self, shard: Path) -> list[str]:
        try:
            if self.format == "parquet":
                import pyarrow.parquet as pq

                return [str(k) for k in pq.read_table(shard, columns=["abspath"]).column("abspath").to_pylist()]
            return [json.loads(line)["abspath"] for line in shard.read_text(encoding="utf-8").splitlines()]
        except (OSError, ValueError, KeyError):
            return []  # unreadable: its images are embedded again

    def save_part(self, items: dict[str, dict]) -> Path:
        """Write newly embedded images (source key -> item with ``file``, ``embedding``, ...) as the next shard."""
        from ..columnar import embedding_table, write_table

        numbers = [int(p.stem.split("-")[1]) for p in self.out.glob(f"part-*.{self.format}")
                   if p.stem.split("-")[1].isdigit()]
        path = self.out / f"part-{max(numbers, default=-1) + 1:05d}.{self.format}"
        rows = [{**item, "abspath": key} for key, item in items.items()]
        table = embedding_table(rows, self.dim, patches=bool(self.settings.get("patches")), settings=self.settings)
        write_table(table, path, self.format)
        self.done.update(items)
        return path

    def finish(self, files: Sequence[str], failed: dict[str, str]) -> int:
        """Write ``_failures.jsonl`` (``file``, ``error``; empty when none failed); returns the images in the shards."""
        with atomic_write(self.out / "_failures.jsonl", "w") as f:
            for path, message in failed.items():
                f.write(json.dumps({"file": path, "abspath": source_key(path), "error": message}) + "\n")
        return sum(source_key(f) in self.done for f in dict.fromkeys(files))
