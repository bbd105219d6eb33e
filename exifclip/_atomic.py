"""Write output files so that a crash never leaves half of one.

:func:`atomic_write` writes into a temporary file beside the target, flushes
it to disk, and renames it over the target (``os.replace`` is atomic on
POSIX and Windows): a reader, or a later run, sees the old file or the whole
new one. A run killed mid-write leaves only its temporary file, recognisable
by its name, ``.<target name>.<pid>.<random>.part`` (hidden, never an output
name), which :func:`remove_stale_parts` deletes once its process is gone.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

__all__ = ["PART_SUFFIX", "atomic_write", "is_part_file", "remove_stale_parts"]

PART_SUFFIX = ".part"
_PART_NAME = re.compile(r"^\..+\.(\d+)\.[^.]+\.part$")


def is_part_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is the name of an unfinished :func:`atomic_write` file.

    Examples
    --------
    >>> is_part_file(".a_mask.png.4242.x1y2z3.part"), is_part_file("a_mask.png")
    (True, False)
    """
    return _PART_NAME.match(Path(path).name) is not None


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _create_part(path: Path) -> tuple[int, str]:
    """Create the temporary file of ``path``: a new file, with the mode a plain ``open`` gives.

    ``tempfile.mkstemp`` would make it 0600, and the rename keeps that:
    colleagues could not read the results. Created with 0666 here, the
    user's umask (and a folder's default ACL) decide, as for any new file.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = os.path.join(path.parent, f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{PART_SUFFIX}")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{path.parent}: no free temporary file name for {path.name}")


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """Open a temporary file that becomes ``path`` when the block succeeds.

    Parameters
    ----------
    path : path
        The target; its folder is created if needed.
    mode : {"wb", "w"}, default="wb"
    encoding : str, optional
        Text mode only (default UTF-8).

    Yields
    ------
    file object
        Write the whole content into it. If the block raises (Ctrl-C
        included), the temporary file is removed and ``path`` is untouched.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "result.json"
    >>> with atomic_write(target, "w") as f:
    ...     _ = f.write("{}")
    >>> target.read_text(), [p.name for p in target.parent.iterdir()]
    ('{}', ['result.json'])
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_part(path)
    try:
        kwargs = {"encoding": encoding or "utf-8", "newline": ""} if mode == "w" else {}
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process writes none before it starts a run
    if os.name == "nt":  # os.kill(pid, 0) would terminate it there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_stale_parts(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of killed runs in ``directory``.

    Only :func:`atomic_write` temporaries (see :func:`is_part_file`) whose
    writing process no longer runs are removed; a concurrent run's files are
    left alone.

    Returns
    -------
    list of Path
        What was removed.
    """
    removed = []
    directory = Path(directory)
    if not directory.is_dir():
        return removed
    for entry in directory.iterdir():
        match = _PART_NAME.match(entry.name)
        if match and entry.is_file() and not _process_alive(int(match.group(1))):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed
