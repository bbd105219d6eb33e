"""The ``exifclip`` command line: a thin entry point over one module per command.

Every result is a file or JSON on stdout; every failure is one line on
stderr naming the file, and the other files are still processed; every
warning is one line naming its file (each text once). Where results go
(``--out``) is checked before any work. The exit
status is 0 when every input succeeded, 1 when some failed, 2 on usage errors
(bad flags or settings, a model or file not found), 130 when interrupted (Ctrl-C).

Every output file is written atomically (:mod:`exifclip._atomic`): a killed
run leaves whole files or none. ``localize`` and ``embed`` save each image's
work as they go and take ``--resume`` to skip what an earlier run finished
(:mod:`exifclip.cli._resume`).

A command is a module with ``register(subparsers)`` (adds its parser, with
``set_defaults(func=run)``) and ``run(args) -> int``, listed in
:data:`COMMANDS`. Building the parser imports no heavy library (torch,
transformers, scikit-learn): ``--help`` and usage errors answer at once; each
``run`` imports what it needs.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from . import convert, embed, evaluate, exif, localize, report, shard, train
from ._options import CommandError, error, warnings_as_lines

__all__ = ["COMMANDS", "build_parser", "main"]

#: The command modules, in the order ``exifclip --help`` lists them.
COMMANDS = (exif, embed, localize, report, evaluate, shard, train, convert)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``exifclip`` command."""
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="exifclip", description="Camera-trace embeddings learnt from EXIF as language."
    )
    parser.add_argument("--version", action="version", version=f"exifclip {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    Failures that end a command are mapped to exit statuses here, once:
    :class:`~exifclip.cli._options.CommandError` carries its own; a
    ``ValueError`` or ``FileNotFoundError`` (bad settings, a model not found:
    ``ModelNotFoundError`` is one) is a usage error, 2; Ctrl-C is 130. Each is
    one line on stderr, no traceback; so is an option whose optional
    dependency is not installed (the message says what to install), 2. Failures of single inputs are reported by
    the commands, which go on with the others.
    """
    args = build_parser().parse_args(argv)
    try:
        with warnings_as_lines():  # one line each, naming the file; never Python's raw format
            return int(args.func(args))
    except CommandError as exc:
        error(str(exc))
        return exc.status
    except (ValueError, FileNotFoundError) as exc:
        error(str(exc))
        return 2
    except ImportError as exc:
        if "pip install" not in str(exc):  # not an optional extra the user chose: a bug, with its traceback
            raise
        error(str(exc))
        return 2
    except KeyboardInterrupt:
        error("interrupted")
        return 130
