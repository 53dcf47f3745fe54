"""Plugin manager: entry points, built-in plugins, load control, listing.

Plugins are found through the ``rewardkit`` entry-point group. ``REWARDKIT_LOAD_PLUGINS=a,b``
limits loading to the named entry points (an empty value loads none); the built-in plugins always
load.

One plugin cannot take the others down:

* a plugin that fails to import, or whose registration hook fails (any exception, ``SystemExit``
  included; only ``KeyboardInterrupt`` goes through), is recorded with its error;
* an entry-point plugin implementing a hook rewardkit does not have (a misspelt
  ``rewardkit_register_reward``) is unregistered and recorded;
* a plugin that registers something invalid (a bad kind, a name twice) or a name another plugin
  already has is disabled as a whole: none of its rewards, hooks or commands are registered, and
  asking for one of them raises :class:`PluginError` with the reason. Built-in plugins keep their
  names; between two third-party plugins the one whose name sorts first keeps the name.

Every such error is listed by ``rewardkit plugins`` (and :func:`list_plugins`).
"""

from __future__ import annotations

import difflib
import importlib
import os
import threading
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy

from rewardkit import hookspecs

REWARD_KINDS = ("outcome", "process", "multi_turn")
DEFAULT_PLUGINS = ("rewardkit.builtin_rewards", "rewardkit.prm.plugin", "rewardkit.serve.plugin",
                   "rewardkit.integrations.plugin")
# subcommands of the ``rewardkit`` command itself (rewardkit/cli.py); no plugin may take them
CORE_COMMANDS = ("plugins", "score")
LOAD_ENV = "REWARDKIT_LOAD_PLUGINS"


class PluginError(RuntimeError):
    """A plugin registered something invalid (duplicate name, bad kind, unknown hook), or a
    registered thing that was asked for belongs to a plugin disabled for such a reason."""


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
    # ("reward" | "trainer hook" | "command", name) -> why it is not available
    unavailable: dict[tuple[str, str], str] = field(default_factory=dict)
    # ("reward" | "trainer hook", old name) -> the current name; asking for the old one warns
    renamed: dict[tuple[str, str], str] = field(default_factory=dict)


pm = pluggy.PluginManager(hookspecs.PROJECT)
pm.add_hookspecs(hookspecs)

_lock = threading.RLock()
_loaded = False
_load_errors: dict[str, PluginInfo] = {}
_versions: dict[str, str | None] = {}
_registry: Registry | None = None

REGISTER_HOOKS = ("rewardkit_register_rewards", "rewardkit_register_hooks", "rewardkit_register_commands")


def _describe(exc: BaseException, where: str = "") -> str:
    """First line: what went wrong; then a short traceback for the plugin's author."""
    head = f"{type(exc).__name__}{' in ' + where if where else ''}: {exc}"
    if isinstance(exc, SystemExit):
        head += " (the plugin called sys.exit)"
    return f"{head}\n{''.join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=3))}"


def unknown_hooks(plugin: object) -> list[str]:
    """Hooks ``plugin`` implements (not marked optional) that rewardkit has no specification for."""
    names = []
    for caller in pm.get_hookcallers(plugin) or []:
        if not caller.has_spec() and any(i.plugin is plugin and not i.optionalhook for i in caller.get_hookimpls()):
            names.append(caller.name)
    return sorted(names)


def _unknown_hooks_message(names: list[str]) -> str:
    parts = []
    for name in names:
        close = difflib.get_close_matches(name, REGISTER_HOOKS, n=1)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return f"implements unknown hook {', '.join(parts)}; rewardkit's hooks are {', '.join(REGISTER_HOOKS)}"


def _load_entry_points() -> None:
    allowed = os.environ.get(LOAD_ENV)
    allow = None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
    for ep in entry_points(group=hookspecs.PROJECT):
        if allow is not None and ep.name not in allow:
            continue
        if pm.get_plugin(ep.name) is not None or ep.name in _load_errors:
            continue
        version = ep.dist.version if ep.dist is not None else None
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # SystemExit too: a broken plugin must not take the others down
            _load_errors[ep.name] = PluginInfo(name=ep.name, version=version, error=_describe(exc, "import"))
            continue
        unknown = unknown_hooks(plugin)
        if unknown:
            pm.unregister(plugin)
            _load_errors[ep.name] = PluginInfo(
                name=ep.name, version=version, error=f"disabled: {_unknown_hooks_message(unknown)}")
            continue
        _versions[ep.name] = version


