"""The dual-tower model: a ResNet over patches, a DistilBERT over EXIF text.

:class:`ExifClipModel` is an ordinary ``transformers`` ``PreTrainedModel``,
registered with ``AutoConfig`` / ``AutoModel`` under ``model_type="exifclip"``:
it saves as ``config.json`` + ``model.safetensors`` and loads without
``trust_remote_code``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, DistilBertModel, PreTrainedModel, ResNetModel
from transformers.utils import ModelOutput

from .configuration import ExifClipConfig
from .front_end import build_front_end
from .loss import ClipLoss, clip_logits

__all__ = ["ExifClipModel", "ExifClipOutput", "patches_to_pixel_values"]

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
        weights, and :func:`exifclip.modeling.hub.load_model` sets it.

    Examples
    --------
    >>> import torch
    >>> from exifclip.modeling.factory import create_model
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
        self.front_end = build_front_end(config.vision_front_end)
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

        ``pixel_values`` are normalised float patches ``(batch, 3, S, S)``,
        ``S`` = ``config.input_size`` (the patch and its ``patch_context``);
        see :func:`patches_to_pixel_values`. They pass through the
        configured forensic front-end (:mod:`exifclip.modeling.front_end`)
        before the ResNet.
        """
        context = self.config.patch_context
        if not context:
            pooled = self.vision_model(pixel_values=self.front_end(pixel_values)).pooler_output.flatten(1)
        else:  # the patch's own cells of a view with context around it
            cells = context // self.config.feature_stride
            hidden = self.vision_model(pixel_values=self.front_end(pixel_values)).last_hidden_state
            pooled = hidden[:, :, cells:hidden.shape[2] - cells, cells:hidden.shape[3] - cells].mean((2, 3))
        return self.image_projection(pooled)

    def image_trunk(self, pixels: torch.Tensor) -> torch.Tensor:
        """The image tower's final feature map ``(batch, C, H / s, W / s)`` of normalised pixels of any size
        (front-end, stem and stages; no pooling): what fast mode pools (:mod:`exifclip.modeling.dense`)."""
        vision = self.vision_model
        return vision.encoder(vision.embedder(self.front_end(pixels))).last_hidden_state

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
            _drop_load_time_keys(Path(save_directory) / "tokenizer_config.json")
        return result


# transformers records how a tokenizer was loaded (a local folder, offline, a token) among the
# settings it saves; in a published model they are wrong or worse (a token), so they are dropped
_LOAD_TIME_KEYS = ("is_local", "local_files_only", "cache_dir", "force_download", "token",
                   "use_auth_token", "revision", "_commit_hash", "subfolder", "proxies")


def _drop_load_time_keys(tokenizer_config: Path) -> None:
    if not tokenizer_config.is_file():
        return
    settings = json.loads(tokenizer_config.read_text(encoding="utf-8"))
    kept = {key: value for key, value in settings.items() if key not in _LOAD_TIME_KEYS}
    if kept != settings:
        tokenizer_config.write_text(json.dumps(kept, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


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


AutoConfig.register("exifclip", ExifClipConfig, exist_ok=True)
AutoModel.register(ExifClipConfig, ExifClipModel, exist_ok=True)
