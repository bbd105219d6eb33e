"""The CUDA path: autocast, pinned memory, prefetching DataLoader workers, batch size, on a real GPU.

Skipped without one (this project's CI machines have none); ``benchmarks/gpu_check.sh`` runs them
first on a lent GPU machine. Each compares the GPU with the CPU on the same input: a GPU path that
runs but computes something else is the failure these catch.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from exifclip import ExifPatchEmbedder, SpliceLocalizer
from exifclip.training import TrainingConfig, train

from .conftest import TINY, make_tiny_model
from .test_training import write_photos

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cuda-photos")
    write_photos(folder, 16, size=(96, 112))
    return folder


@pytest.fixture(scope="module")
def deterministic_model():
    """No dropout, so that two devices run the same function."""
    return make_tiny_model(0, text_config={**TINY["text_config"], "dropout": 0.0, "attention_dropout": 0.0})


def _train(photos, model, **kw):
    config = dict(images=str(photos), min_tags=5, steps=4, batch_size=8, lr=1e-3, progress=False, seed=0,
                  batchnorm="frozen")
    config.update(kw)
    return train(TrainingConfig(**config), model=copy.deepcopy(model))


def test_training_in_fp32_on_the_gpu_follows_the_cpu(photos, deterministic_model):
    cpu = _train(photos, deterministic_model, device="cpu")
    gpu = _train(photos, deterministic_model, device="cuda", precision="fp32")
    assert next(gpu.model.parameters()).device.type == "cuda"
    # cuDNN convolutions may use TF32: agreement to about 1e-3, not bit for bit.
    np.testing.assert_allclose(gpu.losses, cpu.losses, rtol=2e-2)


def test_training_under_bf16_autocast_stays_close_and_keeps_fp32_weights(photos, deterministic_model):
    fp32 = _train(photos, deterministic_model, device="cuda", precision="fp32")
    bf16 = _train(photos, deterministic_model, device="cuda", precision="auto")  # auto = bf16 autocast on CUDA
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())  # autocast, not a cast of the weights
    assert np.all(np.isfinite(bf16.losses))
    np.testing.assert_allclose(bf16.losses, fp32.losses, atol=0.1)


def test_pinned_memory_and_prefetching_workers_feed_the_same_batches(photos, deterministic_model):
    """Workers (pinned memory on CUDA) change who decodes, not what: the same losses as in-process loading."""
    inline = _train(photos, deterministic_model, device="cuda", precision="fp32", num_workers=0)
    workers = _train(photos, deterministic_model, device="cuda", precision="fp32", num_workers=2)
    np.testing.assert_allclose(workers.losses, inline.losses, rtol=1e-3)


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_batch_size_does_not_change_gpu_embeddings(tiny_model_dir, rng, mode):
    image = rng.integers(0, 256, (230, 300, 3), dtype=np.uint8)
    runs = [ExifPatchEmbedder(model=str(tiny_model_dir), device="cuda", stride=16, mode=mode, batch_size=b)
            .fit().transform_patches([image])[0] for b in (7, 1024)]
    assert runs[0].grid == runs[1].grid
    cosine = np.sum(runs[0].embeddings * runs[1].embeddings, axis=1)
    assert cosine.min() > 0.999


def test_localizer_on_the_gpu_scores_like_the_cpu_over_a_stream(tiny_model_dir, rng):
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(96, 128, 3), (160, 120, 3), (64, 64, 3)]]
    kwargs = dict(model=str(tiny_model_dir), stride=16, errors="raise")
    cpu = SpliceLocalizer(device="cpu", **kwargs).fit().localize(images)
    gpu = list(SpliceLocalizer(device="cuda", **kwargs).fit().iter_localize(iter(images)))
    for a, b in zip(cpu, gpu):
        assert a.heatmap.shape == b.heatmap.shape and a.mask.shape == b.mask.shape
        assert abs(a.score - b.score) < 0.05
        assert np.all(np.isfinite(b.heatmap))
