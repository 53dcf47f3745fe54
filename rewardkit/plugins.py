"""Plugin manager: entry points, built-in plugins, load control, listing.

Plugins are found through the ``rewardkit`` entry-point group. ``REWARDKIT_LOAD_PLUGINS=a,b``
limits loading to the named entry points (an empty value loads none); the built-in plugins always
load. A plugin that fails to import is recorded with its error and the others still load.
"""

from __future__ import annotations

import importlib
import os
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy

from rewardkit import hookspecs

REWARD_KINDS = ("outcome", "process", "multi_turn")
DEFAULT_PLUGINS = ("rewardkit.builtin_rewards", "rewardkit.prm.plugin", "rewardkit.serve.plugin")
LOAD_ENV = "REWARDKIT_LOAD_PLUGINS"


class PluginError(RuntimeError):
    """A plugin registered something invalid (duplicate name, bad kind, unknown hook)."""


@dataclass(frozen=True)
class RewardEntry:
    name: str
    factory: Callable[..., Any]
    kind: str
    description: str
    plugin: str


@dataclass(frozen=True)
class HookEntry:
    name: str
    factory: Callable[..., Any]
    description: str
    plugin: str


@dataclass(frozen=True)
class CommandEntry:
    name: str
    configure: Callable[[Any], None]
    run: Callable[[Any], int | None]
    help: str
    plugin: str


@dataclass
class PluginInfo:
    name: str
    version: str | None = None
    rewards: list[str] = field(default_factory=list)
    hooks: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class Registry:
    rewards: dict[str, RewardEntry] = field(default_factory=dict)
    hooks: dict[str, HookEntry] = field(default_factory=dict)
    commands: dict[str, CommandEntry] = field(default_factory=dict)
    plugins: dict[str, PluginInfo] = field(default_factory=dict)


pm = pluggy.PluginManager(hookspecs.PROJECT)
pm.add_hookspecs(hookspecs)

_lock = threading.RLock()
_loaded = False
_load_errors: dict[str, PluginInfo] = {}
_versions: dict[str, str | None] = {}
_registry: Registry | None = None


def _plugin_name(plugin: object) -> str:
    return pm.get_name(plugin) or getattr(plugin, "__name__", repr(plugin))


def _load_entry_points() -> None:
    allowed = os.environ.get(LOAD_ENV)
    allow = None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
    for ep in entry_points(group=hookspecs.PROJECT):
        if allow is not None and ep.name not in allow:
            continue
        if pm.get_plugin(ep.name) is not None:
            continue
        version = ep.dist.version if ep.dist is not None else None
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except Exception as exc:  # a broken plugin must not take the others down
            _load_errors[ep.name] = PluginInfo(
                name=ep.name,
                version=version,
                error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}",
            )
            continue
        _versions[ep.name] = version


def load_plugins() -> None:
    """Load built-in and installed plugins once; safe to call repeatedly."""
    global _loaded
    with _lock:
        if _loaded:
            return
        for modname in DEFAULT_PLUGINS:
            if pm.get_plugin(modname) is None:
                pm.register(importlib.import_module(modname), name=modname)
        _load_entry_points()
        # a typo in a hook name (rewardkit_register_reward) fails here, at start, not silently
        pm.check_pending()
        _loaded = True


def _collect() -> Registry:
    reg = Registry()
    for name, info in _load_errors.items():
        reg.plugins[name] = info
    for plugin in pm.get_plugins():
        pname = _plugin_name(plugin)
        version = _versions[pname] if pname in _versions else (_core_version() if pname in DEFAULT_PLUGINS else None)
        reg.plugins[pname] = PluginInfo(name=pname, version=version)

    def impls(hook_name: str):
        caller = getattr(pm.hook, hook_name)
        return caller.get_hookimpls()

    for impl in impls("rewardkit_register_rewards"):
        pname = impl.plugin_name

        def register(name: str, factory: Callable[..., Any], *, kind: str, description: str = "",
                     _p: str = pname) -> None:
            if kind not in REWARD_KINDS:
                raise PluginError(f"plugin {_p!r} registered reward {name!r} with kind {kind!r}; "
                                  f"expected one of {REWARD_KINDS}")
            if name in reg.rewards:
                raise PluginError(f"reward {name!r} is registered twice: by plugin "
                                  f"{reg.rewards[name].plugin!r} and by plugin {_p!r}")
            reg.rewards[name] = RewardEntry(name, factory, kind, description, _p)
            reg.plugins[_p].rewards.append(name)

        _call_hook(reg, impl, register)

    for impl in impls("rewardkit_register_hooks"):
        pname = impl.plugin_name

        def register_hook(name: str, factory: Callable[..., Any], *, description: str = "",
                          _p: str = pname) -> None:
            if name in reg.hooks:
                raise PluginError(f"trainer hook {name!r} is registered twice: by plugin "
                                  f"{reg.hooks[name].plugin!r} and by plugin {_p!r}")
            reg.hooks[name] = HookEntry(name, factory, description, _p)
            reg.plugins[_p].hooks.append(name)

        _call_hook(reg, impl, register_hook)

    for impl in impls("rewardkit_register_commands"):
        pname = impl.plugin_name

        def register_command(name: str, configure: Callable[[Any], None], run: Callable[[Any], int | None], *,
                             help: str = "", _p: str = pname) -> None:
            if name in reg.commands:
                raise PluginError(f"command {name!r} is registered twice: by plugin "
                                  f"{reg.commands[name].plugin!r} and by plugin {_p!r}")
            reg.commands[name] = CommandEntry(name, configure, run, help, _p)
            reg.plugins[_p].commands.append(name)

        _call_hook(reg, impl, register_command)
    return reg


