"""Convert the paper's released checkpoint into an exifclip model.

The authors of "EXIF as Language" (Zheng, Shrivastava, Owens, CVPR 2023)
released ``wrapper_75_new.pth``: a ``torch.save`` of ``{'epoch', 'model',
'optimizer', 'lr_sched'}`` whose ``model`` entry is the state dict of their
``EXIFNet`` wrapper. Facts about that layout, read from their
``model_wrapper.py`` (github.com/hellomuffin/exif-as-language):

- ``model.visual.*`` is a torchvision ResNet-50 whose ``fc`` was replaced by
  ``Linear(2048, 768)``: the image embedding is that fc's output.
- ``model.transformer.*`` is a ``transformers`` ``DistilBertModel``
  (distilbert-base-uncased) whose token states are mean-pooled under the
  attention mask: the text embedding, with no projection.
- The remaining keys are leftovers of the OpenAI CLIP model the wrapper was
  built around (``positional_embedding``, ``text_projection``,
  ``token_embedding``, ``ln_final``, ``logit_scale``) and the unused
  ``sink_temp``. Their evaluator multiplies cosines by CLIP's pretrained
  ``logit_scale.exp()`` = 100.

The photoholmes library circulates a pruned form: the same state dict with
``model.`` removed from every key and the CLIP leftovers but ``logit_scale``
deleted. Both layouts convert into the ``paper-resnet50`` architecture.

Checkpoints are read with ``torch.load(weights_only=True)`` only: a file that
needs anything but tensors and plain containers to unpickle is refused, never
executed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .hub import load_tokenizer
from .factory import get_architecture_config
from .model import ExifClipModel

__all__ = ["ConversionError", "convert_official", "load_official_state_dict", "map_official_key"]

#: Keys of the official wrapper that have no counterpart (CLIP leftovers,
#: the unused sink temperature, DistilBERT's position-id buffer).
DROPPED_KEYS = frozenset(
    {
        "positional_embedding",
        "text_projection",
        "token_embedding.weight",
        "ln_final.weight",
        "ln_final.bias",
        "logit_scale",
        "sink_temp",
        "transformer.embeddings.position_ids",
    }
)

# The paper's DistilBERT tokenizer; its vocabulary has 30522 entries.
DEFAULT_TOKENIZER = "distilbert-base-uncased"

_STAGE = r"visual\.layer([1-4])\.(\d+)\."
_VISION_RULES = [
    (re.compile(r"visual\.conv1\.weight"), lambda m: "vision_model.embedder.embedder.convolution.weight"),
    (re.compile(r"visual\.bn1\.(\w+)"), lambda m: f"vision_model.embedder.embedder.normalization.{m[1]}"),
    (
        re.compile(_STAGE + r"conv([1-3])\.weight"),
        lambda m: f"{_block(m)}.layer.{int(m[3]) - 1}.convolution.weight",
    ),
    (
        re.compile(_STAGE + r"bn([1-3])\.(\w+)"),
        lambda m: f"{_block(m)}.layer.{int(m[3]) - 1}.normalization.{m[4]}",
    ),
    (re.compile(_STAGE + r"downsample\.0\.weight"), lambda m: f"{_block(m)}.shortcut.convolution.weight"),
    (re.compile(_STAGE + r"downsample\.1\.(\w+)"), lambda m: f"{_block(m)}.shortcut.normalization.{m[3]}"),
    (re.compile(r"visual\.fc\.(weight|bias)"), lambda m: f"image_projection.{m[1]}"),
    (re.compile(r"transformer\.(.+)"), lambda m: f"text_model.{m[1]}"),
]


def _block(match: re.Match) -> str:
    # torchvision's layer1..layer4 are transformers' stages 0..3.
    return f"vision_model.encoder.stages.{int(match[1]) - 1}.layers.{match[2]}"


class ConversionError(ValueError):
    """The checkpoint cannot be converted; the message says why."""


def map_official_key(key: str) -> str | None:
    """The exifclip name of an official key (prefix already removed).

    Returns ``None`` for keys that are dropped on purpose and raises
    ``KeyError`` for keys it does not know.

    Examples
    --------
    >>> map_official_key("visual.layer2.0.downsample.1.running_var")
    'vision_model.encoder.stages.1.layers.0.shortcut.normalization.running_var'
    >>> map_official_key("visual.layer1.2.conv3.weight")
    'vision_model.encoder.stages.0.layers.2.layer.2.convolution.weight'
    >>> map_official_key("transformer.transformer.layer.5.ffn.lin1.bias")
    'text_model.transformer.layer.5.ffn.lin1.bias'
    >>> map_official_key("sink_temp") is None
    True
    """
    if key in DROPPED_KEYS:
        return None
    for pattern, target in _VISION_RULES:
        match = pattern.fullmatch(key)
        if match:
            return target(match)
    raise KeyError(key)


def _strip_prefix(key: str) -> str:
    # DataParallel adds "module."; the full checkpoint nests the CLIP model
    # under "model." (sink_temp sits beside it, without the prefix).
    for prefix in ("module.", "model."):
        key = key.removeprefix(prefix)
    return key


def _describe(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def load_official_state_dict(checkpoint: str | os.PathLike | Mapping) -> tuple[dict[str, torch.Tensor], dict]:
    """The official state dict, prefixes removed, and facts about the file.

    Parameters
    ----------
    checkpoint : path-like or mapping
        ``wrapper_75_new.pth`` (full training checkpoint), the pruned
        photoholmes file, or an already loaded dict of either layout.

    Returns
    -------
    state : dict of str to Tensor
    info : dict
        ``layout`` ("full" or "pruned"), ``epoch`` when recorded, and for
        files ``source`` (the file name) and ``sha256``.

    Raises
    ------
    ConversionError
        If the file cannot be read with ``weights_only=True`` or holds
        neither layout.
    """
    info: dict[str, Any] = {}
    if isinstance(checkpoint, Mapping):
        loaded = checkpoint
        name = "<state dict>"
    else:
        path = Path(checkpoint)
        name = str(path)
        if not path.is_file():
            raise ConversionError(f"{name}: no such checkpoint file")
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        info.update(source=path.name, sha256=digest.hexdigest())
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # UnpicklingError, RuntimeError (not a torch file), EOFError
            raise ConversionError(
                f"{name}: cannot be read as a weights-only torch checkpoint ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}). exifclip loads checkpoints only "
                "with torch.load(weights_only=True) and never unpickles arbitrary objects."
            ) from exc
    if not isinstance(loaded, Mapping):
        raise ConversionError(f"{name}: expected a dict, found {type(loaded).__name__}")
    if "model" in loaded and isinstance(loaded["model"], Mapping):
        info["layout"] = "full"
        if isinstance(loaded.get("epoch"), int):
            info["epoch"] = loaded["epoch"]
        raw = loaded["model"]
    else:
        info["layout"] = "pruned"
        raw = loaded
    state: dict[str, torch.Tensor] = {}
    not_tensors = [str(k) for k, v in raw.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ConversionError(f"{name}: entries that are not tensors: {_describe(not_tensors)}")
    for key, value in raw.items():
        state[_strip_prefix(str(key))] = value
    if not any(k.startswith("visual.") for k in state):
        raise ConversionError(
            f"{name}: no 'visual.*' (or 'model.visual.*') keys: this is not an EXIF-as-Language checkpoint"
        )
    if "logit_scale" in state:
        info["checkpoint_logit_scale_exp"] = float(state["logit_scale"].float().exp())
    return state, info


def infer_text_config(state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """DistilBERT sizes read off the ``transformer.*`` weight shapes.

    ``n_heads`` is not stored in the weights; DistilBERT's heads are
    64-dimensional (768 = 12 x 64 in distilbert-base), so ``dim // 64``.

    Examples
    --------
    >>> import torch
    >>> shapes = {"transformer.embeddings.word_embeddings.weight": (30522, 768),
    ...           "transformer.embeddings.position_embeddings.weight": (512, 768),
    ...           "transformer.transformer.layer.5.ffn.lin1.weight": (3072, 768)}
    >>> infer_text_config({k: torch.empty(s, device="meta") for k, s in shapes.items()})
    {'vocab_size': 30522, 'dim': 768, 'max_position_embeddings': 512, 'hidden_dim': 3072, 'n_layers': 6, 'n_heads': 12}
    """
    try:
        words = state["transformer.embeddings.word_embeddings.weight"]
        positions = state["transformer.embeddings.position_embeddings.weight"]
    except KeyError as exc:
        raise ConversionError(f"the text tower's embeddings are missing: {exc.args[0]}") from None
    layers = sorted({int(m[1]) for k in state if (m := re.match(r"transformer\.transformer\.layer\.(\d+)\.", k))})
    if not layers:
        raise ConversionError("the text tower has no transformer layers (transformer.transformer.layer.N.*)")
    lin1 = state.get(f"transformer.transformer.layer.{layers[0]}.ffn.lin1.weight")
    dim = int(words.shape[1])
    return {
        "vocab_size": int(words.shape[0]),
        "dim": dim,
        "max_position_embeddings": int(positions.shape[0]),
        "hidden_dim": int(lin1.shape[0]) if lin1 is not None else 4 * dim,
        "n_layers": layers[-1] + 1,
        "n_heads": max(1, dim // 64),
    }


def _load_tokenizer(tokenizer: Any, model_max_length: int):
    from transformers import DistilBertTokenizerFast, PreTrainedTokenizerBase

    if isinstance(tokenizer, PreTrainedTokenizerBase):
        return tokenizer
    spec = str(tokenizer)
    path = Path(spec)
    try:
        # The paper tokenised with DistilBertTokenizer (lower-cased WordPiece); the fast
        # class gives the same ids and is what exifclip.modeling.hub.load_tokenizer reads back.
        if path.is_file():  # a bare vocab.txt
            return DistilBertTokenizerFast(vocab=str(path), do_lower_case=True, model_max_length=model_max_length)
        if not path.is_dir():
            # Resolve Hub ids to local files first: from_pretrained on an unknown id can
            # quietly return an empty tokenizer instead of failing.
            from huggingface_hub import snapshot_download

            path = Path(snapshot_download(spec, allow_patterns=["tokenizer*", "vocab.txt", "special_tokens_map.json"]))
        tok = load_tokenizer(path)
        if tok is None:
            raise FileNotFoundError(f"no tokenizer.json or vocab.txt in {path}")
        tok.model_max_length = model_max_length
        return tok
    except Exception as exc:
        raise ConversionError(
            f"cannot load the tokenizer {spec!r} ({type(exc).__name__}: {str(exc).splitlines()[0]}). "
            f"Pass --tokenizer with a directory or vocab.txt of {DEFAULT_TOKENIZER} (e.g. a copy made on a "
            "machine with internet: AutoTokenizer.from_pretrained(...).save_pretrained(dir)), or "
            "--tokenizer none to convert the image side only."
        ) from exc


def _model_card(info: dict, text_config: dict, tokenizer_name: str | None) -> str:
    facts = json.dumps(info, indent=2, sort_keys=True)
    tokenizer_line = (
        f"Tokenizer: `{tokenizer_name}`."
        if tokenizer_name
        else "No tokenizer was saved: the text side (embed_exif, zero-shot probes) needs one."
    )
    return f"""---
