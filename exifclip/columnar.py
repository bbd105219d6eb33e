"""Results as tables: Parquet (and JSON lines) that pandas, polars and DuckDB read without exifclip.

Two tables, each with a fixed schema so that shards of one run, and runs of
different sizes, concatenate:

:func:`localize_table`
    One row per image given to ``exifclip localize``: the source, its
    status and error, every detection score, the flag, the mask fraction,
    the grid, the timings and the paths of the pictures written for it.
:func:`embedding_table`
    One row per embedded image: the source and its embedding as a
    fixed-size list column (``FixedSizeList<float32>[dim]``: NumPy gets an
    ``(n, dim)`` array with ``np.stack(df.embedding)``, DuckDB an
    ``ARRAY``); optionally every patch embedding with the patch's
    top-left pixel ``(y, x)``.

Writing needs ``pyarrow`` (``pip install "exifclip[parquet]"``); nothing
else of exifclip does. The settings a table was made with travel in its
schema metadata (key ``exifclip.settings``, JSON).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._atomic import atomic_write

__all__ = [
    "FORMATS",
    "SETTINGS_KEY",
    "embedding_table",
    "localize_table",
    "read_settings",
    "require_pyarrow",
    "write_table",
]

#: The result formats of ``exifclip localize`` and ``exifclip embed`` ``--format``.
FORMATS = ("jsonl", "parquet")

#: The schema metadata key holding a table's settings (JSON).
SETTINGS_KEY = b"exifclip.settings"

_TIMINGS = ("decode_s", "embed_s", "postprocess_s", "write_s", "total_s")
_PICTURES = ("heatmap", "mask", "overlay")


def require_pyarrow():
    """The ``pyarrow`` module, or an ImportError that says how to install it.

    Examples
    --------
    >>> require_pyarrow().__name__  # doctest: +SKIP
    'pyarrow'
    """
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401 - the writer, checked now
    except ImportError:
        raise ImportError('Parquet output needs pyarrow: pip install "exifclip[parquet]"') from None
    return pyarrow


def _with_settings(table, settings: dict | None):
    if settings is None:
        return table
    return table.replace_schema_metadata({SETTINGS_KEY: json.dumps(settings, sort_keys=True).encode()})


def localize_table(records: Sequence[dict], score_names: Sequence[str], settings: dict | None = None):
    """The table of ``exifclip localize`` results, one row per record (failed ones included).

    Parameters
    ----------
    records : sequence of dict
        The records of ``results.jsonl`` (status ``"ok"``, ``"failed"`` or ``"not done"``).
    score_names : sequence of str
        Every detection score: a column ``score_NAME`` each (null where not computed).
    settings : dict, optional
        Stored in the schema metadata.

    Returns
    -------
    pyarrow.Table

    Examples
    --------
    >>> t = localize_table([{"file": "a.jpg", "status": "ok", "score": 0.3, "scores": {"mean": 0.3},  # doctest: +SKIP
    ...                      "grid": {"patch_size": 64, "stride": 8, "rows": 3, "cols": 4}},
    ...                     {"file": "b.jpg", "status": "failed", "error": "b.jpg: not an image"}], ["mean"])
    >>> t.num_rows, t.column("score_mean").to_pylist(), t.column("grid_rows").to_pylist()  # doctest: +SKIP
    (2, [0.3, None], [3, None])
    """
    pa = require_pyarrow()

    def get(record: dict, *keys: str) -> Any:
        value: Any = record
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    columns: dict[str, tuple[Any, list]] = {
        "file": (pa.string(), [r.get("file") for r in records]),
        "abspath": (pa.string(), [r.get("abspath") for r in records]),
        "status": (pa.string(), [r.get("status") for r in records]),
        "error": (pa.string(), [r.get("error") for r in records]),
        "score": (pa.float64(), [r.get("score") for r in records]),
        "score_method": (pa.string(), [r.get("score_method") for r in records]),
    }
    for name in score_names:
        columns[f"score_{name}"] = (pa.float64(), [get(r, "scores", name) for r in records])
    columns.update({
        "false_alarm_rate": (pa.float64(), [r.get("false_alarm_rate") for r in records]),
        "flagged": (pa.bool_(), [r.get("flagged") for r in records]),
        "verdict": (pa.string(), [r.get("verdict") for r in records]),
        "mask_fraction": (pa.float64(), [r.get("spliced_fraction") for r in records]),
        "heatmap_max": (pa.float64(), [r.get("heatmap_max") for r in records]),
        "truncated": (pa.bool_(), [r.get("truncated") for r in records]),
        "warnings": (pa.list_(pa.string()), [r.get("warnings") for r in records]),
    })
    for key in ("patch_size", "stride", "rows", "cols"):
        columns[key if key in ("patch_size", "stride") else f"grid_{key}"] = (
            pa.int32(), [get(r, "grid", key) for r in records])
    for key in _TIMINGS:
        columns[key] = (pa.float64(), [get(r, "timings", key) for r in records])
    for key in _PICTURES:
        columns[f"{key}_path"] = (pa.string(), [r.get(key) for r in records])
    groups = sorted({g for r in records for g in (r.get("exif_consistency") or {})})
    for group in groups:  # localize --exif-consistency: the percentile of the photo's own EXIF, per tag group
        columns[f"exif_consistency_{group}"] = (pa.float64(), [get(r, "exif_consistency", group) for r in records])
    columns["model"] = (pa.string(), [r.get("model") for r in records])
    schema = pa.schema([(name, kind) for name, (kind, _) in columns.items()])
    table = pa.Table.from_arrays([pa.array(values, type=kind) for kind, values in columns.values()], schema=schema)
    return _with_settings(table, settings)


def embedding_table(rows: Sequence[dict], dim: int, patches: bool = False, settings: dict | None = None):
    """The table of ``exifclip embed`` results: one row per embedded image.

    Parameters
    ----------
    rows : sequence of dict
        Each with ``file``, ``abspath``, ``embedding`` (``dim`` floats) and,
        with ``patches``, ``patches`` ``(n, dim)``, ``positions`` ``(n, 2)``
        (top-left ``(y, x)`` of each patch) and ``grid`` (a
        :class:`~exifclip.patches.PatchGrid`).
    dim : int
        Embedding size: the width of the fixed-size list columns.
    patches : bool, default=False
        Add ``patch_embeddings`` (list of fixed-size lists), ``patch_y``,
        ``patch_x``, ``grid_rows``, ``grid_cols``, ``patch_size`` and ``stride``.
    settings : dict, optional
        Stored in the schema metadata.

    Returns
    -------
    pyarrow.Table

    Examples
    --------
    >>> row = {"file": "a.jpg", "abspath": "/x/a.jpg", "embedding": np.ones(4, np.float32)}
    >>> t = embedding_table([row], 4)  # doctest: +SKIP
    >>> str(t.schema.field("embedding").type)  # doctest: +SKIP
    'fixed_size_list<item: float>[4]'
    >>> np.stack(t.to_pandas().embedding).shape  # doctest: +SKIP
    (1, 4)
    """
    pa = require_pyarrow()
    vector = pa.list_(pa.float32(), dim)

    def vectors(arrays: list[np.ndarray]):
        flat = np.concatenate([np.asarray(a, np.float32).reshape(-1) for a in arrays]) if arrays else \
            np.empty(0, np.float32)
        return pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), dim)

    fields = [("file", pa.string()), ("abspath", pa.string()), ("embedding", vector)]
    arrays = [pa.array([r["file"] for r in rows], pa.string()), pa.array([r["abspath"] for r in rows], pa.string()),
              vectors([r["embedding"] for r in rows])]
    if patches:
        counts = np.asarray([len(r["patches"]) for r in rows], np.int32)
        offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
        per_patch = vectors([r["patches"] for r in rows])
        positions = np.concatenate([np.asarray(r["positions"]).reshape(-1, 2) for r in rows]) if rows else \
            np.empty((0, 2), np.int64)
        fields += [("patch_embeddings", pa.list_(vector)), ("patch_y", pa.list_(pa.int32())),
                   ("patch_x", pa.list_(pa.int32()))]
        arrays += [pa.ListArray.from_arrays(offsets, per_patch),
                   pa.ListArray.from_arrays(offsets, pa.array(positions[:, 0].astype(np.int32))),
                   pa.ListArray.from_arrays(offsets, pa.array(positions[:, 1].astype(np.int32)))]
        for name, attr in (("grid_rows", "n_rows"), ("grid_cols", "n_cols"), ("patch_size", "patch_size"),
                           ("stride", "stride")):
            fields.append((name, pa.int32()))
            arrays.append(pa.array([getattr(r["grid"], attr) for r in rows], pa.int32()))
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
    return _with_settings(table, settings)


def write_table(table, path: str | os.PathLike, format: str = "parquet") -> str:
    """Write ``table`` to ``path`` atomically, as Parquet or as JSON lines (one object per row).

    Returns
    -------
    str
        The path written.

    Examples
    --------
    >>> import tempfile
    >>> import pyarrow as pa  # doctest: +SKIP
    >>> path = os.path.join(tempfile.mkdtemp(), "t.jsonl")
    >>> _ = write_table(pa.table({"file": ["a.jpg"], "score": [0.5]}), path, "jsonl")  # doctest: +SKIP
    >>> open(path).read()  # doctest: +SKIP
    '{"file": "a.jpg", "score": 0.5}\\n'
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    if format == "jsonl":
        with atomic_write(path, "w") as f:
            for row in table.to_pylist():
                f.write(json.dumps(row) + "\n")
        return os.fspath(path)
    import pyarrow.parquet as pq

    with atomic_write(path) as f:
        pq.write_table(table, f)
    return os.fspath(path)


def read_settings(path: str | os.PathLike) -> dict | None:
    """The settings stored in a Parquet file's schema metadata, or ``None`` (absent, unreadable, not ours)."""
    try:
        import pyarrow.parquet as pq

        metadata = pq.read_schema(path).metadata or {}
        return json.loads(metadata[SETTINGS_KEY])
    except (ImportError, OSError, ValueError, KeyError):
        return None
