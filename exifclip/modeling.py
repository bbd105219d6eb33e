"""The dual-tower model: a ResNet over patches, a DistilBERT over EXIF text.

:class:`ExifClipConfig` and :class:`ExifClipModel` are ordinary
``transformers`` classes, registered with ``AutoConfig`` / ``AutoModel`` under
``model_type="exifclip"``: they save as ``config.json`` + ``model.safetensors``
and load without ``trust_remote_code``. Named architectures live as JSON data
in ``exifclip/model_configs/`` and are built by one factory,
:func:`create_model`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    DistilBertConfig,
    DistilBertModel,
    PretrainedConfig,
    PreTrainedModel,
    ResNetConfig,
    ResNetModel,
)
from transformers.utils import ModelOutput

from .loss import ClipLoss, clip_logits

__all__ = [
    "ExifClipConfig",
    "ExifClipModel",
    "ExifClipOutput",
    "create_model",
    "get_architecture_config",
    "list_architectures",
    "patches_to_pixel_values",
]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_POOLINGS = ("mean", "cls")


class ExifClipConfig(PretrainedConfig):
    """Configuration of :class:`ExifClipModel`.

    Parameters
    ----------
    vision_config : dict or ResNetConfig, optional
        The image tower (``transformers.ResNetConfig``).
    text_config : dict or DistilBertConfig, optional
        The text tower (``transformers.DistilBertConfig``).
    image_projection_dim : int or None, default=None
        Output size of a linear projection after the pooled ResNet features;
        ``None`` means no projection.
    image_projection_bias : bool, default=True
        Whether that projection has a bias (the paper's fc does).
    text_projection_dim : int or None, default=None
        Likewise for the pooled text features.
    text_pooling : {"mean", "cls"}, default="mean"
        Attention-masked mean over tokens, or the first ([CLS]) token.
    logit_scale_init : float, default=1/0.07
        The multiplier of the cosine similarities at initialisation.
    learn_logit_scale : bool, default=True
        Learn the scale (stored as its logarithm, clamped at 100 as in CLIP)
        or keep it fixed.
    image_mean, image_std : sequence of 3 floats
        Per-channel normalisation of patches scaled to [0, 1].
    patch_size : int, default=124
        Side of the square patches the model is trained and used on.
    max_text_length : int, default=256
        Longest EXIF token sequence.
    architecture : str, optional
        Name of the architecture this config was built from (informational).

    Examples
    --------
    >>> cfg = ExifClipConfig(vision_config={"hidden_sizes": [8, 16], "depths": [1, 1],
    ...     "embedding_size": 8, "layer_type": "basic"}, text_config={"dim": 16, "n_layers": 1,
    ...     "n_heads": 2, "hidden_dim": 32, "vocab_size": 100}, image_projection_dim=16)
    >>> cfg.embed_dim
    16
    """

    model_type = "exifclip"
    sub_configs = {"vision_config": ResNetConfig, "text_config": DistilBertConfig}

    def __init__(
        self,
        vision_config: dict | ResNetConfig | None = None,
        text_config: dict | DistilBertConfig | None = None,
        image_projection_dim: int | None = None,
        image_projection_bias: bool = True,
        text_projection_dim: int | None = None,
        text_pooling: str = "mean",
        logit_scale_init: float = 1 / 0.07,
        learn_logit_scale: bool = True,
        image_mean: tuple[float, ...] | list[float] = CLIP_MEAN,
        image_std: tuple[float, ...] | list[float] = CLIP_STD,
        patch_size: int = 124,
        max_text_length: int = 256,
        architecture: str | None = None,
        **kwargs: Any,
    ):
        if isinstance(vision_config, dict):
            vision_config = ResNetConfig(**{k: v for k, v in vision_config.items() if k != "model_type"})
        if isinstance(text_config, dict):
            text_config = DistilBertConfig(**{k: v for k, v in text_config.items() if k != "model_type"})
        self.vision_config = vision_config if vision_config is not None else ResNetConfig()
        self.text_config = text_config if text_config is not None else DistilBertConfig()
        if text_pooling not in _POOLINGS:
            raise ValueError(f"text_pooling must be one of {_POOLINGS}, got {text_pooling!r}")
        if len(image_mean) != 3 or len(image_std) != 3:
            raise ValueError("image_mean and image_std must have 3 values (R, G, B)")
        self.image_projection_dim = image_projection_dim
        self.image_projection_bias = image_projection_bias
        self.text_projection_dim = text_projection_dim
        self.text_pooling = text_pooling
        self.logit_scale_init = float(logit_scale_init)
        self.learn_logit_scale = bool(learn_logit_scale)
        self.image_mean = [float(v) for v in image_mean]
        self.image_std = [float(v) for v in image_std]
        self.patch_size = int(patch_size)
        self.max_text_length = int(max_text_length)
        self.architecture = architecture
        super().__init__(**kwargs)
        if self.image_embed_dim != self.text_embed_dim:
            raise ValueError(
                f"image embeddings ({self.image_embed_dim}-d) and text embeddings ({self.text_embed_dim}-d) "
                "must have the same size: set image_projection_dim and/or text_projection_dim"
            )

    @property
    def image_embed_dim(self) -> int:
        """Size of the image embedding (after the optional projection)."""
        return self.image_projection_dim or self.vision_config.hidden_sizes[-1]

    @property
    def text_embed_dim(self) -> int:
        """Size of the text embedding (after the optional projection)."""
        return self.text_projection_dim or self.text_config.dim

    @property
    def embed_dim(self) -> int:
        """Size of the shared embedding space."""
        return self.image_embed_dim

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        for key in ("vision_config", "text_config"):
            value = getattr(self, key)
            out[key] = value.to_dict() if hasattr(value, "to_dict") else value
        return out


@dataclass
class ExifClipOutput(ModelOutput):
    """Outputs of :meth:`ExifClipModel.forward`.

    Attributes
    ----------
    loss : torch.Tensor, optional
        Symmetric CLIP loss, when ``return_loss=True``.
    logits_per_image, logits_per_text : torch.Tensor
        Scaled cosine similarities, ``(n_images, n_texts)`` and its transpose.
    image_embeds, text_embeds : torch.Tensor
        L2-normalised embeddings.
    """

    loss: torch.Tensor | None = None
    logits_per_image: torch.Tensor | None = None
    logits_per_text: torch.Tensor | None = None
    image_embeds: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None


class ExifClipModel(PreTrainedModel):
    """Patch and EXIF-text towers with a shared embedding space.

    Parameters
    ----------
    config : ExifClipConfig

    Attributes
    ----------
    tokenizer : transformers tokenizer or None
        The EXIF tokenizer; :meth:`save_pretrained` writes it beside the
        weights, and :func:`exifclip.hub.load_model` sets it.

    Examples
    --------
    >>> import torch
    >>> model = create_model("small")
    >>> x = torch.randn(2, 3, 64, 64)
    >>> model.get_image_features(x).shape
    torch.Size([2, 128])
    """

    config_class = ExifClipConfig
    base_model_prefix = "exifclip"
    main_input_name = "pixel_values"
    _no_split_modules: list[str] = []

    def __init__(self, config: ExifClipConfig):
        super().__init__(config)
        self.vision_model = ResNetModel(config.vision_config)
        self.text_model = DistilBertModel(config.text_config)
        vision_dim = config.vision_config.hidden_sizes[-1]
        self.image_projection = (
            nn.Linear(vision_dim, config.image_projection_dim, bias=config.image_projection_bias)
            if config.image_projection_dim
            else nn.Identity()
        )
        self.text_projection = (
            nn.Linear(config.text_config.dim, config.text_projection_dim, bias=False)
            if config.text_projection_dim
            else nn.Identity()
        )
        self.logit_scale = nn.Parameter(
            torch.tensor(math.log(config.logit_scale_init)), requires_grad=config.learn_logit_scale
        )
        self.loss_fn = ClipLoss()
        self.tokenizer = None
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        # The towers initialise themselves (transformers applies each
        # sub-model's own _init_weights); only our own layers are set here.
        if module is self.image_projection or module is self.text_projection:
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=module.in_features**-0.5)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        elif module is self:
            with torch.no_grad():
                self.logit_scale.fill_(math.log(self.config.logit_scale_init))

    # -- features -----------------------------------------------------------
    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Unnormalised patch embeddings, ``(batch, embed_dim)``.

        ``pixel_values`` are normalised float patches ``(batch, 3, P, P)``;
        see :func:`patches_to_pixel_values`.
        """
        pooled = self.vision_model(pixel_values=pixel_values).pooler_output
        return self.image_projection(pooled.flatten(1))

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Unnormalised EXIF-text embeddings, ``(batch, embed_dim)``."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.text_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.config.text_pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return self.text_projection(pooled)

    def get_logit_scale(self) -> torch.Tensor:
        """The similarity multiplier, ``exp(logit_scale)`` clamped at 100.

        A fixed scale (``learn_logit_scale=False``) is detached, so it stays
        fixed even where loading code re-creates the parameter as trainable.
        """
        scale = self.logit_scale if self.config.learn_logit_scale else self.logit_scale.detach()
        return scale.exp().clamp(max=100.0)

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        return_loss: bool = False,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> ExifClipOutput:
        """Embed matching patches and texts; optionally the symmetric CLIP loss."""
        image_embeds = F.normalize(self.get_image_features(pixel_values), dim=-1)
        text_embeds = F.normalize(self.get_text_features(input_ids, attention_mask), dim=-1)
        scale = self.get_logit_scale()
        logits_per_image, logits_per_text = clip_logits(image_embeds, text_embeds, scale)
        loss = self.loss_fn(image_embeds, text_embeds, scale) if return_loss else None
        return ExifClipOutput(
            loss=loss,
            logits_per_image=logits_per_image,
            logits_per_text=logits_per_text,
            image_embeds=image_embeds,
            text_embeds=text_embeds,
        )

    # -- persistence --------------------------------------------------------
    def save_pretrained(self, save_directory, *args: Any, **kwargs: Any):
        """Save config, ``model.safetensors`` and, when set, the tokenizer."""
        from transformers.utils import logging as hf_logging

        kwargs.setdefault("safe_serialization", True)
        progress = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            result = super().save_pretrained(save_directory, *args, **kwargs)
        except TypeError:  # transformers versions without safe_serialization
            kwargs.pop("safe_serialization", None)
            result = super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            if progress:
                hf_logging.enable_progress_bar()
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(save_directory)
        return result

    def push_to_hub(self, repo_id: str, **kwargs: Any):
        """Publish weights, config and tokenizer; see :func:`exifclip.hub.push_to_hub`."""
        from .hub import push_to_hub

        return push_to_hub(self, repo_id, **kwargs)


def patches_to_pixel_values(
    patches: torch.Tensor, mean: Any, std: Any, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """uint8 patches ``(B, P, P, 3)`` -> normalised float ``(B, 3, P, P)``.

    Patches are scaled to [0, 1] as floats before normalising (the official
    evaluator's float-through-``to_pil_image`` path wrapped values modulo
    256; nothing here converts back to 8 bits).

    Examples
    --------
    >>> import torch
    >>> x = torch.full((1, 2, 2, 3), 255, dtype=torch.uint8)
    >>> [round(v, 5) for v in patches_to_pixel_values(x, [0.5] * 3, [0.5] * 3)[0, :, 0, 0].tolist()]
    [1.0, 1.0, 1.0]
    """
    if patches.dtype != torch.uint8:
        raise TypeError(f"patches must be uint8, got {patches.dtype}")
    # (x / 255 - mean) / std as one multiply-add per value: x * a + b.
    std_t = torch.as_tensor(std, dtype=torch.float64)
    scale = (1.0 / (255.0 * std_t)).to(dtype=dtype, device=patches.device).view(1, 3, 1, 1)
    shift = (-torch.as_tensor(mean, dtype=torch.float64) / std_t).to(dtype=dtype, device=patches.device)
    x = patches.permute(0, 3, 1, 2).to(dtype)
    return torch.addcmul(shift.view(1, 3, 1, 1), x, scale)


def list_architectures() -> list[str]:
    """Names of the packaged architectures.

    Examples
    --------
    >>> list_architectures()
    ['paper-resnet50', 'small']
    """
    files = resources.files("exifclip").joinpath("model_configs").iterdir()
    return sorted(f.name[: -len(".json")] for f in files if f.name.endswith(".json"))


def get_architecture_config(name: str, **overrides: Any) -> ExifClipConfig:
    """The :class:`ExifClipConfig` of a named architecture, with overrides.

    Top-level keys of ``overrides`` replace the JSON values; ``vision_config``
    and ``text_config`` dicts are merged key by key.
    """
    if name not in list_architectures():
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(list_architectures())}")
    path = resources.files("exifclip").joinpath("model_configs", f"{name}.json")
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
        :func:`exifclip.tokenization.build_exif_tokenizer` on its synthetic
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


AutoConfig.register("exifclip", ExifClipConfig, exist_ok=True)
AutoModel.register(ExifClipConfig, ExifClipModel, exist_ok=True)
