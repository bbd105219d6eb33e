"""Find, load, cache and publish exifclip models.

A model is named by one string, resolved in this order:

1. a **packaged** name, shipped inside the wheel (``exifclip/models/NAME``);
2. a **local directory** holding ``config.json`` + ``model.safetensors``;
3. a **Hugging Face Hub** repository id ``"org/name"`` (with ``revision=``),
   read from the local Hub cache first and downloaded only when online.

Weights are read from safetensors only: pickled checkpoints
(``pytorch_model.bin``) are refused, and ``trust_remote_code`` is never used
(``ExifClipModel`` is registered with ``AutoModel`` in this package).

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

__all__ = [
    "ModelNotFoundError",
    "load_model",
    "load_tokenizer",
    "resolve_model_dir",
    "packaged_models",
    "clear_model_cache",
    "push_to_hub",
    "resolve_device",
]

_WEIGHTS = "model.safetensors"
_WEIGHTS_INDEX = "model.safetensors.index.json"
_PICKLED = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.pth")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
_HUB_FILES = ["config.json", "*.safetensors", "model.safetensors.index.json", "tokenizer*", "vocab.txt",
              "special_tokens_map.json", "README.md"]

_cache: dict[tuple, Any] = {}
_cache_lock = threading.RLock()


class ModelNotFoundError(FileNotFoundError):
    """A model name resolved to nothing usable; the message says what to do."""


def packaged_models() -> list[str]:
    """Names of the models shipped inside the package."""
    root = Path(__file__).with_name("models")
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "config.json").is_file())


def _offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE", "")
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def _check_weights(directory: Path, label: str) -> None:
    if not (directory / "config.json").is_file():
        raise ModelNotFoundError(f"{label}: no config.json in {directory}; not an exifclip model directory")
    if (directory / _WEIGHTS).is_file() or (directory / _WEIGHTS_INDEX).is_file():
        return
    pickled = [name for name in _PICKLED if (directory / name).exists()]
    if pickled:
        raise ModelNotFoundError(
            f"{label}: only pickled weights ({', '.join(pickled)}) in {directory}; exifclip loads safetensors "
            "only, because unpickling can run arbitrary code. Convert them with "
            "`exifclip convert-official` (official checkpoint) or save the model with save_pretrained()."
        )
    raise ModelNotFoundError(f"{label}: no {_WEIGHTS} in {directory}")


def _from_hub(repo_id: str, revision: str | None, cache_dir: str | os.PathLike | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    kwargs = dict(repo_id=repo_id, revision=revision, cache_dir=cache_dir, allow_patterns=_HUB_FILES)
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
    name_or_path: str | os.PathLike, revision: str | None = None, cache_dir: str | os.PathLike | None = None
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

    Raises
    ------
    ModelNotFoundError
        If nothing usable is found; the message says how to get the weights.
    """
    name = os.fspath(name_or_path)
    if name in packaged_models():
        directory = Path(__file__).with_name("models") / name
        _check_weights(directory, name)
        return directory
    path = Path(name).expanduser()
    if path.is_dir():
        _check_weights(path, name)
        return path.resolve()
    if _REPO_ID.match(name) and not path.exists():
        directory = _from_hub(name, revision, cache_dir)
        _check_weights(directory, name)
        return directory
    known = ", ".join(packaged_models()) or "none installed"
    raise ModelNotFoundError(
        f"model {name!r} is not a packaged model (packaged: {known}), not a local model directory, "
        "and not a Hugging Face Hub id of the form 'org/name'"
    )


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available, then Apple MPS, then CPU.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def _resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}; use e.g. 'float32', 'bfloat16' or 'float16'")
    return value


def _fingerprint(directory: Path) -> tuple:
    files = [directory / _WEIGHTS, directory / _WEIGHTS_INDEX, directory / "config.json"]
    return tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in files if f.is_file())


def load_tokenizer(directory: str | os.PathLike):
    """The tokenizer saved beside a model, or ``None`` if there is none."""
    from transformers import DistilBertTokenizerFast

    directory = Path(directory)
    if not any((directory / f).is_file() for f in ("tokenizer.json", "vocab.txt")):
        return None
    return DistilBertTokenizerFast.from_pretrained(directory)


def load_model(
    name_or_path: str | os.PathLike,
    revision: str | None = None,
    device: str | torch.device | None = "cpu",
    dtype: str | torch.dtype | None = None,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
):
    """Load an :class:`~exifclip.modeling.ExifClipModel`, once per process.

    Parameters
    ----------
    name_or_path : str or path-like
        Packaged name (``"exifclip-small"``), local directory, or Hub id.
    revision : str, optional
        Hub branch, tag or commit hash.
    device : str or torch.device, default="cpu"
        ``"auto"`` picks CUDA, then MPS, then CPU.
    dtype : str or torch.dtype, optional
        Parameter dtype (default float32).
    cache_dir : path-like, optional
        Hugging Face cache directory.
    use_cache : bool, default=True
        Return the process-level cached instance when there is one. Set to
        False for a private copy (e.g. to fine-tune).

    Returns
    -------
    ExifClipModel
        In eval mode, with ``model.tokenizer`` set when the directory has one.

    Raises
    ------
    ModelNotFoundError
        If the name resolves to nothing, or only to pickled weights.
    ValueError
        If the directory holds a model that is not an exifclip model.
    """
    from transformers.utils import logging as hf_logging

    from .modeling import ExifClipConfig, ExifClipModel

    directory = resolve_model_dir(name_or_path, revision=revision, cache_dir=cache_dir)
    torch_device = resolve_device(device)
    torch_dtype = _resolve_dtype(dtype)
    key = (str(directory), _fingerprint(directory), str(torch_device), str(torch_dtype))
    with _cache_lock:
        if use_cache and key in _cache:
            return _cache[key]
        model_type = json.loads((directory / "config.json").read_text()).get("model_type")
        if model_type != "exifclip":
            raise ValueError(f"{name_or_path}: config.json describes a {model_type!r} model, not an exifclip model")
        config = ExifClipConfig.from_pretrained(directory)
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
        model = model.to(device=torch_device, dtype=torch_dtype).eval()
        model.name_or_path = str(name_or_path)
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
