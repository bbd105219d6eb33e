"""Forensic front-ends: SRM residuals and the constrained convolution, in the model and in training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from exifclip import ExifPatchEmbedder
from exifclip.modeling.configuration import ExifClipConfig
from exifclip.modeling.front_end import (
    FRONT_ENDS,
    ConstrainedConv,
    SRMResiduals,
    build_front_end,
    front_end_channels,
)
from exifclip.modeling.hub import load_model
from exifclip.training import TrainingConfig, train

from .conftest import make_tiny_model
from .test_training import write_photos

TEXTS = ["Make: Canon, Model: Canon EOS 5D", "Make: NIKON, F Number: 2.8"]


def _ramp(height=24, width=24):
    """Content with no second-order change: a plane in each channel."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    planes = [0.3 * x + 0.1 * y, -0.2 * x + 0.5, 0.05 * y - 0.1 * x + 1.0]
    return torch.from_numpy(np.stack(planes))[None]


def test_srm_residuals_pass_no_smooth_content():
    ramp = _ramp()
    residuals = SRMResiduals()(ramp)
    assert residuals.shape == (1, 9, 24, 24)
    # Away from the zero-padded border, second-order filters see nothing in a plane.
    assert float(residuals[..., 2:-2, 2:-2].abs().max()) < 1e-5
    noise = torch.randn(1, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    assert float(SRMResiduals()(ramp + noise)[..., 2:-2, 2:-2].abs().mean()) > 0.1


def test_srm_output_channels_are_per_colour_channel():
    x = torch.zeros(1, 3, 9, 9)
    x[0, 1, 4, 4] = 1.0  # an impulse in green only
    residuals = SRMResiduals()(x)
    assert float(residuals[0, 3:6].abs().sum()) > 0
    assert float(residuals[0, :3].abs().sum()) == 0 and float(residuals[0, 6:].abs().sum()) == 0
    # The KV kernel's centre is -12/12: the impulse response at the impulse.
    assert float(residuals[0, 3, 4, 4]) == pytest.approx(-1.0)


def test_rgb_plus_srm_keeps_the_colours_first():
    x = torch.randn(2, 3, 16, 16)
    out = build_front_end("rgb+srm")(x)
    assert out.shape == (2, 12, 16, 16)
    torch.testing.assert_close(out[:, :3], x)


def test_constrained_kernels_are_prediction_error_filters_after_training():
    conv = ConstrainedConv()
    optimiser = torch.optim.SGD(conv.parameters(), lr=1.0)
    for _ in range(3):
        optimiser.zero_grad()
        conv(torch.randn(2, 3, 12, 12)).pow(2).mean().backward()
        optimiser.step()
    w = conv.constrained_weight()
    assert torch.all(w[:, :, 2, 2] == -1)
    torch.testing.assert_close(w.sum((2, 3)), torch.zeros(3, 3), atol=1e-5, rtol=0)
    # Flat content has no prediction error.
    with torch.no_grad():
        assert float(conv(torch.full((1, 3, 12, 12), 0.7))[..., 2:-2, 2:-2].abs().max()) < 1e-5


def test_unknown_front_end_is_named():
    with pytest.raises(ValueError, match="vision_front_end must be one of .*'sobel'"):
        front_end_channels("sobel")
    with pytest.raises(ValueError, match="'sobel'"):
        ExifClipConfig(vision_front_end="sobel")


@pytest.mark.parametrize("name", FRONT_ENDS)
def test_every_front_end_trains_saves_and_reloads(name, tmp_path):
    model = make_tiny_model(vision_front_end=name).train()
    assert model.config.vision_config.num_channels == front_end_channels(name)
    p = model.config.patch_size
    pixels = torch.randn(2, 3, p, p)
    tokens = model.tokenizer(TEXTS, padding=True, return_tensors="pt")
    out = model(pixels, tokens["input_ids"], tokens["attention_mask"], return_loss=True)
    out.loss.backward()
    stem = model.vision_model.embedder.embedder.convolution.weight
    assert stem.grad is not None and stem.grad.abs().sum() > 0
    if name == "constrained":
        assert model.front_end.weight.grad.abs().sum() > 0
    model.eval().save_pretrained(tmp_path / name)
    loaded = load_model(tmp_path / name, use_cache=False)
    assert loaded.config.vision_front_end == name
    with torch.no_grad():
        torch.testing.assert_close(loaded.get_image_features(pixels), model.get_image_features(pixels),
                                   atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["srm", "constrained"])
def test_fast_mode_sees_the_front_end(name, tmp_path, rng):
    # A patch covering the whole photo: fast mode (trunk over the photo) equals exact mode.
    model = make_tiny_model(vision_front_end=name)
    model.save_pretrained(tmp_path / "m")
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    embedder = ExifPatchEmbedder(model=str(tmp_path / "m"), device="cpu", patch_size=64, stride=64)
    exact = embedder.fit().transform_patches([image])[0].embeddings
    fast = embedder.set_params(mode="fast").fit().transform_patches([image])[0].embeddings
    np.testing.assert_allclose(fast, exact, atol=1e-5)


def test_training_config_front_end_is_for_models_trained_from_scratch():
    from exifclip.training import config

    assert config.FRONT_ENDS == FRONT_ENDS  # spelled out there so the CLI builds without torch
    TrainingConfig(images="photos", arch="small", front_end="srm").validate()
    with pytest.raises(ValueError, match="front_end must be one of"):
        TrainingConfig(images="photos", arch="small", front_end="hp").validate()
    with pytest.raises(ValueError, match="keeps the front-end"):
        TrainingConfig(images="photos", init="exifclip-small", front_end="srm").validate()


def test_training_from_scratch_builds_the_front_end_and_resumes_it(tmp_path):
    write_photos(tmp_path / "photos", 8)
    values = dict(images=str(tmp_path / "photos"), arch="small", front_end="constrained", min_tags=5, steps=2,
                  batch_size=4, patch_size=32, vocab_size=200, device="cpu", progress=False, seed=0,
                  out_dir=str(tmp_path / "run"), checkpoint_every=1)
    result = train(TrainingConfig(**values))
    assert result.model.config.vision_front_end == "constrained"
    loaded = load_model(tmp_path / "run", use_cache=False)
    assert isinstance(loaded.front_end, ConstrainedConv)
    torch.testing.assert_close(loaded.front_end.weight, result.model.front_end.weight)
    resumed = train(TrainingConfig(**{**values, "steps": 3, "resume": True}))
    assert resumed.resumed_from is not None and resumed.model.config.vision_front_end == "constrained"


def test_the_splice_default_model_is_one_name_in_the_api_and_the_cli():
    import inspect

    from exifclip import SpliceLocalizer
    from exifclip.cli._options import SPLICE_MODEL
    from exifclip.modeling.hub import packaged_models

    assert inspect.signature(SpliceLocalizer).parameters["model"].default == SPLICE_MODEL
    assert SPLICE_MODEL in packaged_models()
    assert load_model(SPLICE_MODEL).config.vision_front_end == "srm"
