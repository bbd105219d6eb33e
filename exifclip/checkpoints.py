"""Training run files: checkpoints (exact resume) and the JSONL log.

Weights go through ``save_pretrained`` (safetensors); the optimiser,
scheduler, RNG and data position are plain tensors and dicts written with
``torch.save`` and read back only with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

__all__ = ["latest_checkpoint", "load_training_state", "STATE_FILE"]

STATE_FILE = "training_state.pt"
_STATE_FILE = STATE_FILE


def _json_default(value: Any) -> Any:
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
            and (p / _STATE_FILE).is_file()]
    return max(done, key=lambda p: int(p.name[5:])) if done else None


def load_training_state(checkpoint: str | os.PathLike) -> dict:
    """The plain state of a checkpoint, read with ``torch.load(weights_only=True)``."""
    return torch.load(Path(checkpoint) / _STATE_FILE, map_location="cpu", weights_only=True)


def _save_checkpoint(out_dir: Path, step: int, model, optimizer, scheduler, state: dict, keep: int) -> Path:
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
                "rng": rng}, tmp / _STATE_FILE)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    olds = sorted((p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and p.name[5:].isdigit()),
                  key=lambda p: int(p.name[5:]))
    for old in olds[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


class _Log:
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
                fh.write(json.dumps(record, default=_json_default) + "\n")
