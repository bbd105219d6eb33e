"""One factory for every named architecture; the architectures are JSON data.

Each file in ``exifclip/modeling/configs/`` is an architecture: its name is the
file name, its values those of :class:`~exifclip.modeling.configuration.ExifClipConfig`.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import torch

from .configuration import ExifClipConfig
from .model import ExifClipModel

__all__ = ["create_model", "get_architecture_config", "list_architectures"]


def list_architectures() -> list[str]:
    """Names of the packaged architectures.

    Examples
    --------
    >>> list_architectures()
    ['base', 'paper-resnet50', 'small', 'small-s16', 'small-s8']
    """
    files = resources.files(__package__).joinpath("configs").iterdir()
    return sorted(f.name[: -len(".json")] for f in files if f.name.endswith(".json"))


def get_architecture_config(name: str, **overrides: Any) -> ExifClipConfig:
    """The :class:`ExifClipConfig` of a named architecture, with overrides.

    Top-level keys of ``overrides`` replace the JSON values; ``vision_config``
    and ``text_config`` dicts are merged key by key.
    """
    if name not in list_architectures():
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(list_architectures())}")
    path = resources.files(__package__).joinpath("configs", f"{name}.json")
    spec = json.loads(path.read_text())
    spec.pop("_comment", None)
    for key in ("vision_config", "text_config"):
        if key in overrides:
            spec[key] = {**spec[key], **overrides.pop(key)}
    spec.update(overrides)
    spec["architecture"] = name
    return ExifClipConfig(**spec)


def create_model(name: str, tokenizer: Any = None, seed: int | None = None, **overrides: Any) -> ExifClipModel:
    """Build a randomly initialised model of a named architecture.

    Parameters
    ----------
    name : str
        One of :func:`list_architectures`.
    tokenizer : tokenizer, optional
        The text tower's vocabulary follows its length. Defaults to a
        WordPiece tokenizer built by
        :func:`exifclip.modeling.tokenization.build_exif_tokenizer` on its synthetic
        EXIF corpus.
    seed : int, optional
        Seed for the initial weights.
    **overrides
        Config values to change (see :func:`get_architecture_config`).

    Examples
    --------
    >>> m = create_model("small", seed=0)
    >>> m.config.architecture, m.config.embed_dim
    ('small', 128)
    """
    from .tokenization import build_exif_tokenizer

    if tokenizer is None:
        base = get_architecture_config(name, **dict(overrides))
        tokenizer = build_exif_tokenizer(model_max_length=base.max_text_length)
    text = dict(overrides.pop("text_config", {}))
    text["vocab_size"] = len(tokenizer)
    config = get_architecture_config(name, text_config=text, **overrides)
    if seed is not None:
        torch.manual_seed(seed)
    model = ExifClipModel(config)
    model.tokenizer = tokenizer
    return model.eval()

