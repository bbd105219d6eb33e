"""Fast mode: the trunk once per photo, each patch pooled from the feature map."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from exifclip import ExifPatchEmbedder, SpliceLocalizer
from exifclip.cli import main
from exifclip.modeling.dense import (dense_patch_embeddings, feature_stride, receptive_field, trunk_features,
                                     trunk_margin, window_weights)
from exifclip.modeling.factory import create_model, get_architecture_config, list_architectures
from exifclip.patches import make_grid

from .conftest import TINY, make_tiny_model


def _whole_trunk(model, image):
    from exifclip.modeling.model import patches_to_pixel_values

    pixels = patches_to_pixel_values(torch.from_numpy(image)[None], model.config.image_mean, model.config.image_std)
    vision = model.vision_model
    return vision.encoder(vision.embedder(pixels)).last_hidden_state[0]


@pytest.mark.parametrize("first_stage_down", [False, True])
def test_feature_stride_is_the_trunks(first_stage_down):
    model = make_tiny_model(vision_config={**TINY["vision_config"], "downsample_in_first_stage": first_stage_down})
    image = np.zeros((160, 224, 3), np.uint8)
    with torch.inference_mode():
        features = _whole_trunk(model, image)
    s = feature_stride(model)
    assert features.shape[1:] == (-(-160 // s), -(-224 // s))
    assert s == (64 if first_stage_down else 32)


def test_window_weights_average_the_cells_a_window_covers():
    w = window_weights(np.array([0, 10, 40]), size=50, n_cells=4, stride=32)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    np.testing.assert_allclose(w[1], [22 / 50, 28 / 50, 0, 0])
    np.testing.assert_allclose(w[2], [0, 24 / 50, 26 / 50, 0])


def test_tiles_give_the_whole_photo_features(rng):
    model = make_tiny_model()
    image = rng.integers(0, 256, (200, 330, 3), dtype=np.uint8)
    with torch.inference_mode():
        whole = _whole_trunk(model, image)
        wide = trunk_features(model, image, tile=64, margin=512)  # every tile sees the whole photo
        tiled = trunk_features(model, image, tile=64, margin=96)
    assert wide.shape == whole.shape == tiled.shape
    torch.testing.assert_close(wide, whole, atol=1e-5, rtol=1e-5)
    # A margin of real pixels makes the seams vanish up to what lies beyond it.
    assert float((tiled - whole).abs().max()) < 1e-3 * float(whole.abs().max()) + 1e-4


def _narrow(arch, front_end):
    """``arch``'s depths, kernels and strides (what the receptive field is made of) at a width of 8 channels."""
    stages = len(get_architecture_config(arch).vision_config.depths)
    vision = {"embedding_size": 8, "hidden_sizes": [8] * stages}
    return create_model(arch, seed=0, vision_config=vision, vision_front_end=front_end).eval()


@pytest.mark.parametrize("front_end", ["rgb", "srm", "constrained"])
@pytest.mark.parametrize("arch", list_architectures())
def test_the_default_margin_leaves_no_seam_where_tiles_meet(arch, front_end, rng):
    model = _narrow(arch, front_end)
    margin = trunk_margin(model)
    assert margin % feature_stride(model) == 0 and margin >= (receptive_field(model) - 1) / 2
    image = rng.integers(0, 256, (2 * margin + 96, 2 * margin + 160, 3), dtype=np.uint8)
    with torch.inference_mode():
        whole = trunk_features(model, image, tile=4096, margin=0)  # one tile: the whole photo
        tiled = trunk_features(model, image, tile=64)  # many seams, the default margin
        short = trunk_features(model, image, tile=64, margin=margin - 3 * feature_stride(model))
    scale = float(whole.abs().max())
    assert float((tiled - whole).abs().max()) <= 1e-5 * scale
    # The receptive field is not overstated: a margin short of it leaves seams.
    assert float((short - whole).abs().max()) > 1e-4 * scale


@pytest.mark.parametrize(("arch", "stride", "field", "margin"), [("small", 32, 199, 128), ("small-s16", 16, 103, 64),
                                                               ("small-s8", 8, 55, 32)])