def _call_hook(reg: Registry, impl: Any, register: Callable[..., Any]) -> None:
    """Run one plugin's hook; a plugin whose hook raises is reported like one that fails to import."""
    try:
        impl.function(register=register)
    except PluginError:
        raise
    except Exception as exc:
        info = reg.plugins[impl.plugin_name]
        info.error = f"{type(exc).__name__} in {impl.function.__name__}: {exc}\n{traceback.format_exc(limit=3)}"


def _core_version() -> str | None:
    from rewardkit import __version__

    return __version__


def registry() -> Registry:
    """The current registry, rebuilt when plugins were registered or unregistered."""
    global _registry
    load_plugins()
    with _lock:
        if _registry is None:
            _registry = _collect()
        return _registry


def invalidate() -> None:
    """Forget the collected registry (call after ``pm.register`` / ``pm.unregister``)."""
    global _registry
    with _lock:
        _registry = None


def register_plugin(plugin: object, name: str | None = None) -> None:
    """Register an in-process plugin object (a module or class with ``@hookimpl`` methods)."""
    load_plugins()
    pm.register(plugin, name=name)
    pm.check_pending()
    invalidate()


def unregister_plugin(name: str) -> None:
    pm.unregister(name=name)
    invalidate()


def list_plugins() -> list[PluginInfo]:
    """Every plugin seen: loaded ones with their rewards and hooks, broken ones with their error."""
    return sorted(registry().plugins.values(), key=lambda p: p.name)


def list_rewards() -> dict[str, RewardEntry]:
    return dict(registry().rewards)


def list_hooks() -> dict[str, HookEntry]:
    return dict(registry().hooks)


def list_commands() -> dict[str, CommandEntry]:
    return dict(registry().commands)


def _unknown(what: str, name: str, known: list[str]) -> KeyError:
    import difflib

    close = difflib.get_close_matches(name, known, n=5, cutoff=0.4)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return KeyError(f"unknown {what} {name!r}.{hint} Registered: {', '.join(sorted(known)) or 'none'}.")


def get_reward(name: str, **params: Any):
    """Build the registered reward ``name`` with ``params``; its ``__name__`` is ``name``."""
    entries = registry().rewards
    if name not in entries:
        raise _unknown("reward", name, list(entries))
    entry = entries[name]
    reward = entry.factory(**params)
    if getattr(reward, "name", None) in (None, ""):
        reward.name = name
    if getattr(reward, "kind", entry.kind) != entry.kind:
        raise PluginError(f"reward {name!r} is registered as kind {entry.kind!r} but its object says "
                          f"{reward.kind!r}")
    return reward


def get_hook(name: str, **params: Any):
    """Build the registered trainer hook ``name`` with ``params``."""
    entries = registry().hooks
    if name not in entries:
        raise _unknown("trainer hook", name, list(entries))
    hook = entries[name].factory(**params)
    if getattr(hook, "name", None) in (None, ""):
        hook.name = name
    return hook


def reload_plugins() -> None:
    """Forget every loaded entry-point plugin and load errors, then load again.

    For tests and notebooks that change ``REWARDKIT_LOAD_PLUGINS`` or install a plugin at run time;
    plugins registered in-process with :func:`register_plugin` stay registered.
    """
    global _loaded
    with _lock:
        for name in list(_versions):
            if pm.get_plugin(name) is not None:
                pm.unregister(name=name)
        _versions.clear()
        _load_errors.clear()
        _loaded = False
        invalidate()
    load_plugins()
