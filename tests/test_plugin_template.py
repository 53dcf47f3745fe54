"""examples/plugin-template follows the plugin contract exactly (it is installed as a real
distribution by the set-up): registration-only plugin.py, no heavy import, rewards that share
per-row details, a hook that reads them and logs through the trainer."""

from __future__ import annotations

import os
import subprocess
import sys

import rewardkit
from rewardkit.testing import tiny_grpo_config, tiny_prompt_dataset
from rewardkit.trl import build_trainer


def test_importing_the_plugin_and_listing_it_imports_no_torch_transformers_or_trl():
    code = ("import sys, rewardkit, rewardkit_example, rewardkit_example.plugin; rewardkit.list_rewards(); "
            "heavy = sorted(m for m in ('torch', 'transformers', 'trl') if m in sys.modules); print(heavy)")
    env = {**os.environ, "REWARDKIT_LOAD_PLUGINS": "example"}  # the other plugins have their own such test
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip() == "[]"


def test_layout_is_the_contract():
    import rewardkit_example
    from rewardkit_example import config, hooks, plugin, rewards

    assert rewardkit_example.KeywordReward is rewards.KeywordReward
    assert rewardkit_example.RolloutCounterHook is hooks.RolloutCounterHook
    # plugin.py defines no classes: registration only
    assert not [v for v in vars(plugin).values() if isinstance(v, type) and v.__module__ == plugin.__name__]
    assert config.grpo_kwargs(num_generations=2) == {"max_completion_length": 32, "num_generations": 2}


def test_reward_shares_details_and_the_hook_logs_through_the_trainer(tmp_path, tiny_model_path):
    from trl import GRPOTrainer

    reward = rewardkit.get_reward("example.keyword", keywords=("the", "zzz-never"))
    assert reward(["p", "p"], ["The end", "nothing"]) == [0.5, 0.0]
    assert reward.last_call.detail("matched") == [["the"], []]
    assert reward.last_call.metrics == {"example/example.keyword/matched_mean": 0.5}

    trainer = build_trainer(GRPOTrainer, hooks=["example.rollout_counter"], model=str(tiny_model_path),
                            reward_funcs=[reward], args=tiny_grpo_config(tmp_path, max_steps=2),
                            train_dataset=tiny_prompt_dataset(8))
    trainer.train()
    hook = trainer.rewardkit_hooks[0]
    logged = [h for h in trainer.state.log_history if "example/rollouts" in h]
    assert [h["example/rollouts"] for h in logged] == [1.0, 2.0]
    assert logged[-1]["example/unmatched"] == hook.unmatched
    assert all("example/example.keyword/matched_mean" in h for h in logged)
