"""Shared fixtures. No network: the Hub is forced offline before any import."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# A tiny architecture for fast tests: the same code paths as `small`.
TINY = dict(
    vision_config={"embedding_size": 8, "hidden_sizes": [8, 16, 16, 16], "depths": [1, 1, 1, 1]},
    text_config={"dim": 16, "n_layers": 1, "n_heads": 2, "hidden_dim": 32, "max_position_embeddings": 64},
    image_projection_dim=16,
    text_projection_dim=16,
    patch_size=32,
    max_text_length=64,
)


def make_tiny_model(seed: int = 0, **overrides):
    from exifclip.modeling import create_model

    return create_model("small", seed=seed, **{**TINY, **overrides})


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A saved random tiny model: config.json, model.safetensors, tokenizer."""
    path = tmp_path_factory.mktemp("tiny-model")
    make_tiny_model().save_pretrained(path)
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def random_images(rng):
    """Three random uint8 RGB images of different sizes."""
    return [rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(64, 80, 3), (96, 70, 3), (48, 48, 3)]]


@pytest.fixture(scope="session")
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA
