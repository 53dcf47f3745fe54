"""build_trainer: hooks on real TRL trainers, (B, T) advantages, sampler, checkpointed state."""

from __future__ import annotations

import os

import pytest
import torch
from trl import GRPOTrainer, RLOOTrainer

import rewardkit
from rewardkit.testing import CraftedPickle, tiny_grpo_config, tiny_prompt_dataset
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


# -- hook state on disk: exact, and never unpickled beyond tensors --------------------------------------------

def _same(a, b) -> bool:
    """Equal values of equal types all the way down (NaN equals NaN, tensors and arrays bit for bit)."""
    import math

    import numpy as np

    if type(a) is not type(b):
        return False
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and a.device == b.device and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    return a == b


def test_hook_state_round_trips_exactly_without_pickle(tmp_path):
    import random
    from collections import OrderedDict

    import numpy as np

    from rewardkit.trl import read_hook_state
    from rewardkit.trl.hook_state import HOOK_TENSORS_FILE, save_hook_state

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.ones(4, 3)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2)
    rng = np.random.default_rng(7)
    rng.random(3)
    state = {
        "scalars": [None, True, 0, -(2**80), 0.1, 1e-310, float("nan"), float("inf"), -float("inf"), "s", ""],
        "tuples": (1, (2.5, "x"), []), "int_keys": {0: "a", 3: {"b": 1}}, "mixed_keys": {None: 1, (1, 2): 2, 1.5: 3},
        "dollar": {"$": "not a tag", "$tensor": 1},
        "ordered": OrderedDict([("w", torch.arange(4.0)), ("b", torch.zeros(2, dtype=torch.bfloat16))]),
        "tensors": [torch.tensor([1, 2], dtype=torch.int64), torch.tensor(True), torch.randn(2, 3).t()],
        "numpy": [np.arange(5, dtype=np.uint32), np.arange(3, dtype=">f8"), np.array(2.5, dtype=np.float16),
                  np.float32(0.1), np.int64(-3), np.bool_(True)],
        "python_rng": random.getstate(), "numpy_rng": np.random.get_state(), "generator": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
        "model": model.state_dict(),
    }
    save_hook_state({"h": state, "empty": {}}, str(tmp_path))
    assert (tmp_path / HOOK_STATE_FILE).exists() and (tmp_path / HOOK_TENSORS_FILE).exists()
    back = read_hook_state(str(tmp_path))
    assert _same(back["h"], state) and back["empty"] == {}
    # random states restore to the same draws
    random.setstate(back["h"]["python_rng"])
    np.random.set_state(back["h"]["numpy_rng"])
    torch.set_rng_state(back["h"]["torch_rng"])
    draws = (random.random(), np.random.rand(), torch.rand(1).item())
    random.setstate(state["python_rng"])
    np.random.set_state(state["numpy_rng"])
    torch.set_rng_state(state["torch_rng"])
    assert draws == (random.random(), np.random.rand(), torch.rand(1).item())
    restored = np.random.default_rng()
    restored.bit_generator.state = back["h"]["generator"]
    assert restored.random() == rng.random()
    fresh = torch.optim.AdamW(model.parameters(), lr=1e-3)
    fresh.load_state_dict(back["h"]["optimizer"])  # the optimizer accepts what comes back


@pytest.mark.parametrize("bad,where", [({"seen": {1, 2}}, r"state_dict\(\)\['h'\]\['seen'\] is a builtins.set"),
                                       ({"g": [torch.Generator()]}, r"\['g'\]\[0\] is a torch.*get_state"),
                                       ({"f": open}, "builtin_function"),
                                       ({"a": "numpy string array"}, None)])
def test_hook_state_that_cannot_be_saved_is_a_clear_error(tmp_path, bad, where):
    import numpy as np

    from rewardkit.trl import HookStateError
    from rewardkit.trl.hook_state import save_hook_state

    if where is None:
        bad, where = {"a": np.array(["x"])}, "numpy array of dtype <U1"
    with pytest.raises(HookStateError, match=where):
        save_hook_state({"h": bad}, str(tmp_path))
    assert not (tmp_path / HOOK_STATE_FILE).exists()


@pytest.mark.parametrize("target", ["legacy", "tensors"])
def test_crafted_pickle_in_a_checkpoint_does_not_run(tmp_path, target):
    from rewardkit.trl import HookStateError, load_hook_state
    from rewardkit.trl.hook_state import HOOK_TENSORS_FILE, LEGACY_HOOK_STATE_FILE, save_hook_state

    marker = tmp_path / "pwned"
    # the payload is live: an unsafe load runs it
    live = tmp_path / "live.pt"
    torch.save({"x": CraftedPickle(marker)}, live)
    torch.load(live, weights_only=False)
    assert marker.exists()
    marker.unlink()

    ckpt = tmp_path / "checkpoint-2"
    ckpt.mkdir()
    if target == "legacy":
        torch.save({"example.rollout_counter": {"rollouts": CraftedPickle(marker)}}, ckpt / LEGACY_HOOK_STATE_FILE)
    else:
        save_hook_state({"example.rollout_counter": {"rollouts": 2, "t": torch.ones(1)}}, str(ckpt))
        torch.save({"0": CraftedPickle(marker)}, ckpt / HOOK_TENSORS_FILE)
    with pytest.raises(HookStateError, match="will not unpickle it"):
        load_hook_state([rewardkit.get_hook("example.rollout_counter")], str(ckpt))
    assert not marker.exists()


def test_an_older_plain_pickle_checkpoint_still_loads(tmp_path):
    from rewardkit.trl import load_hook_state
    from rewardkit.trl.hook_state import LEGACY_HOOK_STATE_FILE

    torch.save({"example.rollout_counter": {"rollouts": 3}}, tmp_path / LEGACY_HOOK_STATE_FILE)
    hook = rewardkit.get_hook("example.rollout_counter")
    assert load_hook_state([hook], str(tmp_path)) and hook.rollouts == 3
