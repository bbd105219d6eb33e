"""Training run files: checkpoints (exact resume), the JSONL log, the model card and skipped files.

Weights go through ``save_pretrained`` (safetensors); the optimiser,
scheduler, RNG and data position are plain tensors and dicts written with
``torch.save`` and read back only with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path
from typing import Any

__all__ = [
    "STATE_FILE",
    "TrainLog",
    "check_resumed_data",
    "json_default",
    "latest_checkpoint",
    "load_training_state",
    "model_card",
    "resume_checkpoint",
    "save_checkpoint",
    "write_skipped_files",
]

STATE_FILE = "training_state.pt"


def json_default(value: Any) -> Any:
    """In-memory images (bytes) are named, not written, in JSON logs and configs."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<bytes, {len(value)} B>"
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    """The checkpoint directory with the highest step under ``out_dir/checkpoints``, or ``None``."""
    root = Path(out_dir) / "checkpoints"
    if not root.is_dir():
        return None
    done = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and p.name[5:].isdigit()
            and (p / STATE_FILE).is_file()]
    return max(done, key=lambda p: int(p.name[5:])) if done else None


def resume_checkpoint(resume: bool | str | None, out_dir: Path | None) -> Path | None:
    """The checkpoint a run resumes from: ``resume`` itself if it is a directory, the latest one in
    ``out_dir`` if ``resume`` is true, else ``None``. A directory without a training state is an error."""
    if isinstance(resume, str):
        checkpoint = Path(resume)
        if not (checkpoint / STATE_FILE).is_file():
            raise ValueError(f"{checkpoint}: not a training checkpoint (no {STATE_FILE})")
        return checkpoint
    if resume and out_dir is not None:
        return latest_checkpoint(out_dir)
    return None


def load_training_state(checkpoint: str | os.PathLike) -> dict:
    """The plain state of a checkpoint, read with ``torch.load(weights_only=True)``."""
    import torch

    return torch.load(Path(checkpoint) / STATE_FILE, map_location="cpu", weights_only=True)


def save_checkpoint(out_dir: Path, step: int, model, optimizer, scheduler, state: dict, keep: int) -> Path:
    """Write ``out_dir/checkpoints/step-NNNNNNNN/`` (model, then ``state`` + optimiser, scheduler and RNG),
    atomically (a temporary directory renamed), keeping the ``keep`` latest checkpoints."""
    import torch

    root = out_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = root / f".step-{step:08d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save({**state, "step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "rng": rng}, tmp / STATE_FILE)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    olds = sorted((p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and p.name[5:].isdigit()),
                  key=lambda p: int(p.name[5:]))
    for old in olds[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def write_skipped_files(path: Path, rows: list) -> None:
    """``skipped_files.csv``: one ``(file, reason, detail)`` row per photo left out."""
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "reason", "detail"])
        writer.writerows(rows)


def model_card(config, result: dict) -> str:
    """The ``README.md`` of a trained model: where it came from and how it was trained."""
    origin = f"from scratch, architecture {config.arch!r}" if config.arch else f"fine-tuned from {config.init!r}"
    return (
        "---\nlibrary_name: exifclip\ntags: [image-forensics, exif, contrastive]\n---\n\n"
        f"# exifclip model\n\nTrained with `exifclip.training.train` ({origin}).\n\n"
        f"- photos: {result['dataset']['images']} used, skipped {result['dataset']['skipped']}\n"
        f"- steps: {result['step']}, global batch {config.batch_size} patches of {result['patch_size']} px, "
        f"lr {config.lr}, seed {config.seed}, {result['world_size']} process(es)\n"
        f"- final loss: {result['final_loss']}\n\n"
        "The full configuration is in `training_config.json`, the per-step log in `train_log.jsonl`.\n"
    )


class TrainLog:
    """The run's ``train_log.jsonl`` (one JSON object a line); ``path=None`` (other ranks) writes nothing.

    A resumed run keeps the lines up to its checkpoint's step; a fresh run starts an empty file.
    """

    def __init__(self, path: Path | None, start_step: int):
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            if start_step and path.is_file():  # drop what a crashed run logged after its checkpoint
                kept = []
                for line in path.read_text().splitlines():
                    try:
                        if json.loads(line).get("step", 0) <= start_step:
                            kept.append(line)
                    except (json.JSONDecodeError, AttributeError):
                        pass  # a line cut short by the crash
                path.write_text("".join(line + "\n" for line in kept))
            elif not start_step:
                path.write_text("")

    def write(self, record: dict) -> None:
        if self.path is not None:
            with open(self.path, "a") as fh:
                fh.write(json.dumps(record, default=json_default) + "\n")


def check_resumed_data(data: dict, checkpoint: Any, fingerprint: str, readers: list[int]) -> None:
    """Warn when a resumed run cannot repeat the original: other photos (``data["fingerprint"]``), or a shard
    stream read by other processes x workers (``data["readers"]``) than ``readers``."""
    import warnings

    if data.get("fingerprint") not in (None, fingerprint):
        warnings.warn(f"resuming from {checkpoint}: the photos differ from those the checkpoint was trained on "
                      "(files, texts or shards changed); the run will not repeat the original exactly", stacklevel=4)
    saved = data.get("readers")
    if saved is not None and list(saved) != list(readers):
        warnings.warn(f"resuming from {checkpoint}: the shard stream was read by {saved[0]} process(es) x "
                      f"{saved[1]} worker(s), now {readers[0]} x {readers[1]}; each reader skips what it would "
                      "have read, so the photos seen will differ from the original run", stacklevel=4)
