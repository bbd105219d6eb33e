"""Two CPU processes (gloo, 127.0.0.1 only) train exactly as one process at the same global batch.

The loss alone: ``ClipLoss(rank, world_size)`` on each rank's half of a batch
gives the one-process loss, and its gradients, averaged over the ranks as DDP
does, the one-process gradients.

The loop: two comparisons, each at global batch 8:

* ``batchnorm="batch"``: BatchNorm statistics are per micro-batch, so two
  ranks x 1 micro-batch are compared with one process x 2 micro-batches
  (``accum_steps=2``), which normalises the same 4-photo halves. Dropout is
  on: it is seeded per micro-batch from (seed, step, g), the same in both.
* ``batchnorm="frozen"``: BN uses its running statistics, so any split of
  the global batch is the same computation: two ranks x 2 micro-batches
  (DDP ``no_sync`` and the two-pass accumulation) against one process
  without accumulation (dropout off: one process draws its masks for 8
  texts at once, four micro-batches draw theirs separately); once plain,
  once with every objective for small data (soft targets from labels
  gathered across ranks, second patches, hard-negative batches, tag
  dropout and shuffling).

(Per-micro-batch BN over 2 patches is too ill-conditioned to compare: its
gradients reach norms of ~2000 and float rounding drifts apart in a step.)

Losses must agree to float rounding (all-gather order, padding lengths), and
so must the parameters after the steps. BN running statistics are not
compared: under DDP they come from rank 0's micro-batch only.
"""

from __future__ import annotations

import os
import socket
import sys

import pytest
import torch

from exifclip.modeling.hub import load_model
from exifclip.modeling.loss import ClipLoss
from exifclip.training import TrainingConfig, train

from .conftest import TINY, make_tiny_model
from .test_training import write_photos

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is unavailable")

STEPS = 3


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: The objectives for small data, all at once: labels gathered across ranks, second patches, camera batches.
OPTIONS = dict(targets="text_similarity", target_temperature=0.5, patch_pairs=True, patch_loss_weight=0.5,
               batch_sampling="hard_negatives", photos_per_camera=2, tag_dropout=0.2, shuffle_tags=True)


def _configs(photo_dir, out_dir):
    common = dict(images=str(photo_dir), min_tags=5, steps=STEPS, batch_size=8, lr=2e-3, warmup_steps=1,
                  device="cpu", progress=False, seed=0)
    return {
        "batch": dict(common, batchnorm="batch", out_dir=str(out_dir), checkpoint_every=2),
        "frozen-accum": dict(common, batchnorm="frozen", accum_steps=2),
        "frozen-options": dict(common, batchnorm="frozen", accum_steps=2, **OPTIONS),
    }


def _init_group(rank: int, world: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    if sys.platform.startswith("linux"):
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)


# -- the loss -----------------------------------------------------------------------------------

def _loss_problem():
    """Two linear towers, a logit scale, and a batch of 8 (row 5 padding), all in float64."""
    g = torch.Generator().manual_seed(0)
    params = {"w_img": torch.randn(6, 5, generator=g, dtype=torch.float64),
              "w_txt": torch.randn(7, 5, generator=g, dtype=torch.float64),
              "scale": torch.tensor(7.0, dtype=torch.float64)}
    x_img = torch.randn(8, 6, generator=g, dtype=torch.float64)
    x_txt = torch.randn(8, 7, generator=g, dtype=torch.float64)
    valid = torch.ones(8, dtype=torch.bool)
    valid[5] = False
    return params, x_img, x_txt, valid


def _loss_and_grads(loss_fn, params, x_img, x_txt, valid, labels=None, x_patch=None):
    params = {k: v.clone().requires_grad_() for k, v in params.items()}
    img = torch.nn.functional.normalize(x_img @ params["w_img"], dim=-1)
    txt = torch.nn.functional.normalize(x_txt @ params["w_txt"], dim=-1)
    patch = torch.nn.functional.normalize(x_patch @ params["w_img"], dim=-1) if x_patch is not None else None
    loss = loss_fn(img, txt, params["scale"], valid, labels, patch)
    loss.backward()
    return loss.detach(), {k: v.grad for k, v in params.items()}


