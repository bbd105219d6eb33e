"""The configuration of the dual-tower model, a ``transformers`` ``PretrainedConfig``.

Saved as ``config.json``; ``model_type="exifclip"`` is registered with
``AutoConfig`` (see :mod:`exifclip.modeling.model`).
"""

from __future__ import annotations

from typing import Any

from transformers import DistilBertConfig, PretrainedConfig, ResNetConfig

from .front_end import front_end_channels

__all__ = ["CLIP_MEAN", "CLIP_STD", "ExifClipConfig"]

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
    vision_front_end : {"rgb", "srm", "rgb+srm", "constrained"}, default="rgb"
        What the image tower sees before its first learned layer: the
        colours, fixed high-pass residuals, both, or a learned constrained
        high-pass convolution (:mod:`exifclip.modeling.front_end`). The
        ResNet's ``num_channels`` is set to match.
    patch_context : int, default=0
        Pixels of the photo read around each patch on every side, a
        multiple of :attr:`feature_stride`: the tower sees a
        ``patch_size + 2 * patch_context`` square and the embedding averages
        its final feature map over the patch's own cells only. What fast mode
        computes (:mod:`exifclip.modeling.dense`) is then what the model was
        trained on; 0: the patch alone, padded by the network.

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
        vision_front_end: str = "rgb",
        patch_context: int = 0,
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
        self.vision_front_end = vision_front_end
        self.vision_config.num_channels = front_end_channels(vision_front_end)
        self.patch_context = int(patch_context)
        if self.patch_context < 0 or self.patch_context % self.feature_stride or (
                self.patch_context and self.patch_size % self.feature_stride):
            raise ValueError(f"patch_context must be a multiple of the feature stride ({self.feature_stride} px), "
                             f"and with context the patch size too; got {self.patch_context} and {self.patch_size}")
        super().__init__(**kwargs)
        if self.image_embed_dim != self.text_embed_dim:
            raise ValueError(
                f"image embeddings ({self.image_embed_dim}-d) and text embeddings ({self.text_embed_dim}-d) "
                "must have the same size: set image_projection_dim and/or text_projection_dim"
            )

    @property
    def feature_stride(self) -> int:
        """Pixels per cell of the image tower's final feature map (32 for the ResNets here)."""
        first = 2 if getattr(self.vision_config, "downsample_in_first_stage", False) else 1
        return 4 * first * 2 ** (len(self.vision_config.depths) - 1)  # stem conv and max pool: 4; later stages: 2

    @property
    def input_size(self) -> int:
        """Side of the square the image tower sees per patch: ``patch_size + 2 * patch_context``."""
        return self.patch_size + 2 * self.patch_context

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


