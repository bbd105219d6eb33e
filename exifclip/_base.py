"""The base of every exifclip estimator whose ``X`` is a list of images.

They share the parameters that say which model, which patch grid, how to
batch and decode, and what a bad image does. Those are declared once here as
scikit-learn parameter constraints, which ``BaseEstimator._validate_params``
checks at the start of every ``fit``; each estimator adds its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from numbers import Integral

from sklearn.base import BaseEstimator

# scikit-learn's own constraint types (sklearn.utils._param_validation, since 1.2),
# so that errors read like scikit-learn's and set_params + fit are checked alike.
from sklearn.utils._param_validation import Interval, StrOptions

from .batch import ERRORS_MODES, BatchErrors

__all__ = ["EMBEDDING_MODES", "EMBEDDING_PARAMETERS", "POSITIVE_INT", "RUNTIMES", "ImageEstimator"]

POSITIVE_INT = Interval(Integral, 1, None, closed="left")

#: How patches are embedded: ``"exact"``, each patch through the whole image
#: tower (the paper's way); ``"fast"``, the tower's trunk once over the photo
#: and each patch pooled from its feature map (:mod:`exifclip.modeling.dense`).
EMBEDDING_MODES = ("exact", "fast")

#: What runs the image tower: PyTorch, or ONNX Runtime on the CPU (:mod:`exifclip.modeling.onnx_runtime`).
RUNTIMES = ("torch", "onnxruntime")

#: The parameters every image estimator takes, with their constraints. An
#: estimator that wraps an :class:`~exifclip.embedder.ExifPatchEmbedder`
#: passes exactly these on (:meth:`ImageEstimator._embedding_params`).
EMBEDDING_PARAMETERS: dict[str, list | str] = {
    "model": [str, os.PathLike],
    "revision": [str, None],
    "patch_size": [POSITIVE_INT, None],
    "num_per_dim": [POSITIVE_INT],
    "stride": [POSITIVE_INT, None],
    "batch_size": [POSITIVE_INT],
    "device": "no_validation",  # str or torch.device: exifclip._device.resolve_device names a bad one
    "dtype": "no_validation",  # str or torch.dtype: exifclip._device.resolve_dtype names a bad one
    "mode": [StrOptions(set(EMBEDDING_MODES))],
    "runtime": [StrOptions(set(RUNTIMES))],
    "errors": [StrOptions(set(ERRORS_MODES))],
    "progress": ["boolean"],
    "allow_truncated": ["boolean"],
    "max_pixels": [POSITIVE_INT, None],
}


class ImageEstimator(BaseEstimator):
    """Base class: scikit-learn tags for image input, shared parameters, one failure report.

    Subclasses list every parameter in their own ``__init__`` (scikit-learn
    reads them from the signature) and extend ``_parameter_constraints``.
    """

    _parameter_constraints: dict = dict(EMBEDDING_PARAMETERS)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.requires_fit = True
        return tags

    def _embedding_params(self) -> dict:
        """The shared parameters, as keyword arguments of ``ExifPatchEmbedder``."""
        return {name: getattr(self, name) for name in EMBEDDING_PARAMETERS}

    @contextmanager
    def _failure_report(self) -> Iterator[BatchErrors]:
        """The failures of one call over many images: handled as ``errors`` says
        (read now, so ``set_params`` after ``fit`` counts), listed in ``failures_`` after."""
        report = BatchErrors(self.errors)
        try:
            yield report
        finally:
            self.failures_ = report.failures
