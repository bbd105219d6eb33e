"""exifclip: camera-trace embeddings learnt from EXIF as language.

Public names are imported lazily, so ``import exifclip`` and the command line
start fast; the first use of a model-side name imports PyTorch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0.dev0"

_EXPORTS = {
    "ExifPatchEmbedder": "embedder",
    "PatchEmbeddings": "embedder",
    "ExifClipConfig": "modeling",
    "ExifClipModel": "modeling",
    "create_model": "modeling",
    "list_architectures": "modeling",
    "ClipLoss": "loss",
    "load_model": "hub",
    "push_to_hub": "hub",
    "ModelNotFoundError": "hub",
    "read_exif": "exif",
    "exif_to_text": "exif",
    "load_image": "io",
    "ImageLoadError": "io",
    "make_grid": "patches",
    "PatchGrid": "patches",
    "build_exif_tokenizer": "tokenization",
    "SpliceLocalizer": "splice",
    "SpliceResult": "splice",
    "evaluate_localization": "evaluation",
    "SCORERS": "evaluation",
    "load_dataset": "datasets",
    "make_splices": "synthetic",
    "TrainingConfig": "training",
    "TrainResult": "training",
    "train": "training",
    "ExifPatchDataset": "training_data",
    "ModelLoadError": "hub",
    "ImageDecodeWarning": "io",
    "BatchItemError": "_batch",
    "BatchItemWarning": "_batch",
    "convert_official": "convert",
    "ExifZeroShotClassifier": "probes",
    "make_linear_probe": "probes",
    "DistortionRegressor": "distortion",
    "distort": "lens",
    "undistort": "lens",
    "make_distortion_dataset": "lens",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'exifclip' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .embedder import ExifPatchEmbedder, PatchEmbeddings
    from .exif import exif_to_text, read_exif
    from .hub import ModelNotFoundError, load_model, push_to_hub
    from .io import ImageLoadError, load_image
    from .loss import ClipLoss
    from .modeling import ExifClipConfig, ExifClipModel, create_model, list_architectures
    from .datasets import load_dataset
    from .evaluation import SCORERS, evaluate_localization
    from .patches import PatchGrid, make_grid
    from .splice import SpliceLocalizer, SpliceResult
    from .synthetic import make_splices
    from .training import TrainingConfig, TrainResult, train
    from .training_data import ExifPatchDataset
    from ._batch import BatchItemError, BatchItemWarning
    from .convert import convert_official
    from .distortion import DistortionRegressor
    from .hub import ModelLoadError
    from .io import ImageDecodeWarning
    from .lens import distort, make_distortion_dataset, undistort
    from .probes import ExifZeroShotClassifier, make_linear_probe
    from .tokenization import build_exif_tokenizer
