"""What a report reads: the records ``exifclip localize`` wrote, and what it can add from the inputs.

A results folder holds ``results.jsonl`` (one record per image given, in
order: ``status`` ``ok``, ``failed`` with its ``error``, or ``not done``) and,
per image, the pictures named in its record. This module reads them, checks
them, and says how each image's result is reproduced (the command line) and
whether the input is still the file that was analysed (its SHA-256).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from pathlib import Path
from typing import Any

__all__ = [
    "RESULTS_FILE",
    "file_sha256",
    "load_records",
    "provenance",
    "reproduce_command",
]

#: The file of records a results folder holds.
RESULTS_FILE = "results.jsonl"

# settings key -> flag of ``exifclip localize`` (in the order the command line shows them)
_FLAGS = (
    ("model", "--model"),
    ("revision", "--revision"),
    ("patch_size", "--patch-size"),
    ("num_per_dim", "--num-per-dim"),
    ("stride", "--stride"),
    ("dtype", "--dtype"),
    ("method", "--method"),
    ("threshold", "--threshold"),
    ("score_method", "--score-method"),
    ("alarm_rate", "--alarm-rate"),
    ("vmax", "--vmax"),
    ("max_side", "--max-side"),
)
_PICTURES = ("heatmap", "mask", "overlay")


def file_sha256(path: str | os.PathLike) -> str | None:
    """The SHA-256 of the file ``path`` as 64 hex digits; None when it is not a readable file.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile(delete=False) as f:
    ...     _ = f.write(b"abc")
    >>> file_sha256(f.name)[:16]
    'ba7816bf8f01cfea'
    >>> file_sha256("/no/such/file") is None
    True
    """
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except (OSError, TypeError, ValueError):
        return None
    return digest.hexdigest()


def provenance(path: Any) -> dict[str, str | None]:
    """What a result record adds for the chain of custody: the input's SHA-256 and exifclip's version.

    Examples
    --------
    >>> sorted(provenance("/no/such/file"))
    ['exifclip_version', 'sha256']
    """
    from .. import __version__

    sha = file_sha256(path) if isinstance(path, (str, os.PathLike)) else None
    return {"sha256": sha, "exifclip_version": __version__}


def load_records(folder: str | os.PathLike) -> list[dict]:
    """The records of the results folder ``folder``, in the order of ``results.jsonl``.

    Picture paths in the records are resolved: a relative path is taken
    relative to ``folder`` when it is not found from the current directory,
    and a picture absent from disk is dropped from its record (a folder that
    was moved or copied still reports).

    Raises
    ------
    FileNotFoundError
        If ``folder`` is not a folder or holds no ``results.jsonl`` (naming it).
    ValueError
        If a line is not a JSON object with a ``file`` (naming the file and line).

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / RESULTS_FILE).write_text('{"file": "a.jpg", "status": "failed", "error": "a.jpg: bad"}\\n')
    >>> [(r["file"], r["status"]) for r in load_records(folder)]
    [('a.jpg', 'failed')]
    """
    folder = Path(folder)
    log = folder / RESULTS_FILE
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder of results (expected the --out folder of exifclip localize)")
    if not log.is_file():
        raise FileNotFoundError(f"{folder}: holds no {RESULTS_FILE}; is it the --out folder of exifclip localize?")
    records = []
    with open(log, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{log}:{number}: not JSON ({exc})") from None
            if not isinstance(record, dict) or not isinstance(record.get("file"), str):
                raise ValueError(f"{log}:{number}: not a result record (a JSON object with a 'file')")
            record.setdefault("status", "ok")
            for kind in _PICTURES:
                found = _picture(record.get(kind), folder)
                if found is None:
                    record.pop(kind, None)
                else:
                    record[kind] = found
            records.append(record)
    return records


def _picture(value: Any, folder: Path) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    path = Path(value)
    for candidate in (path, folder / path.name):
        if candidate.is_file():
            return str(candidate)
    return None


def reproduce_command(record: dict, out: str | os.PathLike | None = None) -> str:
    """The ``exifclip localize`` command line that recomputes the result of ``record``.

    Parameters
    ----------
    record : dict
        A record of ``results.jsonl`` (its ``file`` and ``settings``).
    out : path, optional
        The ``--out`` folder to name (default: ``results``).

    Returns
    -------
    str
        A POSIX shell line, every value quoted.

    Examples
    --------
    >>> rec = {"file": "my photo.jpg", "settings": {"model": "exifclip-small", "revision": None,
    ...        "num_per_dim": 30, "method": "meanshift", "mode": "fast"}, "truncated": True}
    >>> reproduce_command(rec, "out")
    "exifclip localize 'my photo.jpg' --out out --model exifclip-small --num-per-dim 30 --method meanshift \
--fast --allow-truncated"
    """
    settings = record.get("settings") or {}
    parts = ["exifclip", "localize", str(record["file"]), "--out", str(out or "results")]
    for key, flag in _FLAGS:
        value = settings.get(key)
        if value is not None:
            parts += [flag, str(value)]
    if settings.get("mode") == "fast":
        parts.append("--fast")
    if record.get("truncated"):
        parts.append("--allow-truncated")
    return " ".join(shlex.quote(p) for p in parts)
