"""Training that streams photos from WebDataset shards: the directory path's losses, exact resume, splitting."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from exifclip.shards import write_shards
from exifclip.training import TrainingConfig, train
from exifclip.training.data import ExifPatchDataset
from exifclip.training.shard_stream import ShardCorpus, ShardPatchStream, ShardReading
from tests.test_training import _exif, _pixels, tiny, write_photos

pytest.importorskip("webdataset")


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """Eight photos as files, and the same photos in two shards of four."""
    root = tmp_path_factory.mktemp("packed")
    paths = [str(p) for p in write_photos(root / "photos", 8)]
    shards = write_shards(paths, str(root / "shards" / "train-%03d.tar"), max_count=4).shards
    return paths, shards


def _config(**kw):
    values = dict(min_tags=5, steps=4, batch_size=4, lr=3e-3, device="cpu", progress=False, seed=0)
    values.update(kw)
    return TrainingConfig(**values)


@pytest.mark.parametrize("objective", [
    {},
    {"augment": {"p": 1.0}, "patch_pairs": True, "targets": "same_camera", "tag_dropout": 0.3, "shuffle_tags": True},
])
def test_shards_give_the_losses_of_the_directory_path_on_the_same_photos(packed, objective):
    paths, shards = packed
    # Eight photos, batches of four: two steps an epoch; four steps cross into the second epoch in both paths.
    from_files = train(_config(images=paths, shuffle=False, **objective), model=tiny(dropout=False))
    from_shards = train(_config(shards=shards, shuffle=False, **objective), model=tiny(dropout=False))
    assert from_shards.losses == from_files.losses  # bitwise: the same patches, texts and batches
    for key, value in from_files.model.state_dict().items():
        assert torch.equal(from_shards.model.state_dict()[key], value), key
    assert from_shards.dataset == {"shards": 2, "images": None, "skipped": {}, "skipped_total": 0}


def test_a_shuffled_stream_sees_every_photo_once_per_epoch_and_differs_from_the_listed_order(packed):
    paths, shards = packed
    patcher = ExifPatchDataset(records=[], patch_size=32, min_tags=5, seed=0)
    reading = ShardReading("default", "default", 5, 32)

    def indices(shuffle, buffer=3):
        stream = ShardPatchStream(shards, patcher, reading, micro_batch=2, shuffle=shuffle, shuffle_buffer=buffer)
        seen = []
        for batch, _ in zip(stream._photos(0, 1), range(16)):
            epoch, photo, _ = batch
            seen.append((epoch, photo[0]))
        return seen

    shuffled = indices(True)
    for epoch in (0, 1):
        assert sorted(i for e, i in shuffled if e == epoch) == list(range(8))
    assert [i for e, i in shuffled if e == 0] != list(range(8))
    assert [i for e, i in shuffled if e == 0] != [i for e, i in shuffled if e == 1], "each epoch its own order"
    assert [i for _, i in indices(False)] == list(range(8)) * 2
    assert indices(True) == shuffled, "a pure function of the seed"


def test_ranks_and_workers_read_disjoint_shards(packed):
    _, shards = packed
    patcher = ExifPatchDataset(records=[], patch_size=32, min_tags=5, seed=0)
    reading = ShardReading("default", "default", 5, 32)
    per_rank = []
    for rank in (0, 1):
        stream = ShardPatchStream(shards, patcher, reading, micro_batch=2, rank=rank, world=2)
        per_rank.append({photo[0] for (e, photo, _), _ in zip(stream._photos(rank, 2), range(4))})
    assert per_rank[0].isdisjoint(per_rank[1]) and per_rank[0] | per_rank[1] == set(range(8))
    with pytest.raises(ValueError, match="2 shard\\(s\\) for 4 readers"):
        ShardPatchStream(shards, patcher, reading, micro_batch=2, world=2, readers_per_rank=2)


def test_two_data_workers_stream_the_same_batches_as_one(packed, tmp_path):
    """With shards of a whole number of micro-batches, worker w's batches are w, w + 2, ...: the same order."""
    paths, _ = packed
    shards = write_shards(paths, str(tmp_path / "w-%03d.tar"), max_count=2).shards  # four shards of two
    one = train(_config(shards=shards, shuffle=False, batch_size=2, steps=3), model=tiny(dropout=False))
    two = train(_config(shards=shards, shuffle=False, batch_size=2, steps=3, num_workers=2), model=tiny(dropout=False))
    assert two.losses == one.losses