library_name: exifclip
tags: [image-forensics, exif, clip]
---

# EXIF as Language (official weights, converted)

The checkpoint released by Zheng, Shrivastava and Owens with "EXIF as Language:
Learning Cross-Modal Associations Between Images and Camera Metadata" (CVPR 2023),
converted by `exifclip convert-official` into the `paper-resnet50` architecture.
The weights are theirs; see github.com/hellomuffin/exif-as-language for terms.

- Image tower: ResNet-50 + Linear(2048, 768); patches of 124 px, CLIP mean/std, no resizing.
- Text tower: DistilBERT {text_config}, attention-masked mean pooling, no projection.
- Logit scale fixed at 100 (their evaluator's CLIP value).
- {tokenizer_line}

Conversion facts:

```json
{facts}
```
"""


def convert_official(
    checkpoint: str | os.PathLike | Mapping,
    out_dir: str | os.PathLike | None = None,
    tokenizer: Any = DEFAULT_TOKENIZER,
) -> ExifClipModel:
    """Convert the paper's checkpoint into a ``paper-resnet50`` model.

    Parameters
    ----------
    checkpoint : path-like or mapping
        The official ``wrapper_75_new.pth`` or its pruned photoholmes form
        (see the module docstring), or either as a loaded dict.
    out_dir : path-like, optional
        Where to save the model (``config.json``, ``model.safetensors``, the
        tokenizer, a model card). Nothing is saved when omitted.
    tokenizer : str, path-like, tokenizer or None, default="distilbert-base-uncased"
        A Hub id or directory (loaded with ``AutoTokenizer``, offline when
        ``HF_HUB_OFFLINE=1``), a ``vocab.txt`` file, a tokenizer object, or
        ``None`` / ``"none"`` to convert without one (image side only).

    Returns
    -------
    ExifClipModel
        In eval mode; ``get_image_features`` equals the official
        ``encode_image`` and ``get_text_features`` its mean-pooled
        ``encode_text``.

    Raises
    ------
    ConversionError
        For an unreadable file, unknown or missing keys, or shapes that do
        not fit ``paper-resnet50`` (every offending key is listed).

    Examples
    --------
    >>> model = convert_official("wrapper_75_new.pth", "exifclip-paper")  # doctest: +SKIP
    >>> from exifclip import SpliceLocalizer
    >>> SpliceLocalizer(model="exifclip-paper").localize("photo.jpg")  # doctest: +SKIP
    """
    state, info = load_official_state_dict(checkpoint)
    unknown, mapped = [], {}
    for key, value in state.items():
        try:
            target = map_official_key(key)
        except KeyError:
            unknown.append(key)
            continue
        if target is not None:
            mapped[target] = value
    if unknown:
        raise ConversionError(f"unknown keys in the checkpoint: {_describe(sorted(unknown))}")

    text_config = infer_text_config(state)
    config = get_architecture_config("paper-resnet50", text_config=text_config)
    model = ExifClipModel(config)
    expected = model.state_dict()
    # BatchNorm's step counter is not used in eval and older torch did not save it.
    optional = {k for k in expected if k.endswith("num_batches_tracked")} | {"logit_scale"}
    missing = sorted(k for k in expected if k not in mapped and k not in optional)
    if missing:
        raise ConversionError(f"missing keys for paper-resnet50: {_describe(missing)}")
    extra = sorted(k for k in mapped if k not in expected)
    if extra:
        raise ConversionError(f"keys with no place in paper-resnet50: {_describe(extra)}")
    bad_shapes = [
        f"{k} {tuple(v.shape)} (expected {tuple(expected[k].shape)})"
        for k, v in mapped.items()
        if tuple(v.shape) != tuple(expected[k].shape)
    ]
    if bad_shapes:
        raise ConversionError(f"shapes that do not fit paper-resnet50: {_describe(bad_shapes)}")

    # fp16 leftovers (CLIP's convert_weights on GPU) become float32; counters stay integers.
    converted = {k: (v.float() if v.is_floating_point() else v) for k, v in mapped.items()}
    model.load_state_dict(converted, strict=False)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100.0))
    model.eval()

    tokenizer_name = None
    if tokenizer is not None and str(tokenizer).lower() != "none":
        tok = _load_tokenizer(tokenizer, config.max_text_length)
        if len(tok) != text_config["vocab_size"]:
            raise ConversionError(
                f"the tokenizer has {len(tok)} tokens but the checkpoint's vocabulary has "
                f"{text_config['vocab_size']}: it is not the tokenizer this model was trained with"
            )
        model.tokenizer = tok
        tokenizer_name = getattr(tok, "name_or_path", None) or str(tokenizer)
    info["text_config"] = text_config
    if out_dir is not None:
        out_dir = Path(out_dir)
        model.save_pretrained(out_dir)
        (out_dir / "README.md").write_text(_model_card(info, text_config, tokenizer_name))
    model.conversion_info = info
    return model
