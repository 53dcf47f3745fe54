"""The plugin registry: real entry points, in-process plugins, broken plugins, load control."""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

import pluggy
import pytest

import rewardkit
from rewardkit import hookimpl, hookspecs, plugins
from rewardkit.reward import Reward, Sample
from rewardkit.testing import write_plugin_distribution

ROOT = Path(__file__).resolve().parents[1]


class Constant(Reward):
    def __init__(self, value: float = 1.0, **kw):
        super().__init__(**kw)
        self.value = value

    def score(self, sample: Sample) -> float:
        return self.value


def test_builtin_rewards_are_registered_through_the_hooks():
    rewards = rewardkit.list_rewards()
    for name in ("math.accuracy", "format.boxed", "format.think", "length.overlong"):
        assert rewards[name].plugin == "rewardkit.builtin_rewards"
        assert rewards[name].kind == "outcome"


def test_installed_entry_point_plugin_is_loaded():
    # examples/plugin-template is installed by the test command as a real distribution
    infos = {p.name: p for p in rewardkit.list_plugins()}
    assert "example" in infos, sorted(infos)
    assert infos["example"].version == "0.1.0"
    assert infos["example"].rewards == ["example.keyword"]
    assert infos["example"].hooks == ["example.rollout_counter"]
    reward = rewardkit.get_reward("example.keyword", keywords=("boxed", "answer"))
    assert reward.__name__ == "example.keyword"
    assert reward(["q", "q"], ["the answer is \\boxed{3}", "nothing"]) == [1.0, 0.0]


def test_hook_rewardkit_register_rewards(temp_plugin):
    class Plugin:
        @hookimpl
        def rewardkit_register_rewards(self, register):
            register("testplug.constant", Constant, kind="outcome", description="always the same")

    temp_plugin(Plugin(), "testplug")
    entry = rewardkit.list_rewards()["testplug.constant"]
    assert (entry.plugin, entry.kind, entry.description) == ("testplug", "outcome", "always the same")
    r = rewardkit.get_reward("testplug.constant", value=0.5)
    assert r.name == "testplug.constant" and r(["p"], ["c"]) == [0.5]


def test_hook_rewardkit_register_hooks(temp_plugin):
    from rewardkit.trl import TrainerHook

    class Marker(TrainerHook):
        def __init__(self, tag: str = "x"):
            self.tag = tag

    class Plugin:
        @hookimpl
        def rewardkit_register_hooks(self, register):
            register("testplug.marker", Marker, description="marks")

    temp_plugin(Plugin(), "testplug-hooks")
    assert rewardkit.list_hooks()["testplug.marker"].plugin == "testplug-hooks"
    hook = rewardkit.get_hook("testplug.marker", tag="y")
    assert isinstance(hook, Marker) and hook.tag == "y" and hook.name == "testplug.marker"


def test_hook_rewardkit_register_commands(temp_plugin, capsys):
    from rewardkit.cli import main

    def configure(parser):
        parser.add_argument("--times", type=int, default=1)

    def run(args):
        print("hello " * args.times)
        return 3

    class Plugin:
        @hookimpl
        def rewardkit_register_commands(self, register):
            register("testplug-hello", configure, run, help="says hello")

    temp_plugin(Plugin(), "testplug-cmd")
    assert plugins.list_commands()["testplug-hello"].plugin == "testplug-cmd"
    assert main(["testplug-hello", "--times", "2"]) == 3
    assert capsys.readouterr().out.strip() == "hello hello"


def test_duplicate_reward_name_disables_the_later_plugin_naming_both(temp_plugin):
    class A:
        @hookimpl
        def rewardkit_register_rewards(self, register):
            register("dup.same", Constant, kind="outcome")

    class B:
        @hookimpl
        def rewardkit_register_rewards(self, register):
            register("dup.same", Constant, kind="outcome")
            register("dup.only-b", Constant, kind="outcome")

    temp_plugin(B(), "plug-b")  # registered first, but "plug-a" sorts first and keeps the name
    temp_plugin(A(), "plug-a")
    rewards = rewardkit.list_rewards()
    assert rewards["dup.same"].plugin == "plug-a" and "dup.only-b" not in rewards
    infos = {p.name: p for p in rewardkit.list_plugins()}
    assert infos["plug-a"].error is None and infos["plug-a"].rewards == ["dup.same"]
    assert re.search(r"dup\.same.*already registered by plugin 'plug-a'.*sorts first", infos["plug-b"].error)
    assert infos["plug-b"].rewards == []
    with pytest.raises(plugins.PluginError, match=r"'dup\.only-b' is not available: plugin 'plug-b' is disabled"):
        rewardkit.get_reward("dup.only-b")
    assert rewardkit.get_reward("math.accuracy").name == "math.accuracy"


