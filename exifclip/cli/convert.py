"""``exifclip convert-official``: the paper's released checkpoint as an exifclip model."""

from __future__ import annotations

__all__ = ["NAME", "register", "run"]

import argparse
import json
from pathlib import Path

from ._options import CommandError
from ._output import prepare_output_folder

NAME = "convert-official"


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        NAME,
        help="convert the paper's released checkpoint (wrapper_75_new.pth) into an exifclip model",
        description="Read the official EXIF-as-Language checkpoint (full training checkpoint or the pruned "
        "photoholmes form) with torch.load(weights_only=True) and save it as a paper-resnet50 model "
        "(config.json, model.safetensors, tokenizer, model card) usable as --model OUT_DIR.",
    )
    p.add_argument("checkpoint", help="wrapper_75_new.pth or its pruned form")
    p.add_argument("out_dir", help="output model directory")
    p.add_argument(
        "--tokenizer",
        default="distilbert-base-uncased",
        help="Hub id, directory or vocab.txt of the text tokenizer; 'none' for the image side only "
        "(default: distilbert-base-uncased, from the local Hub cache when offline)",
    )
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty OUT_DIR")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..modeling.convert import ConversionError, convert_official

    created = not Path(args.out_dir).exists()
    out = prepare_output_folder(args.out_dir, "OUT_DIR")  # before the checkpoint is read
    if any(out.iterdir()) and not args.overwrite:
        raise CommandError(f"{out}: exists and is not empty (pass --overwrite to replace its model files)", 1)
    tokenizer = None if args.tokenizer.lower() == "none" else args.tokenizer
    try:
        model = convert_official(args.checkpoint, out, tokenizer=tokenizer)
    except ConversionError as exc:  # a checkpoint that is not the paper's: the run failed (1), no usage error
        raise CommandError(str(exc), 1) from None
    finally:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # a failed conversion leaves no empty folder behind
    info = {k: v for k, v in model.conversion_info.items() if k != "text_config"}
    print(json.dumps({"out_dir": str(out), "tokenizer": tokenizer is not None, **info}))
    return 0