def test_cut_trunks_halve_the_stride_and_the_receptive_field(arch, stride, field, margin):
    # What small-s16 and small-s8 are for: fast mode's windows see about half as far past their edge, each.
    model = _narrow(arch, "srm")
    assert (feature_stride(model), receptive_field(model), trunk_margin(model)) == (stride, field, margin)


def test_receptive_field_is_where_a_cells_gradient_reaches(rng):
    model = _narrow("small", "srm")
    pixels = torch.zeros(1, 3, 320, 320, requires_grad=True)
    with torch.no_grad():
        pixels += torch.from_numpy(rng.normal(size=(1, 3, 320, 320)).astype(np.float32))
    cell = model.image_trunk(pixels)[0, :, 5, 5].abs().sum()
    (grad,) = torch.autograd.grad(cell, pixels)
    rows = np.flatnonzero(grad[0].abs().sum((0, 2)).numpy())
    cols = np.flatnonzero(grad[0].abs().sum((0, 1)).numpy())
    assert rows[-1] - rows[0] + 1 <= receptive_field(model) and cols[-1] - cols[0] + 1 <= receptive_field(model)
    assert rows[-1] - rows[0] + 1 > receptive_field(model) - 2 * feature_stride(model)


def test_a_patch_covering_the_photo_is_embedded_as_in_exact_mode(rng, tiny_model_dir):
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    embedder = ExifPatchEmbedder(model=str(tiny_model_dir), device="cpu", patch_size=64, stride=64)
    exact = embedder.fit().transform_patches([image])[0].embeddings
    fast = embedder.set_params(mode="fast").fit().transform_patches([image])[0].embeddings
    np.testing.assert_allclose(fast, exact, atol=1e-5)


def test_each_patch_is_the_mean_of_the_feature_cells_under_it(rng):
    # Patches aligned to the 32-px cells: patch (r, c) of a 64-px grid with
    # stride 32 averages cells [r, r + 2) x [c, c + 2) of the whole photo's map.
    model = make_tiny_model()
    image = rng.integers(0, 256, (160, 224, 3), dtype=np.uint8)
    grid = make_grid(image.shape, 64, stride=32)
    with torch.inference_mode():
        fast = dense_patch_embeddings(model, image, grid, tile=64, margin=512)
        features = _whole_trunk(model, image)
        pooled = torch.stack([features[:, r:r + 2, c:c + 2].mean(dim=(1, 2))
                              for r in range(grid.n_rows) for c in range(grid.n_cols)])
        reference = torch.nn.functional.normalize(model.image_projection(pooled), dim=-1).numpy()
    np.testing.assert_allclose(fast, reference, atol=1e-5)


def test_fast_localizer_keeps_the_batch_rule(tiny_model_dir, rng):
    loc = SpliceLocalizer(model=str(tiny_model_dir), device="cpu", stride=8, mode="fast", errors="skip").fit()
    good = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    results = loc.localize([good, np.zeros((8, 8, 3), np.uint8), good])
    assert results[1] is None and [f.index for f in loc.failures_] == [1]
    assert results[0].heatmap.shape == (96, 128)
    np.testing.assert_allclose(results[0].heatmap, results[2].heatmap)
    with pytest.raises(ValueError, match="mode"):
        SpliceLocalizer(model=str(tiny_model_dir), mode="quick").fit()


def test_cli_fast_flag_is_recorded(tiny_model_dir, tmp_path, rng):
    from PIL import Image

    path = tmp_path / "a.png"
    Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(path)
    out = tmp_path / "out"
    assert main(["localize", str(path), "--out", str(out), "--model", str(tiny_model_dir), "--device", "cpu",
                 "--stride", "16", "--fast"]) == 0
    record = json.loads((out / "a.json").read_text())
    assert record["settings"]["mode"] == "fast"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_cuda_embeddings_match_the_cpu_ones_under_autocast(tiny_model_dir, rng, mode):
    image = rng.integers(0, 256, (200, 260, 3), dtype=np.uint8)
    cpu = ExifPatchEmbedder(model=str(tiny_model_dir), device="cpu", stride=16, mode=mode).fit()
    gpu = ExifPatchEmbedder(model=str(tiny_model_dir), device="cuda", stride=16, mode=mode).fit()
    a, b = cpu.transform_patches([image])[0], gpu.transform_patches([image])[0]
    assert a.grid == b.grid
    assert np.median(np.sum(a.embeddings * b.embeddings, axis=1)) > 0.99  # bf16/fp16 autocast on the GPU


