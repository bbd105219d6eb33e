"""What an estimator does when one image of a batch fails: ``errors=``.

Every exifclip estimator method that takes many images (``transform``,
``localize``, ``predict``, ``decision_function``, ``score``, a ``fit`` that
reads images) follows one rule, set by the estimator's ``errors`` parameter:

``"warn"`` (the default)
    The failed image is left out, a :class:`BatchItemWarning` names it (its
    position, its source and the reason), and everything else is computed.
    Results stay aligned with the inputs: the failed image's place holds
    ``None`` in per-image lists and a row of NaN in arrays, never something
    that could pass for a result (an empty mask, a zero score).
``"skip"``
    The same without the warning.
``"raise"``
    The first failure raises :class:`BatchItemError` naming the image; the
    images before it are lost with the call.

In every mode the estimator's ``failures_`` attribute lists the failures of
its most recent call as :class:`BatchFailure` ``(index, source, reason)``
tuples, in input order (empty when nothing failed).

Why ``"warn"`` by default: a forensic batch of thousands of photos should not
lose hours of work to one truncated JPEG, and a failure must still be seen
and never be mistaken for a clean result. This is also scikit-learn's own
choice for a failed fit in cross-validation (``error_score=np.nan`` with a
``FitFailedWarning``). Set ``errors="raise"`` where any failure must stop the
work (a benchmark run that must cover every image).

Only failures of the image itself count (it cannot be read or decoded, has
the wrong shape or dtype, is smaller than a patch, or its post-processing
failed): :data:`ITEM_ERRORS`. Anything else (out of memory, a broken model,
Ctrl-C) stops the call in every mode.

Estimators get this through their base (``_failure_report`` in
:mod:`exifclip._base`); code that warns from a worker thread records with
``report.fail(..., defer=True)`` and calls :meth:`BatchErrors.flush` from the
caller's thread.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any, NamedTuple

import sklearn

from .io import ImageLoadError, source_name

__all__ = [
    "ERRORS_MODES",
    "ITEM_ERRORS",
    "BatchErrors",
    "BatchFailure",
    "BatchItemError",
    "BatchItemWarning",
    "check_errors",
]


def _package_dir(module_file: str) -> str:
    return os.path.dirname(os.path.abspath(module_file)) + os.sep


# Frames of these packages are skipped when a warning looks for the user's line
# (scikit-learn wraps ``transform`` and runs pipelines).
_INTERNAL_DIRS = (_package_dir(__file__), _package_dir(sklearn.__file__))

#: The values of every estimator's ``errors`` parameter.
ERRORS_MODES = ("raise", "skip", "warn")

#: Exceptions that mean "this item failed", not "the whole call failed".
#: :class:`~exifclip.io.ImageLoadError` is a ``ValueError``.
ITEM_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    OSError,
    ArithmeticError,
)


class BatchFailure(NamedTuple):
    """One failed item of a batch.

    Attributes
    ----------
    index : int
        Its position in the input.
    source : str
        Its name (:func:`exifclip.io.source_name`: the path for files).
    reason : str
        What went wrong, without the source name.
    """

    index: int
    source: str
    reason: str

    def __str__(self) -> str:
        return f"image {self.index} ({self.source}): {self.reason}"


class BatchItemError(ImageLoadError):
    """An image of a batch failed with ``errors="raise"``.

    A :class:`~exifclip.io.ImageLoadError` (so a ``ValueError``) whose
    message names the image's position, source and the reason; the original
    exception is its ``__cause__``.

    Attributes
    ----------
    failure : BatchFailure
    """

    def __init__(self, failure: BatchFailure):
        super().__init__(str(failure))
        self.failure = failure


class BatchItemWarning(UserWarning):
    """An image of a batch was left out (``errors="warn"``).

    Silence these with ``warnings.simplefilter("ignore", BatchItemWarning)``;
    the estimator's ``failures_`` still lists them.
    """


def check_errors(errors: Any) -> str:
    """Validate an ``errors`` parameter and return it.

    Raises
    ------
    ValueError
        If ``errors`` is not one of :data:`ERRORS_MODES`.

    Examples
    --------
    >>> check_errors("skip")
    'skip'
    """
    if not isinstance(errors, str) or errors not in ERRORS_MODES:
        raise ValueError(f"errors must be one of {ERRORS_MODES}, got {errors!r}")
    return errors


def _reason(exc: BaseException, name: str) -> str:
    """The exception's message without a leading ``"<name>: "``."""
    message = str(exc) or type(exc).__name__
    prefix = f"{name}: "
    return message.removeprefix(prefix)


class BatchErrors:
    """The failures of one call over many images, handled as ``errors`` says.

    Parameters
    ----------
    errors : {"raise", "skip", "warn"}
        Validated here (``ValueError`` otherwise).

    Attributes
    ----------
    mode : str
    failures : list of BatchFailure
        Recorded failures, in input order (``"skip"`` and ``"warn"``).

    Examples
    --------
    >>> report = BatchErrors("skip")
    >>> report.fail(2, "a.jpg", ValueError("a.jpg: file not found"))
    BatchFailure(index=2, source='a.jpg', reason='file not found')
    >>> report.failed
    {2}
    >>> BatchErrors("raise").fail(0, "b.jpg", OSError("disk error"))
    Traceback (most recent call last):
    ...
    exifclip.batch.BatchItemError: image 0 (b.jpg): disk error
    """

    def __init__(self, errors: str = "warn"):
        self.mode = check_errors(errors)
        self._failures: dict[int, BatchFailure] = {}
        self._pending: list[BatchFailure] = []

    @property
    def failures(self) -> list[BatchFailure]:
        return [self._failures[i] for i in sorted(self._failures)]

    @property
    def failed(self) -> set[int]:
        """Indices of the failed items."""
        return set(self._failures)

    def fail(self, index: int, source: Any, exc: BaseException, defer: bool = False) -> BatchFailure:
        """Report that item ``index`` failed with ``exc``.

        Parameters
        ----------
        index : int
            Position of the item in the input.
        source : image source or str
            The item (only its :func:`~exifclip.io.source_name` is kept).
        exc : Exception
            What went wrong.
        defer : bool, default=False
            Hold the warning until :meth:`flush` (for code running in a
            worker thread: warning filters belong to the caller's thread).

        Returns
        -------
        BatchFailure

        Raises
        ------
        BatchItemError
            With ``errors="raise"``, from ``exc``.
        """
        name = source if isinstance(source, str) else source_name(source)
        failure = BatchFailure(int(index), name, _reason(exc, name))
        if self.mode == "raise":
            raise BatchItemError(failure) from exc
        self._failures.setdefault(failure.index, failure)
        if self.mode == "warn":
            self._pending.append(failure)
            if not defer:
                self.flush()
        return failure

    def flush(self) -> None:
        """Issue the warnings held back so far (``errors="warn"``).

        Each warning points at the first caller outside exifclip and
        scikit-learn: the user's own line.
        """
        pending, self._pending = self._pending, []
        if not pending:
            return
        frame, level = sys._getframe(0), 1
        while frame is not None and frame.f_code.co_filename.startswith(_INTERNAL_DIRS):
            frame, level = frame.f_back, level + 1
        for failure in pending:
            warnings.warn(f"skipped {failure}", BatchItemWarning, stacklevel=level)
