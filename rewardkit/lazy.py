"""Lazy public names for a package ``__init__``: each name is imported from its module on first use,
so importing the package (and listing plugins) loads no torch, transformers or TRL."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, targets: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``targets`` maps each public name to the module that
    defines it (``"pkg.module"``), or to ``"pkg.module:other"`` for a name exported under another
    name (an old alias). A value is imported once, then kept on the package.

        _LAZY = {"MyReward": "rewardkit_mine.rewards", "OldName": "rewardkit_mine.rewards:MyReward"}
        __all__ = sorted(_LAZY)
        __getattr__ = lazy_exports(__name__, _LAZY)
    """

    def __getattr__(name: str) -> Any:
        target = targets.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attribute = target.partition(":")
        value = getattr(importlib.import_module(module), attribute or name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
