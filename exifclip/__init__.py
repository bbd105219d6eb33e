"""exifclip: camera-trace embeddings learnt from EXIF as language.

Public names are imported lazily, so ``import exifclip`` and the command line
start fast; the first use of a model-side name imports PyTorch. The table
below is the one list of them: ``__all__`` and the lazy imports both come
from it (``tests/test_architecture.py`` checks the type-checking block agrees).
"""

import sys as _sys
from typing import TYPE_CHECKING as _TYPE_CHECKING

from ._lazy import ModuleAliases as _ModuleAliases
from ._lazy import attach as _attach

__version__ = "0.1.0.dev0"

_EXPORTS = {
    # images, EXIF, patches
    "load_image": ".io",
    "ImageLoadError": ".io",
    "ImageDecodeWarning": ".io",
    "read_exif": ".exif",
    "exif_to_text": ".exif",
    "make_grid": ".patches",
    "PatchGrid": ".patches",
    "BatchItemError": ".batch",
    "BatchItemWarning": ".batch",
    # collections
    "iter_sources": ".sources",
    "collect_images": ".sources",
    "EmbeddingCache": ".cache",
    # estimators
    "ExifPatchEmbedder": ".embedder",
    "PatchEmbeddings": ".modeling.embedding",
    "SpliceLocalizer": ".splice.localizer",
    "SpliceResult": ".splice.postprocessing",
    "DistortionRegressor": ".distortion.regressor",
    "ExifZeroShotClassifier": ".probes",
    "make_linear_probe": ".probes",
    "ExifConsistencyScorer": ".exif_consistency",
    # models
    "ExifClipConfig": ".modeling.configuration",
    "ExifClipModel": ".modeling.model",
    "create_model": ".modeling.factory",
    "list_architectures": ".modeling.factory",
    "ClipLoss": ".modeling.loss",
    "build_exif_tokenizer": ".modeling.tokenization",
    "load_model": ".modeling.hub",
    "push_to_hub": ".modeling.hub",
    "ModelNotFoundError": ".modeling.hub",
    "ModelLoadError": ".modeling.hub",
    "convert_official": ".modeling.convert",
    # splice benchmarks and data
    "evaluate_localization": ".splice.evaluation",
    "SCORERS": ".splice.evaluation",
    "load_dataset": ".splice.datasets",
    "make_splices": ".splice.synthetic",
    # triage report, metadata red flags
    "build_report": ".report.page",
    "metadata_checks": ".report.red_flags",
    "MetadataCheck": ".report.red_flags",
    # lens distortion
    "distort": ".distortion.lens",
    "undistort": ".distortion.lens",
    "make_distortion_dataset": ".distortion.dataset",
    # training
    "TrainingConfig": ".training.config",
    "TrainResult": ".training.loop",
    "train": ".training.loop",
    "ExifPatchDataset": ".training.data",
}

__getattr__, _dir, _names = _attach(__name__, _EXPORTS)
__all__ = _names + ["__version__"]


def __dir__():
    return sorted(__all__)


#: Module paths of exifclip 0.1 (a flat package) and where they live now.
_MOVED_MODULES = {
    "exifclip._batch": "exifclip.batch",
    "exifclip.hub": "exifclip.modeling.hub",
    "exifclip.loss": "exifclip.modeling.loss",
    "exifclip.tokenization": "exifclip.modeling.tokenization",
    "exifclip.convert": "exifclip.modeling.convert",
    "exifclip.metrics": "exifclip.splice.metrics",
    "exifclip.evaluation": "exifclip.splice.evaluation",
    "exifclip.datasets": "exifclip.splice.datasets",
    "exifclip.synthetic": "exifclip.splice.synthetic",
    "exifclip.lens": "exifclip.distortion.lens",
    "exifclip.training_data": "exifclip.training.data",
    "exifclip.distributed": "exifclip.training.distributed",
    "exifclip.checkpoints": "exifclip.training.checkpoints",
}
if not any(isinstance(f, _ModuleAliases) for f in _sys.meta_path):
    _sys.meta_path.append(_ModuleAliases(_MOVED_MODULES))

if _TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .batch import BatchItemError, BatchItemWarning
    from .cache import EmbeddingCache
    from .distortion.dataset import make_distortion_dataset
    from .distortion.lens import distort, undistort
    from .distortion.regressor import DistortionRegressor
    from .embedder import ExifPatchEmbedder
    from .modeling.embedding import PatchEmbeddings
    from .exif import exif_to_text, read_exif
    from .exif_consistency import ExifConsistencyScorer
    from .io import ImageDecodeWarning, ImageLoadError, load_image
    from .modeling.configuration import ExifClipConfig
    from .modeling.convert import convert_official
    from .modeling.factory import create_model, list_architectures
    from .modeling.hub import ModelLoadError, ModelNotFoundError, load_model, push_to_hub
    from .modeling.loss import ClipLoss
    from .modeling.model import ExifClipModel
    from .modeling.tokenization import build_exif_tokenizer
    from .patches import PatchGrid, make_grid
    from .probes import ExifZeroShotClassifier, make_linear_probe
    from .sources import collect_images, iter_sources
    from .report.page import build_report
    from .report.red_flags import MetadataCheck, metadata_checks
    from .splice.datasets import load_dataset
    from .splice.evaluation import SCORERS, evaluate_localization
    from .splice.localizer import SpliceLocalizer
    from .splice.postprocessing import SpliceResult
    from .splice.synthetic import make_splices
    from .training.config import TrainingConfig
    from .training.data import ExifPatchDataset
    from .training.loop import TrainResult, train