def test_bad_kind_disables_the_plugin(temp_plugin):
    class P:
        @hookimpl
        def rewardkit_register_rewards(self, register):
            register("bad.kind", Constant, kind="sequence")

    temp_plugin(P(), "plug-badkind")
    assert "bad.kind" not in rewardkit.list_rewards() and "format.boxed" in rewardkit.list_rewards()
    with pytest.raises(plugins.PluginError, match="kind 'sequence'"):
        rewardkit.get_reward("bad.kind")


def test_unknown_hook_name_fails_at_start():
    class Typo:
        @hookimpl
        def rewardkit_register_reward(self, register):  # missing "s"
            pass

    with pytest.raises(pluggy.PluginValidationError, match="rewardkit_register_reward.*did you mean"):
        plugins.register_plugin(Typo(), name="typo")
    assert plugins.pm.get_plugin("typo") is None  # nothing left registered to break later loads
    assert "math.accuracy" in rewardkit.list_rewards()


def test_unknown_reward_suggests_close_names():
    with pytest.raises(KeyError, match=r"Did you mean: math\.accuracy"):
        rewardkit.get_reward("math.acuracy")


@pytest.fixture
def fake_dists(tmp_path, monkeypatch):
    """Write real distributions (dist-info + module) on sys.path, found by importlib.metadata."""

    def make(name: str, module_source: str) -> None:
        write_plugin_distribution(tmp_path, f"rkfake_{name}", module_source, entry_point=f"fake_{name}")

    monkeypatch.syspath_prepend(str(tmp_path))
    yield make
    for key in [k for k in sys.modules if k.startswith("rkfake_")]:
        del sys.modules[key]
    monkeypatch.undo()
    plugins.reload_plugins()


def test_broken_plugin_is_reported_and_the_others_still_load(fake_dists):
    fake_dists("broken", "raise ImportError('needs a package that is not installed')\n")
    fake_dists("good", """
        from rewardkit import hookimpl
        from rewardkit.builtin_rewards import BoxedFormat

        @hookimpl
        def rewardkit_register_rewards(register):
            register("good.boxed", BoxedFormat, kind="outcome")
    """)
    plugins.reload_plugins()
    infos = {p.name: p for p in rewardkit.list_plugins()}
    assert "needs a package that is not installed" in infos["fake_broken"].error
    assert infos["fake_good"].error is None and infos["fake_good"].version == "0.0.1"
    assert "good.boxed" in rewardkit.list_rewards()
    assert "math.accuracy" in rewardkit.list_rewards()


def test_load_plugins_env_limits_loading(fake_dists, monkeypatch):
    fake_dists("one", """
        from rewardkit import hookimpl
        from rewardkit.builtin_rewards import BoxedFormat

        @hookimpl
        def rewardkit_register_rewards(register):
            register("one.boxed", BoxedFormat, kind="outcome")
    """)
    monkeypatch.setenv("REWARDKIT_LOAD_PLUGINS", "fake_one")
    plugins.reload_plugins()
    names = {p.name for p in rewardkit.list_plugins()}
    assert "fake_one" in names and "example" not in names
    assert "math.accuracy" in rewardkit.list_rewards()  # built-ins always load
    monkeypatch.setenv("REWARDKIT_LOAD_PLUGINS", "")
    plugins.reload_plugins()
    assert {p.name for p in rewardkit.list_plugins()} <= set(plugins.DEFAULT_PLUGINS) | {"rewardkit.prm.plugin",
                                                                                     "rewardkit.serve.plugin"}


def test_every_hook_is_documented_with_its_exact_signature():
    doc = (ROOT / "docs" / "hooks.md").read_text()
    for name, fn in inspect.getmembers(hookspecs, inspect.isfunction):
        if not name.startswith("rewardkit_"):
            continue
        signature = f"{name}({', '.join(inspect.signature(fn).parameters)})"
        assert re.search(rf"^##+ `{re.escape(signature)}`", doc, re.M), f"docs/hooks.md lacks a heading `{signature}`"


def test_every_hook_has_its_own_test():
    source = Path(__file__).read_text()
    specs = [n for n, caller in vars(plugins.pm.hook).items() if getattr(caller, "spec", None) is not None]
    assert len(specs) == 3, specs
    for name in specs:
        if name.startswith("rewardkit_"):
            assert f"def test_hook_{name}(" in source, f"hook {name} has no test_hook_{name}"
