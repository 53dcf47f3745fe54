"""The plugin contract: light package import, registered names, old import paths."""

from __future__ import annotations

import subprocess
import sys

import pytest

import rewardkit


def test_importing_the_plugin_and_registering_imports_no_torch():
    # this plugin's registration alone (other plugins may import torch when they load)
    code = ("import sys, rewardkit_reasonflux\n"
            "from rewardkit_reasonflux import plugin\n"
            "names = []\n"
            "plugin.rewardkit_register_rewards(register=lambda name, *a, **k: names.append(name))\n"
            "plugin.rewardkit_register_commands(register=lambda name, *a, **k: names.append(name))\n"
            "assert len(names) == 9, names\n"
            "heavy = [m for m in ('torch', 'transformers', 'trl') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_reward_is_registered_under_the_plugin_name_and_lives_in_rewards():
    from rewardkit_reasonflux import rewards

    mine = {n: e for n, e in rewardkit.list_rewards().items() if e.plugin == "reasonflux"}
    assert sorted(mine) == ["reasonflux.alignment", "reasonflux.coherence", "reasonflux.prm", "reasonflux.quality",
                            "reasonflux.rl", "reasonflux.step", "reasonflux.trajectory"]
    classes = {n: getattr(rewards, n) for n in rewards.__all__}
    r = rewardkit.get_reward("reasonflux.alignment")
    assert type(r) is classes["AlignmentReward"] and r.name == "reasonflux.alignment"


def test_old_names_keep_working():
    import rewardkit_reasonflux
    from rewardkit_reasonflux import config, rewards

    assert rewardkit_reasonflux.ReasonFluxPRM is rewards.ReasonFluxPRMReward
    sys.modules.pop("rewardkit_reasonflux.mixing", None)
    with pytest.warns(DeprecationWarning, match="rewardkit_reasonflux.config"):
        from rewardkit_reasonflux import mixing
    assert mixing.grpo_mix is config.grpo_mix and mixing.ReleasedRLReward is rewards.ReleasedRLReward
    with pytest.raises(AttributeError):
        rewardkit_reasonflux.no_such_name  # noqa: B018