# -- models trained on what fast mode computes: patch_context ------------------------------------

def test_with_context_exact_mode_computes_what_fast_mode_does_where_the_context_is_the_photo(rng, tmp_path):
    """A 128-px photo, 64-px patches every 32 px, 32 px of context: the central patch's context view is the
    whole photo, so its exact embedding is fast mode's to float rounding; without context the two differ."""
    image = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    for context in (32, 0):
        folder = tmp_path / f"context{context}"
        make_tiny_model(patch_context=context).save_pretrained(folder)
        embedder = ExifPatchEmbedder(model=str(folder), device="cpu", patch_size=64, stride=32)
        exact = embedder.fit().transform_patches([image])[0].embeddings
        fast = embedder.set_params(mode="fast").fit().transform_patches([image])[0].embeddings
        central = 1 * 3 + 1  # row 1, column 1 of the 3 x 3 grid
        if context:
            np.testing.assert_allclose(exact[central], fast[central], atol=1e-5)
            gap = float(np.abs(exact[central] - fast[central]).max())
        else:
            assert float(np.abs(exact[central] - fast[central]).max()) > 100 * max(gap, 1e-6)


def test_with_the_trunk_margin_as_context_exact_mode_is_fast_mode(rng, tmp_path):
    """With ``trunk_margin`` pixels of context around its patches, a model's exact mode computes fast mode's
    embeddings for every patch whose view lies in the photo; 32 px less context and they differ."""
    needed = trunk_margin(make_tiny_model())
    image = rng.integers(0, 256, (2 * needed + 160, 2 * needed + 96, 3), dtype=np.uint8)
    gaps = {}
    for context in (needed, needed - 32):
        folder = tmp_path / f"context{context}"
        make_tiny_model(patch_context=context).save_pretrained(folder)
        embedder = ExifPatchEmbedder(model=str(folder), device="cpu", patch_size=32, stride=32)
        grid = make_grid(image.shape, 32, stride=32)
        exact = embedder.fit().transform_patches([image])[0].embeddings.reshape(grid.n_rows, grid.n_cols, -1)
        fast = embedder.set_params(mode="fast").fit().transform_patches([image])[0].embeddings
        fast = fast.reshape(grid.n_rows, grid.n_cols, -1)
        c = context // 32  # patches whose whole view is inside the photo
        gaps[context] = float(np.abs(exact[c:grid.n_rows - c, c:grid.n_cols - c]
                                     - fast[c:grid.n_rows - c, c:grid.n_cols - c]).max())
    assert gaps[needed] < 1e-5
    assert gaps[needed - 32] > 1e-4


def test_patch_context_is_checked_saved_and_trained(rng, tmp_path):
    from exifclip.modeling.hub import load_model
    from exifclip.training import TrainingConfig, train
    from tests.test_training import write_photos

    with pytest.raises(ValueError, match="multiple of the feature stride \\(32 px\\)"):
        make_tiny_model(patch_context=20)
    model = make_tiny_model(patch_context=32)
    assert model.config.input_size == 32 + 64
    x = torch.randn(2, 3, 96, 96)
    assert model.get_image_features(x).shape == (2, 16)
    photos = write_photos(tmp_path / "photos", 8, size=(120, 130))
    result = train(TrainingConfig(images=[str(p) for p in photos], arch="small", patch_context=32, patch_size=32,
                                  steps=2, batch_size=4, min_tags=5, device="cpu", progress=False,
                                  out_dir=str(tmp_path / "run")))
    assert np.isfinite(result.losses).all()
    reloaded = load_model(tmp_path / "run", use_cache=False)
    assert (reloaded.config.patch_context, reloaded.config.patch_size, reloaded.config.input_size) == (32, 32, 96)
    with pytest.raises(ValueError, match="patch_context applies to a model trained from scratch"):
        TrainingConfig(images="x", init="m", patch_context=32).validate()
