"""Lazy exports: a package names its public objects in one table and imports
their modules on first use, so ``import exifclip`` and ``exifclip --help`` do
not import PyTorch.

Also keeps the flat module paths of exifclip 0.1 importable
(``exifclip.hub`` is now ``exifclip.modeling.hub``) without a file per old name.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["ModuleAliases", "attach"]


def attach(package: str, exports: Mapping[str, str]) -> tuple[Callable, Callable, list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package`` from ``{name: relative module}``.

    Examples
    --------
    >>> getattr_, dir_, all_ = attach("exifclip", {"read_exif": ".exif"})
    >>> all_, getattr_("read_exif").__module__
    (['read_exif'], 'exifclip.exif')
    """
    names = sorted(exports)

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return list(names)

    return __getattr__, __dir__, names


class ModuleAliases(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Import ``old`` as the module ``aliases[old]`` (the same module object)."""

    def __init__(self, aliases: Mapping[str, str]):
        self.aliases = dict(aliases)

    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        if fullname not in self.aliases:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        # The real module keeps its own __name__ and __spec__ (set when it was imported).
        return importlib.import_module(self.aliases[spec.name])

    def exec_module(self, module) -> None:
        pass  # already executed under its real name