#: Loss options compared across ranks: each needs the labels (and second patches) of the other rank's rows.
LOSS_OPTIONS = {"same_camera": dict(targets="same_camera"),
                "same_text+patch": dict(targets="same_text", patch_weight=0.5),
                "text_similarity+patch": dict(targets="text_similarity", temperature=0.5, patch_weight=2.0)}


def _labels(rows: slice = slice(None)) -> torch.Tensor:
    """Label rows (camera, item ids) of the batch of 8: cameras and texts repeat across the two ranks'
    halves; each half is only as wide as its longest text (the gather pads)."""
    items = [[1, 2, 3], [1, 2, 4], [5], [1, 2, 3], [6, 7, 8, 9], [5], [1, 2], [6, 7]]
    cameras = [10, 10, 11, 10, 12, 11, 10, 12]
    part = list(zip(cameras, items))[rows]
    width = max(len(i) for _, i in part)
    return torch.tensor([[c] + i + [-1] * (width - len(i)) for c, i in part], dtype=torch.int64)


def _options_loss_worker(rank: int, world: int, port: int, results: str) -> None:
    _init_group(rank, world, port)
    try:
        params, x_img, x_txt, valid = _loss_problem()
        x_patch = torch.randn(8, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        rows = slice(rank * 4, (rank + 1) * 4)
        out = {}
        for name, options in LOSS_OPTIONS.items():
            loss, grads = _loss_and_grads(ClipLoss(rank, world, **options), params, x_img[rows], x_txt[rows],
                                          valid[rows], _labels(rows), x_patch[rows])
            for g in grads.values():
                torch.distributed.all_reduce(g)
                g /= world
            out[name] = {"loss": loss, "grads": grads}
        torch.save(out, os.path.join(results, f"options-rank{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


def _loss_worker(rank: int, world: int, port: int, results: str) -> None:
    _init_group(rank, world, port)
    try:
        params, x_img, x_txt, valid = _loss_problem()
        rows = slice(rank * 4, (rank + 1) * 4)
        loss, grads = _loss_and_grads(ClipLoss(rank, world), params, x_img[rows], x_txt[rows], valid[rows])
        for g in grads.values():  # what DDP does with the parameters' gradients
            torch.distributed.all_reduce(g)
            g /= world
        torch.save({"loss": loss, "grads": grads}, os.path.join(results, f"loss-rank{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


def test_clip_loss_over_two_ranks_has_the_one_process_loss_and_gradients(tmp_path):
    torch.multiprocessing.spawn(_loss_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    params, x_img, x_txt, valid = _loss_problem()
    loss, grads = _loss_and_grads(ClipLoss(), params, x_img, x_txt, valid)
    assert abs(float(grads["scale"])) > 1e-3  # the logit scale's gradient is tested, not zero
    for rank in range(2):
        ddp = torch.load(tmp_path / f"loss-rank{rank}.pt", weights_only=True)
        torch.testing.assert_close(ddp["loss"], loss)  # the true loss on every rank, not scaled
        for name, g in grads.items():
            torch.testing.assert_close(ddp["grads"][name], g, msg=lambda m, name=name: f"{name}: {m}")


def test_loss_options_over_two_ranks_have_the_one_process_loss_and_gradients(tmp_path):
    torch.multiprocessing.spawn(_options_loss_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    params, x_img, x_txt, valid = _loss_problem()
    x_patch = torch.randn(8, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    plain, _ = _loss_and_grads(ClipLoss(), params, x_img, x_txt, valid)
    for name, options in LOSS_OPTIONS.items():
        loss, grads = _loss_and_grads(ClipLoss(**options), params, x_img, x_txt, valid, _labels(), x_patch)
        assert abs(float(loss - plain)) > 1e-3, name  # the options are in play
        for rank in range(2):
            ddp = torch.load(tmp_path / f"options-rank{rank}.pt", weights_only=True)[name]
            torch.testing.assert_close(ddp["loss"], loss, msg=lambda m, name=name: f"{name}: {m}")
            for key, g in grads.items():
                torch.testing.assert_close(ddp["grads"][key], g, msg=lambda m, k=key, n=name: f"{n} {k}: {m}")


# -- the loop -----------------------------------------------------------------------------------

def _worker(rank: int, world: int, port: int, photo_dir: str, model_dirs: dict, results: str) -> None:
    _init_group(rank, world, port)
    try:
        for name, values in _configs(photo_dir, os.path.join(results, "ddp-run")).items():
            model = load_model(model_dirs[name], use_cache=False)
            result = train(TrainingConfig(**values), model=model)
            assert result.world_size == world
            if rank == 0:
                params = {k: v.detach().cpu() for k, v in result.model.named_parameters()}
                grad_norms = torch.tensor([h["grad_norm"] for h in result.history], dtype=torch.float64)
                torch.save({"losses": torch.tensor(result.losses, dtype=torch.float64), "params": params,
                            "grad_norms": grad_norms},
                           os.path.join(results, f"{name}.pt"))
    finally:
        torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    write_photos(root / "photos", 12)
    dirs = {}
    for name, dropout in (("batch", 0.1), ("frozen-accum", 0.0), ("frozen-options", 0.0)):
        text = {**TINY["text_config"], "dropout": dropout, "attention_dropout": dropout}
        dirs[name] = str(root / f"model-{name}")
        make_tiny_model(0, text_config=text).save_pretrained(dirs[name])
    return root, dirs


def test_two_gloo_processes_match_one_process_at_the_same_global_batch(setup):
    root, model_dirs = setup
    results = root / "results"
    results.mkdir()
    torch.multiprocessing.spawn(_worker, args=(2, _free_port(), str(root / "photos"), model_dirs, str(results)),
                                nprocs=2, join=True)
    single = {"batch": dict(accum_steps=2), "frozen-accum": dict(accum_steps=1), "frozen-options": dict(accum_steps=1)}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers: the same summation order in the kernels
    try:
        refs = {name: train(TrainingConfig(**{**values, **single[name]}),
                            model=load_model(model_dirs[name], use_cache=False))
                for name, values in _configs(root / "photos", root / "single-run").items()}
    finally:
        torch.set_num_threads(threads)
    for name, ref in refs.items():
        ddp = torch.load(results / f"{name}.pt", weights_only=True)
        assert ref.world_size == 1 and len(ref.losses) == STEPS
        torch.testing.assert_close(ddp["losses"], torch.tensor(ref.losses, dtype=torch.float64),
                                   rtol=1e-4, atol=1e-4, msg=lambda m, name=name: f"{name}: {m}")
        # Adam hides a wrong gradient scale (its first steps are nearly sign(g)); the norm of the
        # all-reduced gradient does not.
        ref_norms = torch.tensor([h["grad_norm"] for h in ref.history], dtype=torch.float64)
        torch.testing.assert_close(ddp["grad_norms"], ref_norms, rtol=1e-3, atol=1e-6,
                                   msg=lambda m, name=name: f"{name} gradient norms: {m}")
        worst = max(float((ddp["params"][k] - v.detach()).abs().max()) for k, v in ref.model.named_parameters())
        assert worst < 5e-4, f"{name}: parameters differ by up to {worst} after {STEPS} steps of lr 2e-3"
    assert refs["frozen-options"].losses != refs["frozen-accum"].losses  # the options are in play
    # Rank 0 alone wrote the checkpoints, the log and the final model.
    run = results / "ddp-run"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000002"]
    assert (run / "model.safetensors").is_file() and (run / "train_log.jsonl").is_file()
    start = (run / "train_log.jsonl").read_text().splitlines()[0]
    assert '"world_size": 2' in start
