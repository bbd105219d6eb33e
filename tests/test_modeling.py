"""The dual-tower model: every architecture builds, runs and learns (timm style)."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoConfig, AutoModel

from exifclip.modeling.loss import ClipLoss
from exifclip.modeling import (
    ExifClipConfig,
    ExifClipModel,
    create_model,
    get_architecture_config,
    list_architectures,
    patches_to_pixel_values,
)
from exifclip.modeling.tokenization import build_exif_tokenizer

from .conftest import make_tiny_model

TEXTS = ["Make: Canon, Model: Canon EOS 5D, Exposure Time: 1/500", "Make: NIKON, F Number: 2.8"]


def test_registered_architectures():
    assert list_architectures() == ["base", "paper-resnet50", "small", "small-s16", "small-s8"]


@pytest.mark.parametrize("name", list_architectures())
def test_every_architecture_forward_backward(name):
    model = create_model(name, seed=0).train()
    p = model.config.patch_size
    pixels = torch.randn(2, 3, p, p)
    tokens = model.tokenizer(TEXTS, padding=True, return_tensors="pt")
    out = model(pixels, tokens["input_ids"], tokens["attention_mask"], return_loss=True)
    d = model.config.embed_dim
    assert out.image_embeds.shape == (2, d) and out.text_embeds.shape == (2, d)
    assert out.logits_per_image.shape == (2, 2)
    assert torch.allclose(out.image_embeds.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    grads = {n: q.grad for n, q in model.named_parameters() if q.requires_grad}
    assert grads["image_projection.weight"] is not None and grads["image_projection.weight"].abs().sum() > 0
    assert any(n.startswith("vision_model.") and g is not None and g.abs().sum() > 0 for n, g in grads.items())
    assert any(n.startswith("text_model.") and g is not None and g.abs().sum() > 0 for n, g in grads.items())


def test_paper_architecture_matches_design():
    cfg = get_architecture_config("paper-resnet50")
    assert cfg.vision_config.hidden_sizes == [256, 512, 1024, 2048]
    assert cfg.vision_config.depths == [3, 4, 6, 3] and cfg.vision_config.layer_type == "bottleneck"
    assert cfg.image_projection_dim == 768 and cfg.image_projection_bias
    assert cfg.text_projection_dim is None and cfg.text_pooling == "mean"
    assert cfg.text_config.dim == 768 and cfg.text_config.n_layers == 6
    assert cfg.logit_scale_init == 100.0 and not cfg.learn_logit_scale
    assert cfg.patch_size == 124
    assert cfg.image_mean == pytest.approx([0.48145466, 0.4578275, 0.40821073])
    assert cfg.image_std == pytest.approx([0.26862954, 0.26130258, 0.27577711])
    model = ExifClipModel(cfg)
    assert isinstance(model.image_projection, torch.nn.Linear)
    assert tuple(model.image_projection.weight.shape) == (768, 2048)
    assert isinstance(model.text_projection, torch.nn.Identity)
    assert not model.logit_scale.requires_grad
    assert model.get_logit_scale().item() == pytest.approx(100.0)


def test_small_is_a_few_megabytes():
    model = create_model("small")
    n_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    assert n_bytes < 20e6


def test_mismatched_embedding_sizes_are_refused():
    with pytest.raises(ValueError, match="same size"):
        get_architecture_config("small", text_projection_dim=64)
    with pytest.raises(ValueError, match="unknown architecture"):
        get_architecture_config("resnet9000")
    with pytest.raises(ValueError, match="text_pooling"):
        get_architecture_config("small", text_pooling="max")


def test_mean_pooling_ignores_padding():
    model = make_tiny_model()
    tok = model.tokenizer
    short = tok(["Make: Canon"], return_tensors="pt")
    padded = tok(["Make: Canon"], padding="max_length", max_length=20, return_tensors="pt")
    with torch.no_grad():
        a = model.get_text_features(short["input_ids"], short["attention_mask"])
        b = model.get_text_features(padded["input_ids"], padded["attention_mask"])
    assert torch.allclose(a, b, atol=1e-5)


def test_cls_pooling_uses_first_token():
    model = make_tiny_model(text_pooling="cls")
    tok = model.tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        feats = model.get_text_features(tok["input_ids"], tok["attention_mask"])
        hidden = model.text_model(**tok).last_hidden_state[:, 0]
    assert torch.allclose(feats, model.text_projection(hidden), atol=1e-6)


def test_loss_matches_symmetric_cross_entropy():
    torch.manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    scale = torch.tensor(10.0)
    logits = scale * img @ txt.t()
    expected = 0
    for i in range(5):  # written out per row, independently of the module
        expected = expected - torch.log_softmax(logits[i], 0)[i] - torch.log_softmax(logits[:, i], 0)[i]
    expected = expected / 10
    assert torch.allclose(ClipLoss()(img, txt, scale), expected, atol=1e-5)


def test_learnable_logit_scale_gets_gradient_and_is_clamped():
    model = make_tiny_model().train()
    tok = model.tokenizer(TEXTS, padding=True, return_tensors="pt")
    out = model(torch.randn(2, 3, 32, 32), tok["input_ids"], tok["attention_mask"], return_loss=True)
    out.loss.backward()
    assert model.logit_scale.grad is not None
    assert model.get_logit_scale().item() == pytest.approx(1 / 0.07, rel=1e-5)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(1000.0))
    assert model.get_logit_scale().item() == pytest.approx(100.0)


def test_auto_classes_round_trip(tmp_path):
    model = make_tiny_model()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "tokenizer.json").is_file()
    assert not list(tmp_path.glob("*.bin"))
    assert isinstance(AutoConfig.from_pretrained(tmp_path), ExifClipConfig)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, ExifClipModel)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.get_image_features(x), model.get_image_features(x))
    assert loaded.config.to_dict()["vision_config"]["hidden_sizes"] == [8, 16, 16, 16]


def test_create_model_follows_tokenizer_vocabulary():
    tok = build_exif_tokenizer(TEXTS * 4, vocab_size=200)
    model = create_model("small", tokenizer=tok, seed=1)
    assert model.config.text_config.vocab_size == len(tok)
    assert model.text_model.embeddings.word_embeddings.num_embeddings == len(tok)


def test_seed_makes_weights_reproducible():
    a, b = make_tiny_model(seed=3), make_tiny_model(seed=3)
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), n


def test_patches_to_pixel_values():
    x = torch.randint(0, 256, (2, 5, 5, 3), dtype=torch.uint8)
    mean, std = [0.1, 0.2, 0.3], [0.5, 0.25, 2.0]
    out = patches_to_pixel_values(x, mean, std)
    assert out.shape == (2, 3, 5, 5) and out.dtype == torch.float32
    ref = (x.permute(0, 3, 1, 2).double() / 255 - torch.tensor(mean).double().view(1, 3, 1, 1)) / torch.tensor(
        std
    ).double().view(1, 3, 1, 1)
    assert torch.allclose(out.double(), ref, atol=1e-5)
    # white stays white: no modulo-256 wrap (the official evaluator's bug)
    white = patches_to_pixel_values(torch.full((1, 2, 2, 3), 255, dtype=torch.uint8), mean, std)
    assert white[0, :, 0, 0].tolist() == pytest.approx([(1 - m) / s for m, s in zip(mean, std)])
    with pytest.raises(TypeError):
        patches_to_pixel_values(x.float(), mean, std)
