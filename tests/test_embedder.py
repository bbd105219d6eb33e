"""ExifPatchEmbedder and its functional core."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from PIL import Image

from exifclip.batch import BatchItemError, BatchItemWarning
from exifclip.embedder import ExifPatchEmbedder, embed_patches
from exifclip.modeling.hub import load_model
from exifclip.io import ImageLoadError
from exifclip.modeling import patches_to_pixel_values
from exifclip.patches import make_grid


@pytest.fixture
def embedder(tiny_model_dir):
    return ExifPatchEmbedder(model=str(tiny_model_dir), device="cpu", batch_size=7).fit()


def _reference_patch_embeddings(model, image, patch_size, num_per_dim=30):
    """One patch at a time, cut by slicing: the slow, obvious way."""
    grid = make_grid(image.shape, patch_size, num_per_dim=num_per_dim)
    out = []
    for y, x in grid.positions():
        patch = torch.from_numpy(np.ascontiguousarray(image[y : y + patch_size, x : x + patch_size]))[None]
        with torch.no_grad():
            z = model.get_image_features(
                patches_to_pixel_values(patch, model.config.image_mean, model.config.image_std)
            )
        out.append(torch.nn.functional.normalize(z, dim=-1)[0].numpy())
    return grid, np.stack(out)


def test_patch_embeddings_match_one_by_one_reference(embedder, random_images):
    results = embedder.transform_patches(random_images)
    for image, result in zip(random_images, results):
        grid, ref = _reference_patch_embeddings(embedder.model_, image, 32)
        assert result.grid == grid
        assert result.embeddings.dtype == np.float32
        np.testing.assert_allclose(result.embeddings, ref, atol=2e-5)
        np.testing.assert_allclose(np.linalg.norm(result.embeddings, axis=1), 1, atol=1e-5)


def test_batch_size_does_not_change_results(tiny_model_dir, random_images):
    a = ExifPatchEmbedder(model=str(tiny_model_dir), device="cpu", batch_size=1).fit().transform(random_images)
    b = ExifPatchEmbedder(model=str(tiny_model_dir), device="cpu", batch_size=1000).fit().transform(random_images)
    np.testing.assert_allclose(a, b, atol=2e-5)


def test_transform_is_normalised_mean_of_patches(embedder, random_images):
    Z = embedder.transform(random_images)
    P = embedder.transform_patches(random_images)
    assert Z.shape == (3, embedder.embedding_dim_)
    for z, p in zip(Z, P):
        m = p.embeddings.mean(0)
        np.testing.assert_allclose(z, m / np.linalg.norm(m), atol=1e-6)


def test_all_source_kinds_give_the_same_embedding(embedder, random_images, tmp_path):
    img = random_images[0]
    path = tmp_path / "a.png"
    Image.fromarray(img).save(path)
    sources = [img, str(path), path, path.read_bytes(), Image.fromarray(img), open(path, "rb")]
    Z = embedder.transform(sources)
    np.testing.assert_allclose(Z, np.repeat(Z[:1], len(sources), axis=0), atol=1e-6)
    assert embedder.transform(img).shape == (1, embedder.embedding_dim_)  # a single image


def test_patch_size_and_stride_params(tiny_model_dir, random_images):
    est = ExifPatchEmbedder(model=str(tiny_model_dir), device="cpu", patch_size=40, stride=8).fit()
    result = est.transform_patches(random_images[0])[0]
    assert result.grid.patch_size == 40 and result.grid.stride == 8
    assert result.embeddings.shape[0] == result.grid.n_patches == (1 + (64 - 40) // 8) * (1 + (80 - 40) // 8)


def test_bad_inputs_raise_naming_the_input(tiny_model_dir, random_images, tmp_path):
    embedder = ExifPatchEmbedder(model=str(tiny_model_dir), device="cpu", errors="raise").fit()
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    truncated = tmp_path / "cut.jpg"
    from io import BytesIO

    buf = BytesIO()
    Image.fromarray(random_images[0]).save(buf, "JPEG")
    truncated.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    cases = {
        str(tmp_path / "missing.jpg"): "missing.jpg",
        str(empty): "empty.jpg",
        str(text): "notes.jpg",
        str(truncated): "cut.jpg",
    }
    for source, name in cases.items():
        with pytest.raises(BatchItemError, match=name) as info:
            embedder.transform([random_images[0], source])
        assert str(info.value).startswith("image 1 (") and info.value.failure.index == 1
        assert isinstance(info.value, ImageLoadError)  # still what callers catch
    with pytest.raises(ImageLoadError, match="smaller than one 32x32 patch"):
        embedder.transform([np.zeros((20, 100, 3), np.uint8)])
    with pytest.raises(ImageLoadError, match="uint8"):
        embedder.transform([np.zeros((40, 40, 3), np.float32)])
    with pytest.raises(ValueError, match="empty"):
        embedder.transform([])


def test_warn_keeps_good_results_aligned(tiny_model_dir, random_images):
    est = ExifPatchEmbedder(model=str(tiny_model_dir), device="cpu", batch_size=50).fit()
    assert est.errors == "warn"  # the default
    good = est.transform(random_images)
    assert est.failures_ == []
    # batch_size 50 mixes the patches of neighbouring images: a failure between
    # them must not cost the others their patches
    batch = [random_images[0], "missing.png", random_images[1], np.zeros((5, 5), np.uint8), random_images[2]]
    with pytest.warns(BatchItemWarning) as record:
        Z = est.transform(batch)
    messages = [str(w.message) for w in record]
    assert len(messages) == 2
    assert "image 1 (missing.png): file not found" in messages[0] and "smaller than one" in messages[1]
    assert all(w.filename == __file__ for w in record), "the warning points at the caller's line"
    assert [(f.index, f.source) for f in est.failures_] == [(1, "missing.png"), (3, "<array shape=(5, 5) dtype=uint8>")]
    assert np.isnan(Z[[1, 3]]).all()
    np.testing.assert_allclose(Z[[0, 2, 4]], good, atol=1e-6)
    with pytest.warns(BatchItemWarning):
        patches = est.transform_patches(batch)
    assert patches[1] is None and patches[3] is None and patches[4].embeddings.shape[0] > 0
    est.transform(random_images[:1])
    assert est.failures_ == [], "failures_ describes the latest call only"


def test_skip_is_silent_and_records(tiny_model_dir, random_images, recwarn):
    est = ExifPatchEmbedder(model=str(tiny_model_dir), device="cpu", errors="skip").fit()
    Z = est.transform(["gone.jpg", random_images[0]])
    assert not [w for w in recwarn if issubclass(w.category, BatchItemWarning)]
    assert np.isnan(Z[0]).all() and np.isfinite(Z[1]).all()
    assert est.failures_ == [(0, "gone.jpg", "file not found")]


def test_embed_exif_accepts_texts_and_dicts(embedder):
    text = "Make: Canon, Model: Canon EOS 5D"
    T = embedder.embed_exif([text, {"Make": "Canon", "Model": "Canon EOS 5D"}, "Make: NIKON"])
    assert T.shape == (3, embedder.embedding_dim_)
    np.testing.assert_allclose(np.linalg.norm(T, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(T[0], T[1], atol=1e-6)  # the dict is written as the same text
    assert not np.allclose(T[0], T[2])
    np.testing.assert_allclose(embedder.embed_exif(text), T[:1], atol=1e-6)
    with pytest.raises(TypeError, match="text 0"):
        embedder.embed_exif([3])


def test_feature_names(embedder):
    names = embedder.get_feature_names_out()
    assert len(names) == embedder.embedding_dim_ and names[0] == "exifpatchembedder0"


def test_progress_bar_and_functional_core(tiny_model_dir, random_images, capsys):
    model = load_model(tiny_model_dir)
    out = embed_patches(model, random_images, batch_size=5, progress=True)
    assert [o.embeddings.shape[0] for o in out] == [o.grid.n_patches for o in out]
    assert "3/3" in capsys.readouterr().err


def test_large_image_costs_its_patches_not_a_full_tensor(embedder):
    # A 4000x3000 image with a coarse stride: only the grid's patches are embedded.
    image = np.zeros((3000, 4000, 3), np.uint8)
    result = embedder.transform_patches([image])[0]
    assert result.grid.n_patches == (1 + (3000 - 32) // result.grid.stride) * (1 + (4000 - 32) // result.grid.stride)
    assert np.isfinite(result.embeddings).all()