def load_plugins() -> None:
    """Load built-in and installed plugins once; safe to call repeatedly."""
    global _loaded
    with _lock:
        if _loaded:
            return
        for modname in DEFAULT_PLUGINS:
            if pm.get_plugin(modname) is None and modname not in _load_errors:
                try:
                    pm.register(importlib.import_module(modname), name=modname)
                except KeyboardInterrupt:
                    raise
                except BaseException as exc:
                    _load_errors[modname] = PluginInfo(name=modname, version=_core_version(),
                                                       error=_describe(exc, "import"))
        _load_entry_points()
        _loaded = True


@dataclass
class _Staged:
    """What one plugin asked to register, before it is checked against the others."""

    rewards: list[RewardEntry] = field(default_factory=list)
    hooks: list[HookEntry] = field(default_factory=list)
    commands: list[CommandEntry] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    error: str | None = None
    offered: list[tuple[str, str]] = field(default_factory=list)  # (what, name) of every register call
    renamed: list[tuple[str, str, str]] = field(default_factory=list)  # (what, old name, new name)


def _stage(pname: str, impls: dict[str, list[Any]]) -> _Staged:
    """Run one plugin's registration hooks into a staging area; nothing is registered yet."""
    st = _Staged()

    def twice(what: str, name: str, seen: list[Any]) -> None:
        if any(e.name == name for e in seen):
            st.problems.append(f"registers {what} {name!r} twice")

    def check_name(what: str, name: Any, target: Any, target_what: str) -> bool:
        if isinstance(name, str) and (what, name) not in st.offered:
            st.offered.append((what, name))
        if not isinstance(name, str) or not name.strip():
            st.problems.append(f"registers a {what} with name {name!r} (expected a non-empty string)")
            return False
        if not callable(target):
            st.problems.append(f"registers {what} {name!r} with a {target_what} that is not callable: {target!r}")
            return False
        return True

    def old_names(what: str, name: str, renamed_from: str | tuple[str, ...]) -> None:
        for old in (renamed_from,) if isinstance(renamed_from, str) else renamed_from:
            if not isinstance(old, str) or not old or old == name:
                st.problems.append(f"registers {what} {name!r} renamed from {old!r} (expected another non-empty name)")
            else:
                st.renamed.append((what, old, name))

    def register_reward(name: str, factory: Callable[..., Any], *, kind: str, description: str = "",
                        renamed_from: str | tuple[str, ...] = ()) -> None:
        if not check_name("reward", name, factory, "factory"):
            return
        if kind not in REWARD_KINDS:
            st.problems.append(f"registers reward {name!r} with kind {kind!r}; expected one of {REWARD_KINDS}")
            return
        twice("reward", name, st.rewards)
        st.rewards.append(RewardEntry(name, factory, kind, description, pname))
        old_names("reward", name, renamed_from)

    def register_hook(name: str, factory: Callable[..., Any], *, description: str = "",
                      renamed_from: str | tuple[str, ...] = ()) -> None:
        if check_name("trainer hook", name, factory, "factory"):
            twice("trainer hook", name, st.hooks)
            st.hooks.append(HookEntry(name, factory, description, pname))
            old_names("trainer hook", name, renamed_from)

    def register_command(name: str, configure: Callable[[Any], None], run: Callable[[Any], int | None], *,
                         help: str = "") -> None:
        if check_name("command", name, configure, "configure function") and \
                check_name("command", name, run, "run function"):
            twice("command", name, st.commands)
            st.commands.append(CommandEntry(name, configure, run, help, pname))

    callbacks = {"rewardkit_register_rewards": register_reward, "rewardkit_register_hooks": register_hook,
                 "rewardkit_register_commands": register_command}
    for hook_name in REGISTER_HOOKS:
        for impl in impls.get(hook_name, []):
            try:
                impl.function(register=callbacks[hook_name])
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # SystemExit too
                st.error = _describe(exc, hook_name)
                return st
    return st


def _plugin_order(names: list[str]) -> list[str]:
    """Built-ins first (they keep their names), then the others by name (the first keeps a name)."""
    return [n for n in DEFAULT_PLUGINS if n in names] + sorted(n for n in names if n not in DEFAULT_PLUGINS)


