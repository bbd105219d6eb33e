"""Fast-mode distillation: teach a trained image tower to give, in fast mode, the embeddings it gives in exact mode.

Exact mode embeds each grid patch alone, zero-padded at its border; fast mode
(:mod:`exifclip.modeling.dense`) runs the trunk once over the photo and pools
each patch's window from the feature map, so the cells at a patch's edge see
the real pixels around it. A network trained on isolated patches has learnt
that border, and its fast-mode embeddings drift from its exact ones (a
median cosine of about 0.6-0.7 for the packaged models; docs/benchmarks.md).

Here a frozen copy of the model is the teacher. Each step cuts crops from
the photos (several windows of patch size each, at any pixel offset), and
the student (the model itself, trained in place) is pulled towards the
teacher's exact-mode embedding of every window twice: once with the window
pooled from the student's feature map of the whole crop (fast mode), once
with the window alone (exact mode, so that the student's exact mode stays
the teacher's). The loss is one minus the cosine, averaged. No EXIF or text
is needed: the text tower is not touched, and the student's embeddings stay
in the space its text tower was trained against.

BatchNorm layers stay in eval mode throughout: embeddings are computed with
the running statistics at inference, so the student is trained with them.
"""

from __future__ import annotations

import copy
import io as _stdio
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..batch import BatchErrors
from ..io import load_image, source_name
from ..modeling.dense import feature_stride, window_weights
from ..modeling.model import patches_to_pixel_values
from .loop import lr_factor

__all__ = ["DistillConfig", "DistillResult", "FastModeDistillLoss", "cut_crops", "distill_fast_mode",
           "fast_window_embeddings",
           "paste_rectangle"]


