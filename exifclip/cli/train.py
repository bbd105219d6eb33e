"""``exifclip train``: contrastive training, its flags made from :class:`~exifclip.training.config.TrainingConfig`.

Every field of ``TrainingConfig`` with a ``help`` in its metadata is a flag
(``out_dir`` is ``--out`` by its ``"flag"``); a flag not given keeps the value
of ``--config`` or of the resumed run. Adding a field with metadata adds its flag.
"""

from __future__ import annotations

__all__ = ["NAME", "register", "run"]

import argparse
import dataclasses
import json
import os
import types
import typing
from pathlib import Path

from ._options import error, error_for
from ._output import prepare_output_folder

NAME = "train"

_CLI_KEYS = ("flag", "exclusive")  # field metadata read here; the other keys go to add_argument


def _config_class(config_class: type | None) -> type:
    if config_class is not None:
        return config_class
    from ..training.config import TrainingConfig  # numpy and PIL, no torch

    return TrainingConfig


def flag_fields(config_class: type | None = None) -> list[dataclasses.Field]:
    """The fields of ``TrainingConfig`` (or a subclass) that are flags: those with a ``help``."""
    return [f for f in dataclasses.fields(_config_class(config_class)) if "help" in f.metadata]


def flag_name(f: dataclasses.Field) -> str:
    """``--batch-size`` for ``batch_size``, or the field's own ``"flag"``."""
    return f.metadata.get("flag", "--" + f.name.replace("_", "-"))


def _value_type(hint) -> type:
    """int, float or bool for such an annotation (also ``int | None``); str otherwise."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = options[0] if len(options) == 1 else str
    return hint if hint in (int, float, bool) else str


def _argument(f: dataclasses.Field, hint) -> dict:
    """The keywords of ``add_argument`` for one field."""
    kwargs = {k: v for k, v in f.metadata.items() if k not in _CLI_KEYS}
    help_text = kwargs["help"].replace("%", "%%")
    default = f.default
    if default not in (None, dataclasses.MISSING) and not isinstance(default, bool) and "default" not in help_text:
        help_text += f" (default: {default})"
    kwargs.update(dest=f.name, default=None, help=help_text)  # None: not given, the config's value stays
    if "action" not in kwargs:
        value_type = _value_type(hint)
        if value_type is bool:
            kwargs["action"] = "store_true"
        else:
            kwargs.setdefault("type", value_type)
            if "choices" not in kwargs:  # --out OUT, not --out OUT_DIR
                kwargs.setdefault("metavar", flag_name(f).lstrip("-").replace("-", "_").upper())
    return kwargs


def exclusive_groups(config_class: type | None = None) -> dict[str, list[str]]:
    """Group name -> the fields of which at most one flag may be given (metadata ``"exclusive"``)."""
    groups: dict[str, list[str]] = {}
    for f in flag_fields(config_class):
        if "exclusive" in f.metadata:
            groups.setdefault(f.metadata["exclusive"], []).append(f.name)
    return groups


def add_config_flags(parser: argparse.ArgumentParser, config_class: type | None = None) -> None:
    """Add a flag for each flag-bearing ``TrainingConfig`` field (flags not given parse as ``None``)."""
    config_class = _config_class(config_class)
    hints = typing.get_type_hints(config_class)
    groups = {name: parser.add_mutually_exclusive_group() for name in exclusive_groups(config_class)}
    for f in flag_fields(config_class):
        target = groups.get(f.metadata.get("exclusive"), parser)
        target.add_argument(flag_name(f), **_argument(f, hints[f.name]))


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        NAME,
        help="train or fine-tune a model on photos and their own EXIF (torchrun for many GPUs)",
        description="Contrastive training on photos and their EXIF (exifclip.training.train). Flags not given "
        "keep the value of --config (a TrainingConfig JSON file) or, with --resume, of the run's own "
        "OUT/training_config.json. Several GPUs: torchrun --nproc-per-node N -m exifclip.cli train ...",
    )
    p.add_argument("--config", help="a TrainingConfig JSON file (flags override it)")
    add_config_flags(p)
    p.add_argument("--eval-hook", metavar="MODULE:FUNCTION", help="eval_hook(model, step) -> dict, logged")
    p.set_defaults(func=run)
    return p


def _images(paths: list[str]):
    """One path as given; several: directories expanded to their photos."""
    from ..training.data import find_images

    if len(paths) == 1:
        return paths[0]
    return [f for p in paths for f in (find_images(p) if Path(p).is_dir() else [p])]


# Flag values that mean something else in the config.
_FROM_FLAG = {
    "images": _images,
    "clip_grad_norm": lambda value: None if value == 0 else value,
    "augment": lambda value: json.loads(value) if value.strip().startswith("{") else True,
}


def config_from_args(args: argparse.Namespace):
    """The run's ``TrainingConfig``: ``--config``, the resumed run's or the default, changed by the flags."""
    from ..training.config import TrainingConfig

    saved = Path(args.out_dir) / "training_config.json" if args.out_dir else None
    if args.config:
        config = TrainingConfig.from_json(args.config)
    elif args.resume and saved is not None and saved.is_file():
        config = TrainingConfig.from_json(saved)  # resume as it was run
    else:
        config = TrainingConfig()
    changes = {f.name: getattr(args, f.name) for f in flag_fields() if getattr(args, f.name) is not None}
    for name, convert in _FROM_FLAG.items():
        if name in changes:
            changes[name] = convert(changes[name])
    for fields in exclusive_groups().values():  # --arch clears the config's init, and the other way round
        if any(name in changes for name in fields):
            changes.update({name: None for name in fields if name not in changes})
    config = config.replace(**changes)
    if not config.out_dir:
        raise ValueError("--out DIR is required (the model, checkpoints and log are written there)")
    return config


def _load_eval_hook(spec: str):
    import importlib

    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"--eval-hook must look like 'package.module:function', got {spec!r}")
    try:
        hook = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"--eval-hook {spec}: cannot import it ({exc})") from None
    if not callable(hook):
        raise ValueError(f"--eval-hook {spec}: not callable")
    return hook


def _summary(result, config) -> dict:
    summary = {
        "out": config.out_dir,
        "step": result.step,
        "final_loss": result.losses[-1] if result.losses else None,
        "photos": result.dataset["images"],
        "skipped": result.dataset["skipped"],
        "patches_per_s": round(result.patches_per_s, 2) if result.patches_per_s == result.patches_per_s else None,
        "world_size": result.world_size,
        "resumed_from": result.resumed_from,
    }
    if result.evals:
        summary["last_eval"] = result.evals[-1]
    return summary


def run(args: argparse.Namespace) -> int:
    from ..training.loop import train

    config = config_from_args(args)  # ValueError, FileNotFoundError: usage errors (exit 2, in main)
    hook = _load_eval_hook(args.eval_hook) if args.eval_hook else None
    if hook is not None and not config.eval_every:
        config = config.replace(eval_every=max(config.steps // 10, 1))
    config.validate()
    prepare_output_folder(config.out_dir)  # a mistake in --out: one line, before any work
    result = train(config, eval_hook=hook)
    unreadable = ("unreadable", "decode_failed")
    failed = [(name, detail) for name, reason, detail in result.skipped_files if reason in unreadable]
    for name, detail in failed[:20]:
        error_for(name, detail)
    if len(failed) > 20:
        error(f"... and {len(failed) - 20} more unreadable photos; see {Path(config.out_dir) / 'skipped_files.csv'}")
    if result.world_size == 1 or int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(_summary(result, config)))
    return 1 if failed else 0
