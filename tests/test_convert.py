"""Converting the paper's checkpoint: exact parity with the original architecture.

The reference below rebuilds the official ``EXIFNet`` state-dict layout from
its description (torchvision's ResNet-50 module names, a transformers
DistilBertModel, the CLIP leftovers) with random weights; torchvision is not
a dependency, so the ResNet is written out here.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn
from transformers import DistilBertConfig, DistilBertModel

from exifclip.modeling.convert import ConversionError, convert_official, load_official_state_dict
from exifclip.modeling.hub import clear_model_cache, load_model
from exifclip.modeling import patches_to_pixel_values


class Bottleneck(nn.Module):
    # torchvision's ResNet v1.5 block: the stride sits on the 3x3 conv.
    def __init__(self, in_ch: int, width: int, stride: int):
        super().__init__()
        out_ch = width * 4
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + identity)


class ReferenceResNet50(nn.Module):
    def __init__(self, out_dim: int = 768):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_ch = 64
        for i, (width, blocks, stride) in enumerate([(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)], start=1):
            layers = []
            for j in range(blocks):
                layers.append(Bottleneck(in_ch, width, stride if j == 0 else 1))
                in_ch = width * 4
            setattr(self, f"layer{i}", nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, out_dim)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


class ReferenceClipLeftovers(nn.Module):
    """The CLIP model after EXIFNet replaced its visual and transformer."""

    def __init__(self, text_layers: int, vocab_size: int):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(77, 512))
        self.text_projection = nn.Parameter(torch.randn(512, 512))
        self.logit_scale = nn.Parameter(torch.tensor(np.log(100.0), dtype=torch.float32))
        self.token_embedding = nn.Embedding(49408 // 64, 512)  # shape is irrelevant: dropped
        self.ln_final = nn.LayerNorm(512)
        self.visual = ReferenceResNet50()
        self.transformer = DistilBertModel(
            DistilBertConfig(vocab_size=vocab_size, n_layers=text_layers, dim=768, n_heads=12, hidden_dim=3072)
        )


class ReferenceExifNet(nn.Module):
    def __init__(self, text_layers: int, vocab_size: int):
        super().__init__()
        self.model = ReferenceClipLeftovers(text_layers, vocab_size)
        self.sink_temp = nn.Parameter(torch.ones([]) * np.log(1 / 0.07))

    def encode_image(self, x):
        return self.model.visual(x)

    def encode_text(self, input_ids, attention_mask):
        hidden = self.model.transformer(input_ids=input_ids, attention_mask=attention_mask)[0]
        mask = attention_mask.unsqueeze(-1).float()
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def _randomise_batchnorm(module: nn.Module, seed: int) -> None:
    # Fresh BatchNorms are the identity in eval mode; random statistics make
    # a wrong mapping of running_mean / running_var visible.
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.num_batches_tracked.fill_(7)


VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list("abcdefghijklmnopqrstuvwxyz0123456789:,.") + [
    "make",
    "model",
    "canon",
    "nikon",
    "iso",
]


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    net = ReferenceExifNet(text_layers=1, vocab_size=len(VOCAB))
    with torch.no_grad():
        _randomise_batchnorm(net, seed=1)
    return net.eval()


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(VOCAB) + "\n")
    return path


@pytest.fixture(scope="module")
def full_checkpoint(reference, tmp_path_factory):
    # The layout of train.py's torch.save: epoch, model, optimizer, lr_sched.
    path = tmp_path_factory.mktemp("ckpt") / "wrapper_75_new.pth"
    torch.save(
        {
            "epoch": 75,
            "model": reference.state_dict(),
            "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.98), "params": [0, 1]}]},
            "lr_sched": {"T_max": 100, "eta_min": 1e-7, "last_epoch": 70, "base_lrs": [1e-4]},
        },
        path,
    )
    return path


@pytest.fixture(scope="module")
def pruned_checkpoint(reference, tmp_path_factory):
    # photoholmes' pruning: "model." removed, CLIP leftovers but logit_scale deleted.
    state = {k.replace("model.", ""): v for k, v in reference.state_dict().items()}
    for key in ["positional_embedding", "ln_final.weight", "ln_final.bias", "token_embedding.weight"]:
        state.pop(key)
    state.pop("text_projection")
    state.pop("sink_temp")
    path = tmp_path_factory.mktemp("pruned") / "exif_as_language_pruned.pth"
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def converted_dir(full_checkpoint, vocab_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("converted") / "exifclip-paper"
    convert_official(full_checkpoint, out, tokenizer=vocab_file)
    return out


def _random_patches(n: int, size: int = 124, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8))


def _assert_image_parity(model, reference, seed=0):
    patches = _random_patches(6, seed=seed)
    pixels = patches_to_pixel_values(patches, model.config.image_mean, model.config.image_std)
    with torch.no_grad():
        ours = model.get_image_features(pixels)
        theirs = reference.encode_image(pixels)
    assert ours.shape == (6, 768)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_full_checkpoint_converts_with_image_parity(converted_dir, reference):
    clear_model_cache()
    model = load_model(converted_dir)
    _assert_image_parity(model, reference)
    assert model.config.architecture == "paper-resnet50"
    assert model.config.patch_size == 124
    assert model.config.image_mean == pytest.approx([0.48145466, 0.4578275, 0.40821073])
    assert float(model.get_logit_scale().detach()) == pytest.approx(100.0)
    assert not model.logit_scale.requires_grad


def test_text_side_matches_distilbert_mean_pooling(converted_dir, reference):
    model = load_model(converted_dir)
    ids = torch.tensor([[2, 40, 41, 10, 3, 0, 0], [2, 42, 11, 12, 13, 14, 3]])
    mask = (ids != 0).long()
    with torch.no_grad():
        ours = model.get_text_features(ids, mask)
        theirs = reference.encode_text(ids, mask)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    # Padding must not move the embedding (mean over the attention mask only).
    with torch.no_grad():
        trimmed = model.get_text_features(ids[:1, :5], mask[:1, :5])
    torch.testing.assert_close(trimmed, ours[:1], atol=1e-4, rtol=1e-4)


def test_converted_model_saves_tokenizer_and_model_card(converted_dir, full_checkpoint):
    model = load_model(converted_dir)
    assert model.tokenizer is not None
    ids = model.tokenizer(["Make: Canon"])["input_ids"][0]
    assert ids == [VOCAB.index(t) for t in ["[CLS]", "make", ":", "canon", "[SEP]"]]
    card = (converted_dir / "README.md").read_text()
    assert "wrapper_75_new.pth" in card and '"epoch": 75' in card and '"layout": "full"' in card
    assert not list(converted_dir.glob("*.bin")) and (converted_dir / "model.safetensors").is_file()


def test_pruned_layout_converts_identically(pruned_checkpoint, reference):
    model = convert_official(pruned_checkpoint, tokenizer=None)
    _assert_image_parity(model, reference, seed=3)
    assert model.tokenizer is None
    assert model.conversion_info["layout"] == "pruned"


def test_convert_from_loaded_dict_with_dataparallel_prefix(reference):
    state = {"module." + k: v for k, v in reference.state_dict().items()}
    model = convert_official({"epoch": 1, "model": state}, tokenizer=None)
    _assert_image_parity(model, reference, seed=5)


def test_unknown_and_missing_keys_are_listed(reference):
    state = dict(reference.state_dict())
    state["model.visual.layer5.0.conv1.weight"] = torch.zeros(1)
    state["model.extra_head.weight"] = torch.zeros(1)
    with pytest.raises(ConversionError, match=r"unknown keys.*extra_head\.weight.*visual\.layer5"):
        convert_official({"model": state}, tokenizer=None)

    state = dict(reference.state_dict())
    del state["model.visual.layer3.4.bn2.running_var"]
    del state["model.visual.fc.bias"]
    with pytest.raises(ConversionError, match=r"missing keys.*image_projection\.bias.*stages\.2\.layers\.4"):
        convert_official({"model": state}, tokenizer=None)


def test_wrong_shapes_are_listed(reference):
    state = dict(reference.state_dict())
    state["model.visual.fc.weight"] = torch.zeros(512, 2048)
    state["model.visual.fc.bias"] = torch.zeros(512)
    with pytest.raises(ConversionError, match=r"image_projection\.weight \(512, 2048\) \(expected \(768, 2048\)\)"):
        convert_official({"model": state}, tokenizer=None)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # what an attacker's pickle would do on load
        return (open, (self.marker, "w"))


def test_pickled_objects_are_refused_not_executed(tmp_path, reference):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pth"
    torch.save({"model": reference.state_dict(), "hook": _Payload(str(marker))}, path)
    assert not marker.exists()  # saving only records the callable
    with pytest.raises(ConversionError, match=r"evil\.pth: cannot be read as a weights-only"):
        load_official_state_dict(path)
    assert not marker.exists()


def test_not_a_checkpoint(tmp_path):
    junk = tmp_path / "photo.jpg"
    junk.write_bytes(b"\xff\xd8\xff\xe0 not a checkpoint")
    with pytest.raises(ConversionError, match="photo.jpg"):
        convert_official(junk)
    with pytest.raises(ConversionError, match="no such checkpoint"):
        convert_official(tmp_path / "missing.pth")
    with pytest.raises(ConversionError, match="not an EXIF-as-Language checkpoint"):
        convert_official({"model": {"fc.weight": torch.zeros(2, 2)}})


def test_tokenizer_of_another_vocabulary_is_refused(full_checkpoint, tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(VOCAB + [f"w{i}" for i in range(100)]) + "\n")
    with pytest.raises(ConversionError, match="tokenizer has 149 tokens"):
        convert_official(full_checkpoint, tokenizer=vocab)


def test_unavailable_tokenizer_says_what_to_do(full_checkpoint):
    # Offline (the test command sets HF_HUB_OFFLINE=1) or online, this id does not exist.
    with pytest.raises(ConversionError, match="--tokenizer none"):
        convert_official(full_checkpoint, tokenizer="no-such-org/no-such-tokenizer")


def test_cli_convert_official(full_checkpoint, pruned_checkpoint, vocab_file, reference, tmp_path):
    out = tmp_path / "paper"
    cmd = [sys.executable, "-m", "exifclip", "convert-official", str(full_checkpoint), str(out)]
    done = subprocess.run(cmd + ["--tokenizer", str(vocab_file)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["layout"] == "full" and summary["out_dir"] == str(out)
    clear_model_cache()
    _assert_image_parity(load_model(out), reference, seed=7)

    bad = subprocess.run(
        [sys.executable, "-m", "exifclip", "convert-official", str(tmp_path / "nope.pth"), str(tmp_path / "x")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode != 0 and "nope.pth: no such checkpoint file" in bad.stderr
    assert not (tmp_path / "x").exists()
