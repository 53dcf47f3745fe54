"""The plugin contract for rewardkit_s2r: a light import, the presets, and the old names."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
import rewardkit_s2r


def test_importing_the_package_and_its_registration_loads_no_torch_transformers_or_trl():
    code = ("import sys, rewardkit_s2r, rewardkit_s2r.plugin, rewardkit_s2r.config; "
            "print(sorted(m for m in ('torch', 'transformers', 'trl') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_presets_hold_the_paper_and_code_settings():
    from rewardkit_s2r.config import grpo_kwargs, hook_kwargs, reward_kwargs, rloo_kwargs

    common = dict(num_generations=4, temperature=0.7, top_p=1.0, learning_rate=5e-7, warmup_steps=5,
                  weight_decay=0.0, max_grad_norm=1.0, epsilon=0.2, num_iterations=1)
    assert grpo_kwargs() == dict(common, beta=0.05, scale_rewards="none", loss_type="grpo")
    assert grpo_kwargs("paper_outcome") == dict(common, beta=0.0, scale_rewards="none",
                                                importance_sampling_level="sequence", loss_type="grpo")
    assert rloo_kwargs() == dict(common, beta=0.01, normalize_advantages=False)
    assert reward_kwargs("code") == {"mode": "code"} and reward_kwargs() == {}
    assert hook_kwargs("code") == dict(baseline="running", min_count=10, context_keys="code", split="code",
                                       weighting="action")
    assert hook_kwargs("paper", baseline="running") == dict(baseline="running", weighting="action", markers="action")
    grpo_kwargs()["beta"] = 1.0  # a caller's edit never reaches the preset
    assert grpo_kwargs()["beta"] == 0.05
    with pytest.raises(ValueError, match=r"unknown S2R GRPOConfig preset 'code'; known: \['paper', 'paper_outcome'\]"):
        grpo_kwargs("code")


def test_old_names_still_resolve():
    from rewardkit_s2r.hooks import S2ROutcomeRLOOHook, S2RProcessAdvantageHook
    from rewardkit_s2r.rewards import S2ROutcomeReward, S2RProcessReward

    assert rewardkit_s2r.S2RProcess is S2RProcessReward and rewardkit_s2r.S2ROutcome is S2ROutcomeReward
    assert rewardkit_s2r.S2RProcessAdvantage is S2RProcessAdvantageHook
    assert rewardkit_s2r.S2ROutcomeRLOO is S2ROutcomeRLOOHook
    sys.modules.pop("rewardkit_s2r.configs", None)
    with pytest.warns(DeprecationWarning, match="rewardkit_s2r.config"):
        configs = importlib.import_module("rewardkit_s2r.configs")
    assert configs.CODE_PROCESS_HOOK["context_keys"] == "code" and configs.PAPER_RLOO_OUTCOME["beta"] == 0.01
    with pytest.raises(AttributeError):
        rewardkit_s2r.no_such_name  # noqa: B018
    # the function parse, not the module of the same name (already imported by the rewards above)
    from rewardkit_s2r import parse

    assert callable(parse) and [a.kind for a in parse("\\boxed{1}").actions] == ["solve"]