def _collect() -> Registry:
    reg = Registry()
    for name, info in _load_errors.items():
        reg.plugins[name] = PluginInfo(name=info.name, version=info.version, error=info.error)
    impls: dict[str, dict[str, list[Any]]] = {}
    for plugin in pm.get_plugins():
        pname = pm.get_name(plugin) or repr(plugin)
        version = _versions[pname] if pname in _versions else (_core_version() if pname in DEFAULT_PLUGINS else None)
        reg.plugins[pname] = PluginInfo(name=pname, version=version)
        impls[pname] = {}
    for hook_name in REGISTER_HOOKS:
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            impls[impl.plugin_name].setdefault(hook_name, []).append(impl)

    for pname in _plugin_order(list(impls)):
        st = _stage(pname, impls[pname])
        problems = list(st.problems)
        if st.error is None:
            problems += _clashes(reg, pname, st)
        if st.error is None and not problems:
            for r in st.rewards:
                reg.rewards[r.name] = r
            for h in st.hooks:
                reg.hooks[h.name] = h
            for c in st.commands:
                reg.commands[c.name] = c
            for what, old, new in st.renamed:
                reg.renamed.setdefault((what, old), new)
            info = reg.plugins[pname]
            info.rewards, info.hooks, info.commands = ([e.name for e in st.rewards], [e.name for e in st.hooks],
                                                       [e.name for e in st.commands])
            continue
        reason = st.error or "; ".join(problems)
        offered = ", ".join(f"{what} {name!r}" for what, name in st.offered)
        reg.plugins[pname].error = (f"disabled: {reason}" if st.error is None else reason) + \
            (f"\nnot registered: {offered}" if offered else "")
        first_line = reason.splitlines()[0]
        for what, name in st.offered:
            reg.unavailable.setdefault((what, name), f"plugin {pname!r} is disabled: {first_line}")
    return reg


def _clashes(reg: Registry, pname: str, st: _Staged) -> list[str]:
    def why(owner: str) -> str:
        if owner in DEFAULT_PLUGINS:
            return "built-in plugins keep their names"
        return (f"plugin {owner!r} keeps it: between third-party plugins the one whose name sorts first "
                "keeps a clashing name")

    out = []
    for what, entries, taken in (("reward", st.rewards, reg.rewards), ("trainer hook", st.hooks, reg.hooks),
                                 ("command", st.commands, reg.commands)):
        for e in entries:
            if e.name in taken:
                owner = taken[e.name].plugin
                out.append(f"{what} {e.name!r} is already registered by plugin {owner!r} ({why(owner)})")
            elif what == "command" and e.name in CORE_COMMANDS:
                out.append(f"command {e.name!r} is a command of rewardkit itself")
    return out


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
    """Register an in-process plugin object (a module or class with ``@hookimpl`` methods).

    A hook name rewardkit does not have raises ``pluggy.PluginValidationError`` here and leaves
    nothing registered; clashes with other plugins are handled like an installed plugin's.
    """
    load_plugins()
    pm.register(plugin, name=name)
    unknown = unknown_hooks(plugin)
    if unknown:
        pm.unregister(plugin)
        raise pluggy.PluginValidationError(plugin, f"plugin {name or plugin!r} {_unknown_hooks_message(unknown)}")
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


def unavailable_commands() -> dict[str, str]:
    """Commands of disabled plugins that no other plugin provides, with the reason."""
    reg = registry()
    return {name: why for (what, name), why in reg.unavailable.items()
            if what == "command" and name not in reg.commands and name not in CORE_COMMANDS}


def _lookup(what: str, name: str, entries: dict[str, Any]) -> Any:
    if name in entries:
        return entries[name]
    reg = registry()
    new = reg.renamed.get((what, name))
    if new is not None and new in entries:
        warnings.warn(f"{what} {name!r} is now called {new!r}; the old name will be removed in a later release",
                      FutureWarning, stacklevel=3)
        return entries[new]
    if (what, name) in reg.unavailable:
        raise PluginError(f"{what} {name!r} is not available: {reg.unavailable[(what, name)]} "
                          "(run `rewardkit plugins` for details)")
    close = difflib.get_close_matches(name, list(entries), n=5, cutoff=0.4)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    broken = sorted(p.name for p in reg.plugins.values() if p.error)
    if broken:
        hint += f" Plugins with errors (see `rewardkit plugins`): {', '.join(broken)}."
    raise KeyError(f"unknown {what} {name!r}.{hint} Registered: {', '.join(sorted(entries)) or 'none'}.")


def get_reward(name: str, **params: Any):
    """Build the registered reward ``name`` with ``params``; its ``__name__`` is ``name``."""
    entry = _lookup("reward", name, registry().rewards)
    reward = entry.factory(**params)
    if getattr(reward, "name", None) in (None, ""):
        reward.name = entry.name
    if getattr(reward, "kind", entry.kind) != entry.kind:
        raise PluginError(f"reward {entry.name!r} is registered as kind {entry.kind!r} but its object says "
                          f"{reward.kind!r}")
    return reward


def get_hook(name: str, **params: Any):
    """Build the registered trainer hook ``name`` with ``params``."""
    entry = _lookup("trainer hook", name, registry().hooks)
    hook = entry.factory(**params)
    if getattr(hook, "name", None) in (None, ""):
        hook.name = entry.name
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
