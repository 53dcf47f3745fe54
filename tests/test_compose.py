"""Composition into real TRL trainers with the tiny model."""

from __future__ import annotations

import pytest
from trl import GRPOTrainer, RLOOConfig, RLOOTrainer

import rewardkit
from rewardkit import Reward, Sample, compose, compose_from_yaml, hookimpl
from rewardkit.testing import tiny_grpo_config, tiny_prompt_dataset


class LengthFraction(Reward):
    """len(text) / cap: varies across samples, so TRL's logged means are informative."""

    def __init__(self, cap: int = 64, **kw):
        super().__init__(**kw)
        self.cap = cap

    def score(self, sample: Sample) -> float:
        return min(len(sample.text) / self.cap, 1.0)


class Plugin:
    @hookimpl
    def rewardkit_register_rewards(self, register):
        register("testcomp.length", LengthFraction, kind="outcome")


@pytest.fixture
def length_plugin(temp_plugin):
    return temp_plugin(Plugin(), "testcomp")


def test_compose_builds_named_weighted_rewards(length_plugin):
    rs = compose({"math.accuracy": 1.0, "testcomp.length": {"weight": 0.25, "cap": 10},
                  "short": {"reward": "testcomp.length", "weight": -0.5, "cap": 5}})
    assert rs.names == ["math.accuracy", "testcomp.length", "short"]
    assert rs.weights == [1.0, 0.25, -0.5]
    assert rs.grpo_kwargs() == {"reward_weights": [1.0, 0.25, -0.5]}
    assert [f.__name__ for f in rs.funcs] == rs.names
    assert rs["short"].cap == 5
    scores = rs.score(["q", "q"], ["\\boxed{3}", "abcdefghij"], solution=["3", "4"])
    assert scores["testcomp.length"] == [0.9, 1.0]
    assert scores["total"] == [pytest.approx(1.0 + 0.225 - 0.5), pytest.approx(0.25 - 0.5)]


def test_compose_errors():
    with pytest.raises(KeyError, match="Did you mean: format.boxed"):
        compose({"format.boxd": 1.0})
    with pytest.raises(TypeError, match="must be a weight"):
        compose({"format.boxed": "heavy"})
    with pytest.raises(ValueError, match="non-empty"):
        compose({})
    with pytest.raises(TypeError, match="unexpected keyword"):
        compose({"format.boxed": {"weight": 1.0, "no_such_param": 3}})


def test_compose_from_yaml(tmp_path, length_plugin):
    spec = tmp_path / "rewards.yaml"
    spec.write_text("rewards:\n  format.boxed: 0.5\n  testcomp.length:\n    weight: 2\n    cap: 8\n")
    rs = compose_from_yaml(spec)
    assert rs.names == ["format.boxed", "testcomp.length"] and rs.weights == [0.5, 2.0]
    assert rs["testcomp.length"].cap == 8


def _check_logged_weights(trainer, rs):
    logs = [h for h in trainer.state.log_history if "reward" in h]
    assert logs, trainer.state.log_history
    for h in logs:
        for name in rs.names:
            assert f"rewards/{name}/mean" in h
        # TRL sums weighted rewards per row; the logged reward is the mean of that sum
        expected = sum(w * h[f"rewards/{n}/mean"] for n, w in zip(rs.names, rs.weights))
        assert h["reward"] == pytest.approx(expected, abs=1e-5)
        assert h["rewardkit/testcomp.length/errors"] == 0.0


def test_composed_rewards_train_a_real_grpo_trainer(tmp_path, tiny_model_path, length_plugin):
    rs = compose({"testcomp.length": {"weight": 0.5, "cap": 40}, "format.boxed": 2.0, "math.accuracy": 1.0})
    trainer = GRPOTrainer(model=str(tiny_model_path), reward_funcs=rs.funcs,
                          args=tiny_grpo_config(tmp_path, **rs.grpo_kwargs()), train_dataset=tiny_prompt_dataset(8))
    assert trainer.reward_func_names == rs.names
    assert trainer.reward_weights.tolist() == rs.weights
    trainer.train()
    _check_logged_weights(trainer, rs)
    assert any(h["rewards/testcomp.length/mean"] > 0 for h in trainer.state.log_history if "reward" in h)


def test_composed_rewards_train_a_real_rloo_trainer(tmp_path, tiny_model_path, length_plugin):
    rs = compose({"testcomp.length": {"weight": 0.5, "cap": 40}, "format.boxed": 2.0})
    args = RLOOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none", max_steps=2,
                      logging_steps=1, save_strategy="no", per_device_train_batch_size=4, num_generations=2,
                      max_completion_length=12, gradient_checkpointing=False, disable_tqdm=True,
                      **rs.grpo_kwargs())
    trainer = RLOOTrainer(model=str(tiny_model_path), reward_funcs=rs.funcs, args=args,
                          train_dataset=tiny_prompt_dataset(8))
    trainer.train()
    logs = [h for h in trainer.state.log_history if "rewards/testcomp.length/mean" in h]
    assert len(logs) == 2


class AsyncLength(rewardkit.AsyncReward):
    async def ascore_batch(self, batch):
        return [len(t) / 100 for t in batch.texts]


def test_async_reward_in_a_real_grpo_trainer(tmp_path, tiny_model_path):
    reward = AsyncLength(name="async.length")
    trainer = GRPOTrainer(model=str(tiny_model_path), reward_funcs=[reward, rewardkit.get_reward("format.boxed")],
                          args=tiny_grpo_config(tmp_path), train_dataset=tiny_prompt_dataset(8))
    trainer.train()
    logs = [h for h in trainer.state.log_history if "rewards/async.length/mean" in h]
    assert len(logs) == 2 and all(h["rewards/async.length/mean"] > 0 for h in logs)
    assert reward.counters["calls"] == 2


def test_conversational_prompts_with_composed_rewards(tmp_path, tiny_model_path, length_plugin):
    rs = compose({"testcomp.length": 1.0, "math.accuracy": 1.0})
    trainer = GRPOTrainer(model=str(tiny_model_path), reward_funcs=rs.funcs,
                          args=tiny_grpo_config(tmp_path, max_steps=1, **rs.grpo_kwargs()),
                          train_dataset=tiny_prompt_dataset(4, conversational=True))
    trainer.train()
    _check_logged_weights(trainer, rs)
