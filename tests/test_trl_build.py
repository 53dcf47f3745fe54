"""build_trainer: hooks on real TRL trainers, (B, T) advantages, sampler, checkpointed state."""

from __future__ import annotations

import os

import pytest
import torch
from trl import GRPOTrainer, RLOOTrainer

import rewardkit
from rewardkit.testing import tiny_grpo_config, tiny_prompt_dataset
from rewardkit.trl import HOOK_STATE_FILE, TrainerHook, TRLCompatError, build_trainer, check_trl_compat


@pytest.mark.parametrize("cls", [GRPOTrainer, RLOOTrainer])
def test_trl_private_methods_we_override_are_unchanged(cls):
    check_trl_compat(cls)


def test_compat_check_fails_loudly_when_trl_changes():
    class Drifted(GRPOTrainer):
        def _generate_and_score_completions(self, inputs, extra):  # a new parameter upstream
            return {}

    with pytest.raises(TRLCompatError, match="_generate_and_score_completions now takes"):
        check_trl_compat(Drifted)


class TokenAdvantages(TrainerHook):
    """Replaces TRL's advantages by a (B, T) tensor: +1 on the first half of each completion."""

    def __init__(self):
        self.seen: list[tuple[int, ...]] = []

    def after_rollout(self, trainer, inputs, output):
        mask = output["completion_mask"]
        adv = torch.zeros_like(mask, dtype=torch.float32)
        adv[:, : mask.shape[1] // 2] = 1.0
        output["advantages"] = adv * mask
        self.seen.append(tuple(output["advantages"].shape))
        return output


def test_after_rollout_can_set_token_level_advantages(tmp_path, tiny_model_path):
    hook = TokenAdvantages()
    trainer = build_trainer(GRPOTrainer, hooks=[hook], model=str(tiny_model_path),
                            reward_funcs=[rewardkit.get_reward("format.boxed")],
                            args=tiny_grpo_config(tmp_path), train_dataset=tiny_prompt_dataset(8))
    assert type(trainer).__name__ == "HookedGRPOTrainer" and trainer.rewardkit_hooks == [hook]
    trainer.train()
    assert len(hook.seen) == 2 and all(len(s) == 2 and s[0] == 4 for s in hook.seen)
    # the loss used them: with all-zero outcome rewards plain GRPO has zero loss, ours does not
    assert any(h.get("loss", 0.0) != 0.0 for h in trainer.state.log_history)


class ReverseOrder(TrainerHook):
    def train_sampler(self, trainer, dataset, default):
        order = list(default)
        return list(reversed(order))


def test_train_sampler_hook_replaces_the_prompt_order(tmp_path, tiny_model_path):
    trainer = build_trainer(GRPOTrainer, hooks=[ReverseOrder()], model=str(tiny_model_path),
                            reward_funcs=[rewardkit.get_reward("format.boxed")],
                            args=tiny_grpo_config(tmp_path), train_dataset=tiny_prompt_dataset(8))
    default = list(GRPOTrainer._get_train_sampler(trainer))
    assert list(trainer._get_train_sampler()) == list(reversed(default))


def test_hooks_by_name_and_unique_names(tmp_path, tiny_model_path):
    with pytest.raises(ValueError, match="unique"):
        build_trainer(GRPOTrainer, hooks=["example.rollout_counter", {"name": "example.rollout_counter"}],
                      model=str(tiny_model_path), reward_funcs=[rewardkit.get_reward("format.boxed")],
                      args=tiny_grpo_config(tmp_path), train_dataset=tiny_prompt_dataset(8))
    with pytest.raises(KeyError, match="unknown trainer hook"):
        build_trainer(GRPOTrainer, hooks=["example.rollout_countr"], model=str(tiny_model_path),
                      reward_funcs=[rewardkit.get_reward("format.boxed")],
                      args=tiny_grpo_config(tmp_path), train_dataset=tiny_prompt_dataset(8))


def test_without_hooks_the_plain_trainer_is_returned(tmp_path, tiny_model_path):
    trainer = build_trainer(GRPOTrainer, model=str(tiny_model_path),
                            reward_funcs=[rewardkit.get_reward("format.boxed")],
                            args=tiny_grpo_config(tmp_path), train_dataset=tiny_prompt_dataset(8))
    assert type(trainer) is GRPOTrainer


def _counter_run(out, model, max_steps, resume=None):
    trainer = build_trainer(GRPOTrainer, hooks=["example.rollout_counter"], model=str(model),
                            reward_funcs=[rewardkit.get_reward("format.boxed")],
                            args=tiny_grpo_config(out, max_steps=max_steps, save_strategy="steps", save_steps=2),
                            train_dataset=tiny_prompt_dataset(16))
    trainer.train(resume_from_checkpoint=resume)
    return trainer.rewardkit_hooks[0]


def test_hook_state_is_checkpointed_and_restored_on_resume(tmp_path, tiny_model_path):
    full = _counter_run(tmp_path / "full", tiny_model_path, 4)
    assert full.rollouts == 4
    part = tmp_path / "part"
    stopped = _counter_run(part, tiny_model_path, 2)  # "killed" after step 2, checkpoint-2 on disk
    assert stopped.rollouts == 2 and os.path.exists(part / "checkpoint-2" / HOOK_STATE_FILE)
    resumed = _counter_run(part, tiny_model_path, 4, resume=True)
    assert resumed.rollouts == full.rollouts == 4
