"""The contract between the core and plugins: a reward's record of its last call, the data it
shares with hooks through the batch, and the helpers every trainer hook uses to find its rewards
and log its statistics."""

from __future__ import annotations

import pytest

from rewardkit import (
    STEP_SCORES,
    Batch,
    CallRecord,
    ProcessReward,
    Reward,
    RewardInputError,
    Sample,
    StepScores,
)
from rewardkit.testing import tiny_grpo_config, tiny_model_dir, tiny_prompt_dataset
from rewardkit.trl import TrainerHook, build_trainer


class LengthParity(Reward):
    """Shares each row's length and logs the batch's mean length."""

    def score_batch(self, batch: Batch) -> list[float | None]:
        lengths = [len(t) for t in batch.texts]
        batch.share("length", lengths)
        batch.extras["total"] = sum(lengths)
        return [float(n % 2) for n in lengths]

    def log_components(self, batch: Batch) -> None:
        batch.log_metric(f"rewardkit/{self.name}/mean_length", batch.extras["total"] / len(batch))


class Words(ProcessReward):
    def step_scores(self, sample: Sample) -> StepScores | None:
        if "boom" in sample.text:
            raise RuntimeError("boom")
        words = sample.text.split()
        spans, at = [], 0
        for w in words:
            start = sample.text.index(w, at)
            spans.append((start, start + len(w)))
            at = start + len(w)
        return StepScores([float(len(w)) for w in words], spans)


def test_last_call_holds_values_details_and_metrics_without_a_trainer():
    r = LengthParity(name="parity")
    assert isinstance(r.last_call, CallRecord) and len(r.last_call) == 0
    out = r(["p"] * 3, ["ab", "abc", "abcd"])
    assert out == [0.0, 1.0, 0.0]
    assert r.last_call.values == out
    assert r.last_call.details == {"length": [2, 3, 4]}
    assert r.last_call.metrics == {"rewardkit/parity/mean_length": 3.0}
    assert r.last_call.detail("missing") == [None, None, None]


def test_log_metric_reaches_the_trainer_callback_and_the_record():
    seen: dict[str, float] = {}
    r = LengthParity(name="parity")
    r(["p"] * 2, ["a", "abc"], log_metric=lambda k, v: seen.__setitem__(k, v))
    assert seen["rewardkit/parity/mean_length"] == 2.0
    assert seen["rewardkit/parity/errors"] == 0.0  # the core counters still go out as before


def test_share_refuses_a_detail_that_is_not_row_aligned():
    class Bad(Reward):
        def score_batch(self, batch):
            batch.share("oops", [1])
            return [1.0] * len(batch)

    with pytest.raises(RewardInputError, match="detail 'oops' has 1 rows for a batch of 2"):
        Bad(name="bad")(["p", "p"], ["a", "b"])


def test_process_reward_step_scores_are_the_shared_detail():
    r = Words(name="words", reducer=sum)
    assert r(["p", "p"], ["ab c", "xyz"]) == [3.0, 3.0]
    assert r.last_call.details[STEP_SCORES] == r.last_step_scores
    assert [s.spans for s in r.last_step_scores] == [[(0, 2), (3, 4)], [(0, 3)]]


def test_a_failed_batch_leaves_a_row_aligned_record_not_the_previous_call():
    r = Words(name="words", on_error="none")
    r(["p"], ["first call"])

    class Whole(Words):
        def step_scores_batch(self, batch):
            batch.share(STEP_SCORES, [StepScores([1.0], [(0, 1)])] * len(batch))
            raise RuntimeError("the model server went away")

    w = Whole(name="whole", on_error="none")
    assert w(["p", "p", "p"], ["a", "b", "c"]) == [None, None, None]
    # the batch failed after sharing: its record is replaced as a whole, never left half-written
    assert w.last_call.values == [None, None, None]
    assert len(w.last_step_scores) == 3
    # a row that raised under on_error="none" keeps its place
    assert r(["p", "p"], ["fine", "boom"]) == [4.0, None]
    assert r.last_step_scores[1] is None and r.last_step_scores[0].scores == [4.0]


class NeedsWords(TrainerHook):
    name = "needs_words"


class _Trainer:
    def __init__(self, funcs, weights=None):
        self.reward_funcs = funcs
        self.reward_weights = weights


def test_find_rewards_by_kind_name_and_count_with_errors_that_name_the_hook():
    a, b, other = Words(name="a"), Words(name="b"), LengthParity(name="len")
    trainer = _Trainer([a, other, b], [0.5, 1.0, 2.0])
    hook = NeedsWords()
    assert hook.find_rewards(trainer, Words) == [a, b]
    assert hook.find_rewards(trainer, Words, names=["b"]) == [b]
    assert hook.find_rewards(trainer) == [a, other, b]
    assert hook.reward_weight(trainer, b) == 2.0
    assert hook.reward_weight(_Trainer([a]), a) == 1.0
    with pytest.raises(ValueError, match=r"needs_words: no Words reward named \['c'\].*candidates: \['a', 'b'\]"):
        hook.find_rewards(trainer, Words, names=["c"])
    with pytest.raises(ValueError, match="needs_words needs exactly 1 Words reward.*found 2 in \\['a', 'len', 'b'\\]"):
        hook.find_rewards(trainer, Words, count=1)


def test_log_metrics_lands_in_the_real_trainers_log_history(tmp_path):
    from trl import GRPOTrainer

    class CountingHook(TrainerHook):
        name = "counting"

        def after_rollout(self, trainer, inputs, output):
            (parity,) = self.find_rewards(trainer, LengthParity, count=1)
            self.log_metrics(trainer, {"counting/rows": float(len(parity.last_call)),
                                       "counting/mean_length": sum(parity.last_call.detail("length")) / len(parity.last_call)})
            return output

    parity = LengthParity(name="parity")
    trainer = build_trainer(GRPOTrainer, hooks=[CountingHook()], model=str(tiny_model_dir("causal_lm")),
                            reward_funcs=[parity], args=tiny_grpo_config(tmp_path, max_steps=2),
                            train_dataset=tiny_prompt_dataset(8))
    trainer.train()
    logged = [h for h in trainer.state.log_history if "counting/rows" in h]
    assert len(logged) == 2
    assert all(h["counting/rows"] == 4.0 for h in logged)  # per_device_train_batch_size rows
    # the reward's own statistic went through TRL's log_metric into the same log lines
    assert all("rewardkit/parity/mean_length" in h for h in logged)
    assert logged[-1]["counting/mean_length"] == pytest.approx(parity.last_call.metrics["rewardkit/parity/mean_length"])


def test_lazy_exports_imports_a_name_on_first_use_and_keeps_it(tmp_path, monkeypatch):
    import sys
    import types

    from rewardkit import lazy_exports

    (tmp_path / "lazy_target_mod.py").write_text("LOADS = 0\nclass Thing: pass\nLOADS += 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    pkg = types.ModuleType("lazy_pkg")
    pkg.__getattr__ = lazy_exports("lazy_pkg", {"Thing": "lazy_target_mod", "OldThing": "lazy_target_mod:Thing"})
    monkeypatch.setitem(sys.modules, "lazy_pkg", pkg)
    assert "lazy_target_mod" not in sys.modules
    assert pkg.OldThing is pkg.Thing is sys.modules["lazy_target_mod"].Thing
    assert "Thing" in vars(pkg) and sys.modules["lazy_target_mod"].LOADS == 1  # kept, imported once
    with pytest.raises(AttributeError, match="module 'lazy_pkg' has no attribute 'Nope'"):
        getattr(pkg, "Nope")  # noqa: B009
