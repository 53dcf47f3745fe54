"""The pluggy hook specifications of rewardkit, and nothing else.

Every hook receives a ``register`` callback and returns nothing, so plugins stay declarative and
the host can add keyword options later without breaking them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT = "rewardkit"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def rewardkit_register_rewards(register: Callable[..., Any]) -> None:
    """Register reward factories: ``register(name, factory, *, kind, description="")``.

    ``name`` is namespaced ``<plugin>.<thing>``; ``factory(**params)`` returns a
    :class:`rewardkit.Reward`; ``kind`` is ``"outcome"``, ``"process"`` or ``"multi_turn"``.
    """


@hookspec
def rewardkit_register_hooks(register: Callable[..., Any]) -> None:
    """Register trainer hooks: ``register(name, factory, *, description="")``.

    ``factory(**params)`` returns a :class:`rewardkit.trl.TrainerHook`.
    """


@hookspec
def rewardkit_register_commands(register: Callable[..., Any]) -> None:
    """Register ``rewardkit`` CLI subcommands: ``register(name, configure, run, *, help="")``.

    ``configure(parser)`` adds arguments to an ``argparse.ArgumentParser``; ``run(args)`` does the
    work and returns the exit code (``None`` counts as 0).
    """
