"""Find, load, cache and publish exifclip models.

A model is named by one string, resolved in this order:

1. a **packaged** name, shipped inside the wheel (``exifclip/models/NAME``);
2. a **local directory** holding ``config.json`` + ``model.safetensors``;
3. a **Hugging Face Hub** repository id ``"org/name"`` (with ``revision=``),
   read from the local Hub cache first and downloaded only when online.

Weights are read from safetensors only: pickled checkpoints
(``pytorch_model.bin``) are refused unless ``allow_pickle=True``, and even
then are read with ``torch.load(weights_only=True)``. ``trust_remote_code``
is never used: ``config.json`` is read as data (an ``auto_map`` in it is
ignored) and only this package's ``ExifClipModel`` is built. Weights must fit
the config exactly: a missing, unexpected or wrongly shaped tensor is an
error, never a silently random-initialised layer.

Loaded models are kept in a process-level cache keyed by the resolved files,
device and dtype, so estimator clones (``GridSearchCV``) and repeated calls
share one copy of the weights. Cached models are in eval mode and must be
treated as read-only; fine-tuning works on a copy.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Any

import torch

from .._device import resolve_device, resolve_dtype
from .configuration import ExifClipConfig
from .factory import list_architectures
from .model import ExifClipModel

__all__ = [
    "ModelLoadError",
    "ModelNotFoundError",
    "load_model",
    "load_tokenizer",
    "resolve_model_dir",
    "packaged_models",
    "clear_model_cache",
    "push_to_hub",
]

#: Where the models shipped inside the package live (``exifclip/models/NAME/``).
PACKAGED_MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
_WEIGHTS = "model.safetensors"
_WEIGHTS_INDEX = "model.safetensors.index.json"
_PICKLED = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.pth")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
_HUB_FILES = ["config.json", "*.safetensors", "model.safetensors.index.json", "tokenizer*", "vocab.txt",
              "special_tokens_map.json", "README.md", "score_calibration.json"]

_cache: dict[tuple, Any] = {}
_cache_lock = threading.RLock()


class ModelNotFoundError(FileNotFoundError):
    """A model name resolved to nothing usable; the message says what to do."""


class ModelLoadError(ValueError):
    """A model directory was found but its config or weights are unusable."""


def packaged_models() -> list[str]:
    """Names of the models shipped inside the package."""
    root = PACKAGED_MODELS_DIR
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "config.json").is_file())


def _offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE", "")
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def _check_weights(directory: Path, label: str, allow_pickle: bool = False) -> None:
    if not (directory / "config.json").is_file():
        raise ModelNotFoundError(f"{label}: no config.json in {directory}; not an exifclip model directory")
    if (directory / _WEIGHTS).is_file() or (directory / _WEIGHTS_INDEX).is_file():
        return
    pickled = [name for name in _PICKLED if (directory / name).exists()]
    if pickled and allow_pickle:
        return
    if pickled:
        raise ModelNotFoundError(
            f"{label}: only pickled weights ({', '.join(pickled)}) in {directory}; exifclip loads safetensors "
            "only, because unpickling can run arbitrary code. Convert them with "
            "`exifclip convert-official` (official checkpoint) or save the model with save_pretrained(); "
            "allow_pickle=True reads them with torch.load(weights_only=True) if you trust their source."
        )
    raise ModelNotFoundError(f"{label}: no {_WEIGHTS} in {directory}")


def _read_config(directory: Path, label: str):

    path = directory / "config.json"
    try:
        spec = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{label}: {path} is not readable JSON ({exc})") from None
    if not isinstance(spec, dict):
        raise ModelLoadError(f"{label}: {path} must hold a JSON object")
    model_type = spec.get("model_type")
    if model_type != "exifclip":
        raise ModelLoadError(
            f"{label}: config.json describes a {model_type!r} model, not an exifclip model "
            "(model_type must be 'exifclip'; exifclip never runs code named by a config's auto_map)"
        )
    spec.pop("auto_map", None)
    try:
        return ExifClipConfig.from_dict(spec)
    except Exception as exc:  # bad sub-config values, dimension mismatch between the towers
        raise ModelLoadError(f"{label}: config.json is not a valid exifclip config: {exc}") from None


def _stored_shapes(directory: Path, allow_pickle: bool) -> tuple[dict[str, tuple], dict | None]:
    """Tensor shapes in the weight files, and the state dict when it had to be unpickled."""
    from safetensors import safe_open

    files = []
    if (directory / _WEIGHTS).is_file():
        files = [directory / _WEIGHTS]
    elif (directory / _WEIGHTS_INDEX).is_file():
        index = json.loads((directory / _WEIGHTS_INDEX).read_text())
        files = [directory / name for name in sorted(set(index.get("weight_map", {}).values()))]
    if files:
        shapes = {}
        for f in files:
            with safe_open(str(f), framework="pt") as fh:
                for key in fh.keys():
                    shapes[key] = tuple(fh.get_slice(key).get_shape())
        return shapes, None
    state: dict = {}
    names = ["pytorch_model.bin", "model.pt", "model.pth"]
    index = directory / "pytorch_model.bin.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text()).get("weight_map", {}).values()))
    for name in names:
        if (directory / name).is_file():
            # Only tensors and plain containers can come out of a weights-only unpickler.
            try:
                loaded = torch.load(directory / name, map_location="cpu", weights_only=True)
            except Exception as exc:  # UnpicklingError for anything beyond tensors and containers
                raise ModelLoadError(
                    f"{directory / name}: refused: not readable with torch.load(weights_only=True) "
                    f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'})"
                ) from None
            if not isinstance(loaded, dict):
                raise ModelLoadError(f"{directory / name}: expected a state dict, found {type(loaded).__name__}")
            state.update(loaded)
    return {k: tuple(v.shape) for k, v in state.items()}, state


def _check_fit(config, shapes: dict[str, tuple], label: str) -> None:

    with torch.device("meta"):  # shapes only: no memory, no random init
        expected = {k: tuple(v.shape) for k, v in ExifClipModel(config).state_dict().items()}
    missing = sorted(k for k in expected if k not in shapes)
    unexpected = sorted(k for k in shapes if k not in expected)
    wrong = [
        f"{k} {shapes[k]} (config needs {expected[k]})" for k in expected if k in shapes and shapes[k] != expected[k]
    ]
    problems = []
    for what, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if names:
            shown = ", ".join(names[:8]) + (f", ... ({len(names) - 8} more)" if len(names) > 8 else "")
            problems.append(f"{what}: {shown}")
    if problems:
        raise ModelLoadError(f"{label}: the weights do not fit config.json; " + "; ".join(problems))


def _from_hub(repo_id: str, revision: str | None, cache_dir: str | os.PathLike | None, allow_pickle: bool) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    patterns = _HUB_FILES + (["pytorch_model*.bin", "pytorch_model.bin.index.json"] if allow_pickle else [])
    kwargs = dict(repo_id=repo_id, revision=revision, cache_dir=cache_dir, allow_patterns=patterns)
    try:
        return Path(snapshot_download(local_files_only=True, **kwargs))
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError):
        pass
    where = f"{repo_id}" + (f"@{revision}" if revision else "")
    if _offline():
        raise ModelNotFoundError(
            f"model {where!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set. "
            f"On a connected machine run `hf download {repo_id}"
            + (f" --revision {revision}" if revision else "")
            + "` (or `huggingface-cli download`), copy the cache here, or pass a local model directory. "
            f"Packaged models that need no download: {', '.join(packaged_models()) or 'none installed'}."
        )
    try:
        return Path(snapshot_download(**kwargs))
    except Exception as exc:  # network, auth, missing repo: one clear message
        raise ModelNotFoundError(
            f"could not download model {where!r} from the Hugging Face Hub ({type(exc).__name__}: {exc}). "
            "Check the repository id and revision, your network and `hf auth login`, or pass a local directory."
        ) from None


def resolve_model_dir(
    name_or_path: str | os.PathLike,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    allow_pickle: bool = False,
) -> Path:
    """The local directory that holds the files of a model name.

    Parameters
    ----------
    name_or_path : str or path-like
        Packaged name, local directory, or Hub repository id.
    revision : str, optional
        Hub branch, tag or commit (commits pin exactly); Hub ids only.
    cache_dir : path-like, optional
        Hugging Face cache to read (default: the usual ``HF_HUB_CACHE``).
    allow_pickle : bool, default=False
        Accept a directory whose only weights are pickled
        (``pytorch_model.bin``).

    Raises
    ------
    ModelNotFoundError
        If nothing usable is found; the message says how to get the weights.
    """
    name = os.fspath(name_or_path)
    if name in packaged_models():
        directory = PACKAGED_MODELS_DIR / name
        _check_weights(directory, name, allow_pickle)
        return directory
    path = Path(name).expanduser()
    if path.is_dir():
        _check_weights(path, name, allow_pickle)
        return path.resolve()
    if _REPO_ID.match(name) and not path.exists():
        directory = _from_hub(name, revision, cache_dir, allow_pickle)
        _check_weights(directory, name, allow_pickle)
        return directory
    known = ", ".join(packaged_models()) or "none installed"
    if name in list_architectures():
        raise ModelNotFoundError(
            f"{name!r} is an architecture, not a trained model: create_model({name!r}) builds it with random "
            "weights. For trained weights pass a model directory or Hub id"
            + (" (the paper's weights: `exifclip convert-official wrapper_75_new.pth DIR`, then model=DIR)"
               if name == "paper-resnet50" else "")
            + f"; packaged models: {known}"
        )
    raise ModelNotFoundError(
        f"model {name!r} is not a packaged model (packaged: {known}), not a local model directory, "
        "and not a Hugging Face Hub id of the form 'org/name'"
    )


def _fingerprint(directory: Path) -> tuple:
    files = [directory / _WEIGHTS, directory / _WEIGHTS_INDEX, directory / "config.json"]
    files += [directory / name for name in _PICKLED]
    return tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in files if f.is_file())


def load_tokenizer(directory: str | os.PathLike):
    """The tokenizer saved beside a model, or ``None`` if there is none."""
    from transformers import DistilBertTokenizerFast

    directory = Path(directory)
    if not any((directory / f).is_file() for f in ("tokenizer.json", "vocab.txt")):
        return None
    tokenizer = DistilBertTokenizerFast.from_pretrained(directory)
    saved = directory / "tokenizer.json"
    if saved.is_file():
        from tokenizers import Tokenizer

        # transformers rebuilds a BERT normaliser from the tokenizer's settings, which splits CJK
        # characters and drops control characters unlike the normaliser the model was trained with
        tokenizer.backend_tokenizer.normalizer = Tokenizer.from_file(str(saved)).normalizer
    return tokenizer


def load_model(
    name_or_path: str | os.PathLike,
    revision: str | None = None,
    device: str | torch.device | None = "cpu",
    dtype: str | torch.dtype | None = None,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    allow_pickle: bool = False,
):
    """Load an :class:`~exifclip.modeling.ExifClipModel`, once per process.

    Parameters
    ----------
    name_or_path : str or path-like
        Packaged name (``"exifclip-small"``), local directory, or Hub id.
    revision : str, optional
        Hub branch, tag or commit hash; a commit hash pins the exact files.
    device : str or torch.device, default="cpu"
        ``"auto"`` picks CUDA, then MPS, then CPU.
    dtype : str or torch.dtype, optional
        Parameter dtype (default float32).
    cache_dir : path-like, optional
        Hugging Face cache directory.
    use_cache : bool, default=True
        Return the process-level cached instance when there is one. Set to
        False for a private copy (e.g. to fine-tune). The cache is safe to
        use from several threads: concurrent first loads build one model.
    allow_pickle : bool, default=False
        Accept pickled weights (``pytorch_model.bin``) when a model has no
        safetensors. They are still read with ``torch.load(weights_only=True)``,
        which unpickles only tensors and plain containers.

    Returns
    -------
    ExifClipModel
        In eval mode, with ``model.tokenizer`` set when the directory has one
        and ``model.source_dir``, the directory its files were read from.

    Raises
    ------
    ModelNotFoundError
        If the name resolves to nothing, or only to pickled weights.
    ModelLoadError
        If config.json is not an exifclip config, or the weights do not fit
        it (missing, unexpected or wrongly shaped tensors, all listed).

    Examples
    --------
    >>> model = load_model("exifclip-small")
    >>> model.config.architecture, model.training
    ('small', False)
    """
    from transformers.utils import logging as hf_logging


    directory = resolve_model_dir(name_or_path, revision=revision, cache_dir=cache_dir, allow_pickle=allow_pickle)
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype)
    label = str(name_or_path)
    key = (str(directory), _fingerprint(directory), str(torch_device), str(torch_dtype))
    with _cache_lock:
        if use_cache and key in _cache:
            return _cache[key]
        config = _read_config(directory, label)
        shapes, pickled_state = _stored_shapes(directory, allow_pickle)
        _check_fit(config, shapes, label)
        if pickled_state is not None:
            model = ExifClipModel(config)
            model.load_state_dict(pickled_state, strict=True)
        else:
            progress = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()
            try:
                model = ExifClipModel.from_pretrained(directory, config=config, use_safetensors=True)
            finally:
                if progress:
                    hf_logging.enable_progress_bar()
        model.tokenizer = load_tokenizer(directory)
        # from_pretrained re-creates parameters as trainable; a fixed scale stays fixed.
        model.logit_scale.requires_grad_(config.learn_logit_scale)
        # channels_last: oneDNN's and cuDNN's faster convolution layout (1.2-2.3x measured on the CPU,
        # docs/benchmarks.md); only 4-D weights change layout, the values stay.
        model = model.to(device=torch_device, dtype=torch_dtype, memory_format=torch.channels_last).eval()
        model.name_or_path = str(name_or_path)
        model.source_dir = directory  # files saved beside the weights (e.g. a score calibration) are read from here
        if use_cache:
            _cache[key] = model
        return model


def clear_model_cache() -> None:
    """Forget every cached model (frees their memory once unreferenced)."""
    with _cache_lock:
        _cache.clear()


def push_to_hub(
    model,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = "Upload exifclip model",
    api: Any = None,
) -> Any:
    """Publish ``model`` (weights, config, tokenizer) to a Hub repository.

    Parameters
    ----------
    model : ExifClipModel
    repo_id : str
        ``"org/name"``; created if it does not exist.
    revision : str, optional
        Branch to commit to.
    private : bool, optional
        Visibility of a newly created repository.
    token : str, optional
        Hub token (default: the logged-in user's).
    commit_message : str
    api : huggingface_hub.HfApi, optional
        The client to use; tests pass a local stand-in.

    Returns
    -------
    The result of ``api.upload_folder`` (a commit info on the real Hub).
    """
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    if not _REPO_ID.match(repo_id):
        raise ValueError(f"repo_id must look like 'org/name', got {repo_id!r}")
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    if revision is not None:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        return api.upload_folder(
            repo_id=repo_id, folder_path=tmp, revision=revision, commit_message=commit_message, repo_type="model"
        )
