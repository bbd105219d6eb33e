"""Where a command writes: checked once, before any work, and named in every failure.

A mistake in ``--out`` (an existing file where a folder is meant, a place
this user may not write, a read-only file system) is one line naming the
place, exit status 2, before the model is loaded or any image read; never an
image reported as failed for what is the output's fault. A write that fails
later (the disk fills up) stops the command with one line naming the file.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from ._options import CommandError

__all__ = ["check_output_file", "output_failure", "prepare_output_folder"]


def _words(exc: OSError) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied: this user may not create files there"
    if exc.errno == errno.EROFS:
        return "the file system is read-only"
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        return "a part of the path is a file, not a folder"
    return exc.strerror or str(exc)


def output_failure(path: str | os.PathLike, exc: OSError) -> CommandError:
    """The error that stops a command whose output file ``path`` could not be written.

    Examples
    --------
    >>> import errno
    >>> str(output_failure("out/a_mask.png", OSError(errno.ENOSPC, "No space left on device")))
    'out/a_mask.png: cannot write (no space left on the device); stopped'
    """
    return CommandError(f"{path}: cannot write ({_words(exc)}); stopped")


def _kind(path: Path) -> str | None:
    """``"folder"``, ``"file"`` or None (absent); a path that cannot be looked up is a CommandError."""
    try:
        return "folder" if path.is_dir() else "file" if path.exists() else None
    except OSError as exc:
        raise CommandError(f"{path}: cannot look up the output place ({_words(exc)})") from None


def prepare_output_folder(path: str | os.PathLike, flag: str = "--out") -> Path:
    """Make sure results can be written into the folder ``path``: create it, try a file there.

    Raises
    ------
    CommandError
        Status 2, naming ``path`` and the flag that gave it: an existing file
        of that name, a folder that cannot be created, or one where no file
        can be created.
    """
    out = Path(path)
    if _kind(out) == "file":
        raise CommandError(f"{flag} {out}: is an existing file, not a folder; name a folder (it is created if "
                           "missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"{flag} {out}: cannot create the folder ({_words(exc)})") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".exifclip-write-test.", dir=out)
    except OSError as exc:
        raise CommandError(f"{flag} {out}: cannot write into this folder ({_words(exc)})") from None
    os.close(fd)
    os.unlink(probe)
    return out


def check_output_file(path: str | os.PathLike, flag: str = "--out") -> Path:
    """Make sure the file ``path`` can be written: not a folder, in a folder that can take it.

    Raises
    ------
    CommandError
        Status 2, naming ``path``.
    """
    target = Path(path)
    if _kind(target) == "folder":
        raise CommandError(f"{flag} {target}: is a folder; name the file to write")
    folder = target.parent
    if _kind(folder) == "file":
        raise CommandError(f"{flag} {target}: {folder} is a file, not a folder")
    try:
        prepare_output_folder(folder, flag)
    except CommandError as exc:
        raise CommandError(f"{flag} {target}: {str(exc).removeprefix(f'{flag} ')}") from None
    return target
