"""One bad plugin never takes the others down: real entry-point distributions, in-process and through
the ``rewardkit`` command as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import rewardkit
from rewardkit import hookimpl, plugins
from rewardkit.builtin_rewards import BoxedFormat
from rewardkit.testing import write_plugin_distribution

GOOD = """
    from rewardkit import hookimpl
    from rewardkit.builtin_rewards import BoxedFormat

    @hookimpl
    def rewardkit_register_rewards(register):
        register("good.boxed", BoxedFormat, kind="outcome")
"""


@pytest.fixture
def dists(tmp_path, monkeypatch):
    """Write real distributions (dist-info + module) into a folder on sys.path; returns the folder."""
    folder = tmp_path / "site"
    folder.mkdir()

    def make(name: str, module_source: str) -> Path:
        return write_plugin_distribution(folder, f"rkiso_{name}", module_source, entry_point=f"iso_{name}")

    monkeypatch.syspath_prepend(str(folder))
    make.folder = folder
    yield make
    for key in [k for k in sys.modules if k.startswith("rkiso_")]:
        del sys.modules[key]
    monkeypatch.undo()
    plugins.reload_plugins()


def cli(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(folder), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "rewardkit.cli", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def infos() -> dict[str, plugins.PluginInfo]:
    return {p.name: p for p in rewardkit.list_plugins()}


def test_sys_exit_at_import_is_a_load_error_and_everything_else_works(dists, tmp_path):
    dists("exiter", "import sys\nsys.exit(3)\n")
    dists("good", GOOD)
    plugins.reload_plugins()
    err = infos()["iso_exiter"].error
    assert err.startswith("SystemExit in import: 3 (the plugin called sys.exit)")
    assert rewardkit.get_reward("good.boxed")(["p"], ["\\boxed{1}"]) == [1.0]
    assert rewardkit.get_reward("math.accuracy").name == "math.accuracy"

    listing = cli(dists.folder, "plugins")
    assert listing.returncode == 1, listing.stderr  # errors are reported, not hidden
    assert "iso_exiter" in listing.stdout and "SystemExit" in listing.stdout and "good.boxed" in listing.stdout
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"prompt": "p", "completion": "\\boxed{2}"}) + "\n")
    scored = cli(dists.folder, "score", str(data), "--reward", "good.boxed")
    assert scored.returncode == 0, scored.stderr
    assert json.loads(scored.stdout)["good.boxed"] == 1.0


def test_sys_exit_in_a_registration_hook_disables_only_that_plugin(dists):
    dists("hookexit", """
        import sys
        from rewardkit import hookimpl
        from rewardkit.builtin_rewards import BoxedFormat

        @hookimpl
        def rewardkit_register_rewards(register):
            register("hookexit.boxed", BoxedFormat, kind="outcome")
            sys.exit("bye")
    """)
    plugins.reload_plugins()
    err = infos()["iso_hookexit"].error
    assert err.startswith("SystemExit in rewardkit_register_rewards: bye")
    assert "hookexit.boxed" not in rewardkit.list_rewards()  # nothing half-registered
    with pytest.raises(plugins.PluginError, match=r"'hookexit\.boxed' is not available: plugin 'iso_hookexit' "
                                                  r"is disabled: SystemExit"):
        rewardkit.get_reward("hookexit.boxed")
    assert "format.boxed" in rewardkit.list_rewards()


def test_misspelt_hook_in_an_installed_plugin_is_reported_not_fatal(dists):
    dists("typo", """
        from rewardkit import hookimpl

        @hookimpl
        def rewardkit_register_reward(register):
            pass
    """)
    dists("good", GOOD)
    plugins.reload_plugins()
    err = infos()["iso_typo"].error
    assert "unknown hook 'rewardkit_register_reward' (did you mean 'rewardkit_register_rewards'?)" in err
    assert plugins.pm.get_plugin("iso_typo") is None
    assert {"good.boxed", "math.accuracy"} <= set(rewardkit.list_rewards())
    proc = cli(dists.folder, "plugins", "--json")
    listed = {p["name"]: p for p in json.loads(proc.stdout)}
    assert "did you mean" in listed["iso_typo"]["error"] and listed["iso_good"]["rewards"] == ["good.boxed"]


def test_builtin_names_win_and_the_clashing_plugin_is_disabled_whole(dists, tmp_path):
    dists("thief", """
        from rewardkit import hookimpl
        from rewardkit.builtin_rewards import BoxedFormat

        @hookimpl
        def rewardkit_register_rewards(register):
            register("thief.own", BoxedFormat, kind="outcome")
            register("math.accuracy", BoxedFormat, kind="outcome")

        @hookimpl
        def rewardkit_register_commands(register):
            register("score", lambda p: None, lambda a: 7)
    """)
    plugins.reload_plugins()
    assert rewardkit.list_rewards()["math.accuracy"].plugin == "rewardkit.builtin_rewards"
    err = infos()["iso_thief"].error
    assert "reward 'math.accuracy' is already registered by plugin 'rewardkit.builtin_rewards' " \
           "(built-in plugins keep their names)" in err
    assert "command 'score' is a command of rewardkit itself" in err
    with pytest.raises(plugins.PluginError, match="iso_thief"):
        rewardkit.get_reward("thief.own")
    # the real score command still runs, with the real math.accuracy
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"prompt": "p", "completion": "\\boxed{2}", "solution": "2"}) + "\n")
    proc = cli(dists.folder, "score", str(data), "--reward", "math.accuracy")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["math.accuracy"] == 1.0


def test_between_two_installed_plugins_the_first_name_keeps_a_clash(dists):
    for name in ("zeta", "alpha"):
        dists(name, f"""
            from rewardkit import hookimpl
            from rewardkit.builtin_rewards import BoxedFormat

            @hookimpl
            def rewardkit_register_hooks(register):
                from rewardkit.trl import TrainerHook
                register("shared.hook", TrainerHook, description="{name}")
                register("{name}.hook", TrainerHook)
        """)
    plugins.reload_plugins()
    hooks = rewardkit.list_hooks()
    assert hooks["shared.hook"].plugin == "iso_alpha" and "alpha.hook" in hooks and "zeta.hook" not in hooks
    assert "trainer hook 'shared.hook' is already registered by plugin 'iso_alpha' (plugin 'iso_alpha' keeps " \
           "it: between third-party plugins the one whose name sorts first keeps a clashing name)" \
           in infos()["iso_zeta"].error
    with pytest.raises(plugins.PluginError, match="zeta"):
        rewardkit.get_hook("zeta.hook")


def test_a_plugin_registering_a_name_twice_or_a_bad_kind_is_disabled(temp_plugin):
    class Twice:
        @hookimpl
        def rewardkit_register_rewards(self, register):
            register("twice.x", BoxedFormat, kind="outcome")
            register("twice.x", BoxedFormat, kind="outcome")

    class BadKind:
        @hookimpl
        def rewardkit_register_rewards(self, register):
            register("badkind.x", BoxedFormat, kind="token")

    temp_plugin(Twice(), "twice")
    temp_plugin(BadKind(), "badkind")
    found = infos()
    assert "registers reward 'twice.x' twice" in found["twice"].error
    assert "kind 'token'" in found["badkind"].error
    assert "twice.x" not in rewardkit.list_rewards() and "format.boxed" in rewardkit.list_rewards()


def test_clashing_plugin_command_and_broken_configure_leave_other_commands_working(dists, tmp_path):
    dists("cmds", """
        from rewardkit import hookimpl

        def configure(parser):
            raise ValueError("bad parser")

        @hookimpl
        def rewardkit_register_commands(register):
            register("iso-broken", configure, lambda a: 0, help="never works")
    """)
    dists("clash", """
        from rewardkit import hookimpl

        @hookimpl
        def rewardkit_register_commands(register):
            register("serve", lambda p: None, lambda a: 0)      # the built-in serve plugin's
            register("iso-extra", lambda p: None, lambda a: 0)
    """)
    help_ = cli(dists.folder, "--help")
    assert help_.returncode == 0 and "score" in help_.stdout and "iso-broken" in help_.stdout
    broken = cli(dists.folder, "iso-broken")
    assert broken.returncode == 1 and "configure() raised ValueError: bad parser" in broken.stderr
    extra = cli(dists.folder, "iso-extra", "--anything")
    assert extra.returncode == 1
    assert "command 'iso-extra' is not available: plugin 'iso_clash' is disabled: command 'serve' is already " \
           "registered by plugin 'rewardkit.serve.plugin'" in extra.stderr
    serve_help = cli(dists.folder, "serve", "--help")
    assert serve_help.returncode == 0 and "--port" in serve_help.stdout


def test_renamed_from_keeps_old_names_working_with_a_warning_and_rejects_bad_ones():
    from rewardkit.hookspecs import hookimpl
    from rewardkit.plugins import PluginError, register_plugin, unregister_plugin
    from rewardkit.reward import FunctionReward

    class Renamer:
        @hookimpl
        def rewardkit_register_rewards(register):
            register("renamer.length", lambda **kw: FunctionReward(lambda t, **_: float(len(t)), **kw),
                     kind="outcome", renamed_from=("length_reward",))

    class BadRename:
        @hookimpl
        def rewardkit_register_rewards(register):
            register("badrename.x", lambda **kw: FunctionReward(lambda t, **_: 0.0, **kw), kind="outcome",
                     renamed_from="badrename.x")

    register_plugin(Renamer, name="renamer")
    register_plugin(BadRename, name="badrename")
    try:
        with pytest.warns(FutureWarning, match="reward 'length_reward' is now called 'renamer.length'"):
            r = rewardkit.get_reward("length_reward")
        assert r.name == "renamer.length" and r(["p"], ["abc"]) == [3.0]
        assert "length_reward" not in rewardkit.list_rewards()
        with pytest.raises(PluginError, match="renamed from 'badrename.x'"):
            rewardkit.get_reward("badrename.x")
    finally:
        unregister_plugin("renamer")
        unregister_plugin("badrename")
