"""The plugin's shape: importing and registering it loads no torch, every public name resolves,
every registered name is under ``dreamprm.``, and the package has no import cycle."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import rewardkit_dreamprm

from rewardkit import list_hooks, list_rewards

PACKAGE = Path(rewardkit_dreamprm.__file__).parent


def test_import_and_registration_load_no_torch_transformers_or_trl():
    # registration as the registry runs it, on this plugin alone (other plugins may load torch)
    code = ("import sys, json, rewardkit_dreamprm, rewardkit_dreamprm.config\n"
            "from rewardkit_dreamprm import plugin\n"
            "names = []\n"
            "plugin.rewardkit_register_rewards(lambda name, factory, **kw: names.append(name))\n"
            "plugin.rewardkit_register_hooks(lambda name, factory, **kw: names.append(name))\n"
            "assert names == ['dreamprm.prm', 'dreamprm.bilevel'], names\n"
            "cfg = rewardkit_dreamprm.DreamPRMConfig.v15()\n"
            "print(json.dumps(sorted(m for m in ('torch', 'transformers', 'trl') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_every_public_name_resolves_and_unknown_names_fail():
    for name in rewardkit_dreamprm.__all__:
        assert getattr(rewardkit_dreamprm, name) is not None, name
    with pytest.raises(AttributeError, match="NoSuchThing"):
        rewardkit_dreamprm.NoSuchThing  # noqa: B018


def test_registered_names_are_under_the_plugin():
    rewards = [n for n in list_rewards() if "dreamprm" in n]
    hooks = [n for n in list_hooks() if "dreamprm" in n]
    assert rewards == ["dreamprm.prm"] and hooks == ["dreamprm.bilevel"]


def test_no_import_cycles_inside_the_package():
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    graph: dict[str, set[str]] = {}
    for m in modules:
        deps = set()
        for node in ast.walk(ast.parse((PACKAGE / f"{m}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rewardkit_dreamprm"):
                sub = node.module.split(".")[1:] or [a.name for a in node.names]
                deps.update(d for d in sub if d in modules and d != m)
        graph[m] = deps

    def reach(start: str, node: str, seen: set[str]) -> bool:
        for d in graph[node]:
            if d == start or (d not in seen and reach(start, d, seen | {d})):
                return True
        return False

    assert [m for m in sorted(modules) if reach(m, m, {m})] == []


def test_presets_are_built_one_way():
    from dataclasses import asdict

    from rewardkit_dreamprm import DreamPRMConfig, bilevel_kwargs

    assert DreamPRMConfig(**bilevel_kwargs()) == DreamPRMConfig()
    v15 = DreamPRMConfig.v15(lr=1e-4)
    assert v15 == DreamPRMConfig(**bilevel_kwargs("1.5", lr=1e-4)) == DreamPRMConfig.from_dict({"variant": "1.5",
                                                                                                  "lr": 1e-4})
    assert (v15.weighting, v15.unroll_steps, v15.meta_lr_scheduler, v15.lr) == ("instance_table", 1, "cosine", 1e-4)
    assert set(bilevel_kwargs("1.5")) <= set(asdict(DreamPRMConfig()))
    with pytest.raises(ValueError, match="unknown DreamPRM preset '2'"):
        bilevel_kwargs("2")
    with pytest.raises(ValueError, match="unknown DreamPRM config keys"):
        DreamPRMConfig.from_dict({"lrr": 1})