def test_an_interrupted_stream_resumes_exactly(packed, tmp_path):
    _, shards = packed
    base = dict(shards=shards, steps=5, warmup_steps=1, shuffle_buffer=3, augment=True)
    full = train(_config(out_dir=str(tmp_path / "full"), **base), model=tiny())

    def interrupt(model, step):
        if step == 3:
            raise KeyboardInterrupt

    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        train(_config(out_dir=str(cut), eval_every=1, **base), model=tiny(), eval_hook=interrupt)
    resumed = train(_config(out_dir=str(cut), resume=True, **base))
    assert resumed.resumed_from == 3 and resumed.losses == full.losses
    for key, value in full.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    logged = [json.loads(x) for x in (cut / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in logged if "event" not in r] == [0, 0, 1, 1, 2]  # each reader's own epochs
    with pytest.warns(UserWarning, match="read by 1 process\\(es\\) x 0 worker"):
        train(_config(out_dir=str(cut), resume=True, **dict(base, steps=6, num_workers=1)))


def test_from_scratch_the_vocabulary_comes_from_the_shards_texts(packed, tmp_path):
    paths, shards = packed
    reading = ShardReading("default", "default", 5, 32)
    assert ShardCorpus(shards, reading).texts == ExifPatchDataset(paths, patch_size=32, min_tags=5).texts
    assert ShardCorpus([f"pipe:cat {s}" for s in shards], reading).texts == ShardCorpus(shards, reading).texts
    result = train(_config(shards=shards, arch="small", patch_size=32, steps=1, vocab_size=200))
    assert result.step == 1 and np.isfinite(result.losses[0])


def test_photos_left_out_of_a_stream_are_named_and_counted(packed, tmp_path, rng):
    paths, _ = packed
    Image.fromarray(_pixels(rng, 0, 20, 90)).save(tmp_path / "tiny.jpg", exif=_exif(0))  # too small
    Image.fromarray(_pixels(rng, 0, 64, 64)).save(tmp_path / "bare.jpg")  # too few tags
    data = open(paths[0], "rb").read()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])  # its header reads, its pixels do not decode
    mixed = paths[:3] + [str(tmp_path / n) for n in ("tiny.jpg", "bare.jpg", "cut.jpg")] + paths[3:]
    shards = write_shards(mixed, str(tmp_path / "m-%03d.tar"), max_count=5).shards
    with pytest.warns(UserWarning, match="cut.jpg: truncated JPEG"):
        result = train(_config(shards=shards, steps=3, batch_size=4, out_dir=str(tmp_path / "run")), model=tiny())
    reasons = {name.rsplit("/", 1)[-1]: reason for name, reason, _ in result.skipped_files}
    assert reasons == {"tiny.jpg": "too_small", "bare.jpg": "too_few_tags", "cut.jpg": "decode_failed"}
    assert result.dataset["skipped"] == {"decode_failed": 1, "too_few_tags": 1, "too_small": 1}
    assert "tiny.jpg" in (tmp_path / "run" / "skipped_files.csv").read_text()


def test_shard_settings_are_checked():
    with pytest.raises(ValueError, match="shards or images/metadata, not both"):
        TrainingConfig(shards="a.tar", images="x", arch="small").validate()
    with pytest.raises(ValueError, match="camera_balanced.*one at a time"):
        TrainingConfig(shards="a.tar", arch="small", batch_sampling="camera_balanced").validate()
    with pytest.raises(ValueError, match="shuffle_buffer"):
        TrainingConfig(shards="a.tar", arch="small", shuffle_buffer=-1).validate()
    TrainingConfig(shards=["a-{0..3}.tar"], arch="small").validate()


def test_a_shard_that_is_not_a_tar_file_is_named(tmp_path):
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"no tar here" * 200)
    with pytest.raises(ValueError, match="junk.tar: not a readable tar shard"):
        train(_config(shards=str(junk), arch="small", steps=1))


def _ddp_worker(rank: int, world: int, port: int, shards: list, model_dir: str, results: str) -> None:
    from exifclip.modeling.hub import load_model
    from tests.test_training_ddp import _init_group

    _init_group(rank, world, port)
    try:
        result = train(_config(shards=shards, shuffle=False, steps=3, lr=2e-3),
                       model=load_model(model_dir, use_cache=False))
        if rank == 0:
            torch.save(torch.tensor(result.losses, dtype=torch.float64), f"{results}/losses.pt")
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is unavailable")
def test_two_ranks_reading_their_own_shards_train_as_one_process(packed, tmp_path):
    """Four shards of two photos: rank 0 reads shards 0 and 2, rank 1 shards 1 and 3, so each global batch
    holds the photos one process reads in order; with one micro-batch per rank against two accumulated
    micro-batches, BatchNorm sees the same halves and the losses agree to float rounding."""
    from tests.test_training_ddp import _free_port

    paths, _ = packed
    shards = write_shards(paths, str(tmp_path / "d-%03d.tar"), max_count=2).shards
    model_dir = tmp_path / "model"
    tiny(dropout=False).save_pretrained(model_dir)
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), shards, str(model_dir), str(tmp_path)),
                                nprocs=2, join=True)
    one = train(_config(shards=shards, shuffle=False, steps=3, lr=2e-3, accum_steps=2), model=tiny(dropout=False))
    torch.testing.assert_close(torch.load(tmp_path / "losses.pt", weights_only=True),
                               torch.tensor(one.losses, dtype=torch.float64), rtol=1e-5, atol=1e-6)


def test_exifclip_train_streams_shards_from_the_command_line(packed, tmp_path, tiny_model_dir):
    from exifclip.cli import main

    _, shards = packed
    out = tmp_path / "run"
    pattern = shards[0].replace("train-000.tar", "train-{000..001}.tar")
    assert main(["train", "--shards", pattern, "--init", str(tiny_model_dir), "--out", str(out), "--steps", "2",
                 "--batch-size", "4", "--min-tags", "5", "--device", "cpu", "--no-progress", "--no-shuffle"]) == 0
    assert (out / "model.safetensors").is_file()
    saved = TrainingConfig.from_json(out / "training_config.json")
    assert saved.shards == [pattern] and saved.shuffle is False and saved.images is None
    start = json.loads((out / "train_log.jsonl").read_text().splitlines()[0])
    assert start["dataset"]["shards"] == 2
