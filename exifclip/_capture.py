"""What a decoder says while it works, said once and naming the file.

Pillow warns in Python's raw format without naming the file ("Tag data
larger than file. Skipping tag 254", sometimes dozens of times for one
file), and libtiff writes its complaints straight onto the process's
standard error ("Fax4Decode: Bad code word at line 69 of strip 0"). In a
batch of hundreds of files neither says which file is meant.

:class:`NamedWarnings` records the warnings of one or more blocks and issues
them again, each kind once, prefixed with the file's name (same category, so
filters on ``DecompressionBombWarning`` and the like keep working);
:func:`named_warnings` does it for one block.
:func:`c_stderr` captures what C libraries write on file descriptor 2 during
a block, so that the caller can turn it into a warning or an error message.

Both change process-wide state for the length of the block (Python's warning
hooks; file descriptor 2), which is why each holds a lock: two exifclip
decodes in different threads take turns through these blocks. Code outside
exifclip that warns or writes on descriptor 2 from another thread during such
a block has its output collected too: warnings are issued again unchanged
(not renamed), C-level lines end up in the message of the file being decoded.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

__all__ = ["NamedWarnings", "c_stderr", "collapse", "named_warnings"]

_WARNINGS_LOCK = threading.RLock()
_STDERR_LOCK = threading.Lock()
_MAX_STDERR_BYTES = 64 * 1024  # what a decoder may say about one file that is kept


def _package_dir(module: str) -> str | None:
    spec = sys.modules.get(module)
    path = getattr(spec, "__file__", None)
    return os.path.dirname(os.path.abspath(path)) + os.sep if path else None


def collapse(messages: Iterable[str]) -> list[str]:
    """One line per kind of message, in order of first appearance.

    Messages that differ only in their numbers ("Skipping tag 254", "Skipping
    tag 255") are one kind; the line says how many there were.

    Examples
    --------
    >>> collapse(["Skipping tag 254", "Skipping tag 255", "bad code", "bad code"])
    ['Skipping tag 254 (and 1 more like it)', 'bad code (2 times)']
    """
    kinds: dict[str, list[str]] = {}
    for message in messages:
        kinds.setdefault(re.sub(r"\d+", "#", message), []).append(message)
    lines = []
    for same in kinds.values():
        if len(same) == 1:
            lines.append(same[0])
        elif len(set(same)) == 1:
            lines.append(f"{same[0]} ({len(same)} times)")
        else:
            lines.append(f"{same[0]} (and {len(same) - 1} more like it)")
    return lines


class NamedWarnings:
    """The warnings of one source, collected over several blocks and issued once, named.

    Parameters
    ----------
    name : str
        The source's name (:func:`exifclip.io.source_name`).

    Examples
    --------
    >>> import warnings
    >>> notes = NamedWarnings("a.tif")
    >>> with warnings.catch_warnings(record=True) as seen:
    ...     warnings.simplefilter("always")
    ...     for tag in (254, 255):
    ...         with notes.capture():  # as if Pillow warned
    ...             warnings.warn_explicit(f"Skipping tag {tag}", UserWarning, _package_dir("exifclip"), 1)
    ...     notes.issue()
    >>> [str(w.message) for w in seen]
    ['a.tif: Skipping tag 254 (and 1 more like it)']
    """

    def __init__(self, name: str):
        self.name = name
        self.caught: list[warnings.WarningMessage] = []

    @contextmanager
    def capture(self) -> Iterator[None]:
        """Record the warnings of the block (the caller's filters apply: an ``"error"`` one still raises)."""
        with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
            try:
                yield
            finally:
                self.caught.extend(caught)

    def issue(self, stacklevel: int = 1) -> None:
        """Issue what was recorded: Pillow's (and exifclip's unnamed) warnings once per kind, prefixed
        with the name; others unchanged. ``stacklevel`` as for :func:`warnings.warn`, from the caller."""
        caught, self.caught = self.caught, []
        own = tuple(d for d in (_package_dir("PIL"), _package_dir("exifclip")) if d)
        by_category: dict[type, list[str]] = {}
        for w in caught:
            text = str(w.message)
            if text.startswith(f"{self.name}: ") or not w.filename.startswith(own):
                # already named (exifclip's own), or another thread's warning: unchanged
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
                continue
            by_category.setdefault(w.category, []).append(" ".join(text.split()))
        for category, texts in by_category.items():
            for line in collapse(texts):
                warnings.warn(f"{self.name}: {line}", category, stacklevel=stacklevel + 1)


@contextmanager
def named_warnings(name: str) -> Iterator[None]:
    """Issue the warnings of the block again at its end, once per kind, naming ``name``
    (also when the block fails: what was said before may explain why)."""
    notes = NamedWarnings(name)
    try:
        with notes.capture():
            yield
    finally:
        notes.issue(stacklevel=4)  # past contextlib: the caller of the function using this block


@contextmanager
def c_stderr() -> Iterator[list[str]]:
    """Capture what is written on file descriptor 2 during the block.

    Yields
    ------
    list of str
        Filled when the block ends (also when it raises): the lines written,
        stripped, empty ones left out. Where descriptor 2 cannot be
        redirected (closed, no temporary folder) nothing is captured.
    """
    lines: list[str] = []
    with _STDERR_LOCK:
        try:
            saved = os.dup(2)
        except OSError:
            yield lines
            return
        try:
            tmp = tempfile.TemporaryFile()
        except OSError:
            os.close(saved)
            yield lines
            return
        with tmp:
            try:
                sys.stderr.flush()
            except (AttributeError, OSError, ValueError):
                pass
            os.dup2(tmp.fileno(), 2)
            try:
                yield lines
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                tmp.seek(0)
                text = tmp.read(_MAX_STDERR_BYTES).decode("utf-8", "replace")
                lines.extend(line.strip() for line in text.splitlines() if line.strip())