@dataclass
class DistillConfig:
    """Settings of :func:`distill_fast_mode`.

    Parameters
    ----------
    steps : int, default=800
    crops_per_step : int, default=8
        Crops whose trunk runs in one step (the fast-mode half of the loss).
    crop_size : int, default=320
        Side of the crops, in pixels, rounded down to the feature stride.
        At least the patch; 320 px lets the `small` trunk's receptive field
        (about 200 px) fit around a 64-px window.
    windows_per_crop : int, default=32
        Patch-sized windows drawn per crop, at any pixel offset.
    exact_windows : int, default=64
        How many of the step's windows also go through exact mode (the second
        half of the loss).
    exact_weight : float, default=1.0
        Weight of the exact-mode half; 0 trains fast mode alone (the
        student's exact mode then drifts).
    crops_per_photo : int, default=8
        Crops cut from each photo once, at the start, and kept in memory:
        ``n_photos * crops_per_photo * crop_size**2 * 3`` bytes.
    composite_p : float, default=0.0
        Share of crops that get a rectangle of another crop pasted in, at
        the same place (sides a quarter to three quarters of the crop's), as
        a splice would be: windows near its edge then have another camera's
        pixels as context, which their exact-mode target never sees, so the
        student learns not to let them in.
    jpeg_p : float, default=0.5
        Share of crops re-compressed as JPEG, at a quality drawn from
        ``jpeg_quality`` (inclusive), before both towers see them (after
        any pasting).
    jpeg_quality : tuple of int, default=(70, 100)
    lr : float, default=3e-4
        Peak learning rate (AdamW, no weight decay), after 5 % of linear
        warm-up, then cosine decay to zero.
    seed : int, default=0
    device : str, default="cpu"
    log_every : int, default=0
        Print the running cosines every so many steps (0: never).
    """

    steps: int = 800
    crops_per_step: int = 8
    crop_size: int = 320
    windows_per_crop: int = 32
    exact_windows: int = 64
    exact_weight: float = 1.0
    crops_per_photo: int = 8
    composite_p: float = 0.0
    jpeg_p: float = 0.5
    jpeg_quality: tuple[int, int] = (70, 100)
    lr: float = 3e-4
    seed: int = 0
    device: str = "cpu"
    log_every: int = 0

    def __post_init__(self) -> None:
        positive = ("steps", "crops_per_step", "crop_size", "windows_per_crop", "crops_per_photo")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"DistillConfig.{name} must be at least 1, got {getattr(self, name)!r}")
        if self.exact_windows < 0 or self.exact_weight < 0:
            raise ValueError("DistillConfig.exact_windows and exact_weight must not be negative, got "
                             f"{self.exact_windows!r} and {self.exact_weight!r}")
        for name in ("composite_p", "jpeg_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"DistillConfig.{name} must be in [0, 1], got {getattr(self, name)!r}")
        low, high = self.jpeg_quality
        if not 1 <= low <= high <= 100:
            raise ValueError(f"DistillConfig.jpeg_quality must be (low, high) within 1-100, got {self.jpeg_quality!r}")
        if not self.lr > 0:
            raise ValueError(f"DistillConfig.lr must be positive, got {self.lr!r}")


@dataclass
class DistillResult:
    """What :func:`distill_fast_mode` returns.

    Attributes
    ----------
    model : ExifClipModel
        The student, trained in place (eval mode).
    fast_cosine, exact_cosine : list of float
        Per step, the mean cosine between the teacher's exact embeddings and
        the student's fast-mode (and exact-mode) ones; ``exact_cosine`` is
        empty when the exact half is off.
    photos : int
        Photos that gave crops.
    skipped : dict
        Photos left out, by reason (``"smaller than the crop"``; unreadable
        ones are failures of ``report``).
    crops : int
    elapsed_s : float
    config : dict
    """

    model: Any
    fast_cosine: list[float]
    exact_cosine: list[float]
    photos: int
    skipped: dict[str, int]
    crops: int
    elapsed_s: float
    config: dict = field(default_factory=dict)


def cut_crops(image: np.ndarray, n: int, size: int, stride: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``n`` random ``size``-px square crops of ``image``, their corners on multiples of ``stride``.

    The corners fall where fast mode's cells start in the photo, so a crop's
    cells cover the same pixels, against the photo's JPEG blocks, as the
    photo's own cells do. Returns an empty list when the photo is smaller
    than ``size``.

    Examples
    --------
    >>> image = np.zeros((100, 130, 3), np.uint8)
    >>> [c.shape for c in cut_crops(image, 2, 64, 32, np.random.default_rng(0))]
    [(64, 64, 3), (64, 64, 3)]
    >>> cut_crops(image, 2, 128, 32, np.random.default_rng(0))
    []
    """
    height, width = image.shape[:2]
    if height < size or width < size:
        return []
    ys = rng.integers(0, (height - size) // stride + 1, n) * stride
    xs = rng.integers(0, (width - size) // stride + 1, n) * stride
    return [np.ascontiguousarray(image[y:y + size, x:x + size]) for y, x in zip(ys, xs)]


def fast_window_embeddings(model: Any, crops: torch.Tensor, starts: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Fast-mode embeddings of patch-sized windows of crops: the trunk runs once per crop, each window is pooled.

    Parameters
    ----------
    model : ExifClipModel
    crops : torch.Tensor
        uint8 ``(B, C, C, 3)``.
    starts : torch.Tensor or ndarray
        ``(B, K, 2)`` window corners (row, column), in pixels.

    Returns
    -------
    torch.Tensor
        ``(B * K, dim)``, L2-normalised, crop-major; gradients flow to the image tower.

    Examples
    --------
    >>> from exifclip.modeling.factory import create_model
    >>> model = create_model("small", seed=0).eval()
    >>> crops = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 128, 128, 3), dtype=np.uint8))
    >>> fast_window_embeddings(model, crops, np.zeros((2, 3, 2), np.int64)).shape
    torch.Size([6, 128])
    """
    size, stride = model.config.patch_size, feature_stride(model)
    starts = np.asarray(starts.cpu() if isinstance(starts, torch.Tensor) else starts)
    b, k = starts.shape[:2]
    features = model.image_trunk(patches_to_pixel_values(crops, model.config.image_mean, model.config.image_std))
    n_cells = features.shape[2]
    as_weights = lambda s: torch.from_numpy(  # noqa: E731
        window_weights(s.reshape(-1), size, n_cells, stride).reshape(b, k, n_cells)).to(features)
    pooled = torch.einsum("bkh,bchw,bkw->bkc", as_weights(starts[..., 0]), features, as_weights(starts[..., 1]))
    return F.normalize(model.image_projection(pooled.reshape(b * k, -1)).float(), dim=-1)


class FastModeDistillLoss(torch.nn.Module):
    """One minus the cosine between a frozen teacher's exact-mode window embeddings and the student's,
    in fast mode (pooled from the crop's feature map) and, weighted, in exact mode.

    Parameters
    ----------
    exact_weight : float, default=1.0
    exact_windows : int, default=64
        The first so many windows of the batch also go through exact mode.

    Examples
    --------
    >>> import copy
    >>> from exifclip.modeling.factory import create_model
    >>> teacher = create_model("small", seed=0).eval()
    >>> student = copy.deepcopy(teacher)
    >>> crops = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 128, 128, 3), dtype=np.uint8))
    >>> starts = torch.tensor([[[0, 0], [0, 64]], [[64, 0], [10, 37]]])
    >>> loss, fast, exact = FastModeDistillLoss()(student, teacher, crops, starts)
    >>> bool(exact > 0.999), bool(fast < exact)
    (True, True)
    """

    def __init__(self, exact_weight: float = 1.0, exact_windows: int = 64):
        super().__init__()
        self.exact_weight = float(exact_weight)
        self.exact_windows = int(exact_windows)

    def forward(self, student: Any, teacher: Any, crops: torch.Tensor, starts: torch.Tensor,
                fast: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``crops``: uint8 ``(B, C, C, 3)``; ``starts``: ``(B, K, 2)`` window corners (row, column).

        ``fast``: the student's :func:`fast_window_embeddings` of the same
        windows, when the caller already has them for another term (the
        trunk then runs once).

        Returns the loss and the mean fast and exact cosines (detached; the
        exact one is NaN when that half is off).
        """
        size, mean, std = teacher.config.patch_size, teacher.config.image_mean, teacher.config.image_std
        b, k = starts.shape[:2]
        rows = starts[..., 0].reshape(-1).tolist()
        cols = starts[..., 1].reshape(-1).tolist()
        owner = np.repeat(np.arange(b), k)
        windows = torch.stack([crops[i, y:y + size, x:x + size] for i, y, x in zip(owner, rows, cols)])
        window_pixels = patches_to_pixel_values(windows, mean, std)
        with torch.no_grad():
            target = F.normalize(teacher.get_image_features(window_pixels).float(), dim=-1)

        if fast is None:
            fast = fast_window_embeddings(student, crops, starts)
        fast_cosine = (fast * target).sum(-1).mean()
        loss = 1 - fast_cosine
        exact_cosine = torch.tensor(float("nan"))
        m = min(self.exact_windows, b * k)
        if self.exact_weight and m:
            exact = F.normalize(student.get_image_features(window_pixels[:m]).float(), dim=-1)
            exact_cosine = (exact * target[:m]).sum(-1).mean()
            loss = loss + self.exact_weight * (1 - exact_cosine)
        return loss, fast_cosine.detach(), exact_cosine.detach()


def paste_rectangle(crop: np.ndarray, donor: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``crop`` with a random rectangle of ``donor`` (same shape) pasted at the same place.

    Examples
    --------
    >>> out = paste_rectangle(np.zeros((64, 64, 3), np.uint8), np.full((64, 64, 3), 9, np.uint8),
    ...                       np.random.default_rng(0))
    >>> 0.0625 <= float((out == 9).all(-1).mean()) <= 0.5625
    True
    """
    side = crop.shape[0]
    h, w = rng.integers(side // 4, 3 * side // 4 + 1, 2)
    y, x = rng.integers(0, side - h + 1), rng.integers(0, side - w + 1)
    out = crop.copy()
    out[y:y + h, x:x + w] = donor[y:y + h, x:x + w]
    return out


def _jpeg(crop: np.ndarray, quality: int) -> np.ndarray:
    buffer = _stdio.BytesIO()
    Image.fromarray(crop).save(buffer, "JPEG", quality=int(quality))
    return np.asarray(Image.open(buffer).convert("RGB"))


def distill_fast_mode(model: Any, sources: Sequence[Any], config: DistillConfig | None = None, *,
                      report: BatchErrors | None = None) -> DistillResult:
    """Train ``model``'s image tower in place so that its fast-mode patch embeddings are its exact-mode ones.

    Parameters
    ----------
    model : ExifClipModel
        A trained model; a frozen copy of it, made here, is the teacher.
        Models with ``patch_context`` are refused: their exact mode already
        reads context.
    sources : sequence of image sources
        Photos at their native resolution (paths, bytes, arrays): no EXIF is
        needed. Unreadable ones are failures of ``report``.
    config : DistillConfig, optional
    report : BatchErrors, optional
        Default ``BatchErrors("raise")``.

    Returns
    -------
    DistillResult

    Raises
    ------
    ValueError
        If ``crop_size`` is smaller than the patch, the model has
        ``patch_context``, or no photo is as large as a crop.

    Examples
    --------
    >>> from exifclip.modeling.factory import create_model
    >>> photos = [np.random.default_rng(i).integers(0, 256, (200, 260, 3), dtype=np.uint8) for i in range(3)]
    >>> config = DistillConfig(steps=2, crops_per_step=2, crop_size=128, windows_per_crop=4, crops_per_photo=2)
    >>> result = distill_fast_mode(create_model("small", seed=0), photos, config)
    >>> len(result.fast_cosine), result.crops
    (2, 6)
    """
    config = config or DistillConfig()
    report = report or BatchErrors("raise")
    size, stride = model.config.patch_size, feature_stride(model)
    crop_size = config.crop_size // stride * stride
    if crop_size < size:
        raise ValueError(f"DistillConfig.crop_size={config.crop_size} is smaller than the model's "
                         f"{size}-px patch (rounded down to the {stride}-px feature stride: {crop_size})")
    if model.config.patch_context:
        raise ValueError(f"the model reads patch_context={model.config.patch_context} px around each patch "
                         "in exact mode already; fast-mode distillation is for context-free models")
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    crops: list[np.ndarray] = []
    photos, skipped = 0, {}
    for i, source in enumerate(sources):
        try:
            image = load_image(source)
        except Exception as exc:  # noqa: BLE001 - the report decides (raise, skip, collect)
            report.fail(i, source_name(source), exc)
            continue
        cut = cut_crops(image, config.crops_per_photo, crop_size, stride, rng)
        if not cut:
            skipped["smaller than the crop"] = skipped.get("smaller than the crop", 0) + 1
            continue
        crops.extend(cut)
        photos += 1
    if not crops:
        raise ValueError(f"none of the {len(sources)} photos is as large as a {crop_size}-px crop "
                         f"(skipped: {skipped or 'none'})")

    device = torch.device(config.device)
    model.to(device).eval()
    teacher = copy.deepcopy(model).eval().requires_grad_(False)
    for name, p in model.named_parameters():  # the image tower only; the text side stays as trained
        p.requires_grad_(not (name.startswith("text_") or name == "logit_scale"))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    loss_fn = FastModeDistillLoss(config.exact_weight, config.exact_windows)
    warmup = max(1, config.steps // 20)
    per_step = min(config.crops_per_step, len(crops))
    fast_cosine, exact_cosine = [], []
    start = time.perf_counter()
    for step in range(config.steps):
        for group in optimizer.param_groups:
            group["lr"] = config.lr * lr_factor(step, config.steps, warmup)
        chosen = rng.choice(len(crops), per_step, replace=False)
        batch = [paste_rectangle(crops[j], crops[rng.integers(len(crops))], rng)
                 if config.composite_p and rng.random() < config.composite_p else crops[j] for j in chosen]
        batch = [_jpeg(c, rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1))
                 if rng.random() < config.jpeg_p else c for c in batch]
        starts = rng.integers(0, crop_size - size + 1, (per_step, config.windows_per_crop, 2))
        loss, fast, exact = loss_fn(model, teacher, torch.from_numpy(np.stack(batch)).to(device),
                                    torch.from_numpy(starts))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        fast_cosine.append(float(fast))
        if not torch.isnan(exact):
            exact_cosine.append(float(exact))
        if config.log_every and (step + 1) % config.log_every == 0:
            recent = slice(-config.log_every, None)
            print(f"distill step {step + 1}/{config.steps}: fast cosine {np.mean(fast_cosine[recent]):.4f}, "
                  f"exact cosine {np.mean(exact_cosine[recent]) if exact_cosine else float('nan'):.4f}, "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
    model.requires_grad_(True).eval()
    return DistillResult(model=model, fast_cosine=fast_cosine, exact_cosine=exact_cosine, photos=photos,
                         skipped=skipped, crops=len(crops), elapsed_s=time.perf_counter() - start,
                         config=asdict(config))
