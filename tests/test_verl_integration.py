"""rewardkit.integrations.verl / .dense / verl-config, without verl installed (verl itself: test_verl_engine.py)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping

import pytest

from rewardkit import ProcessReward, Reward, StepScores, hookimpl
from rewardkit.cli import main
from rewardkit.integrations import verl as rk_verl
from rewardkit.integrations.dense import StepRows, dense_row, process_supervision_rows, step_rows
from rewardkit.integrations.plugin import overrides
from rewardkit.plugins import register_plugin, unregister_plugin
from rewardkit.testing import build_tokenizer
from rewardkit.trl import token_advantages

SPEC = {"math.accuracy": 1.0, "format.boxed": 0.1}


class BatchSizes(Reward):
    """1.0 for every row; records the size of every batch it was called with."""

    sizes: list[int] = []

    def score_batch(self, batch):
        BatchSizes.sizes.append(len(batch))
        return [1.0] * len(batch)


class LineSteps(ProcessReward):
    """One step per line; its score is 1.0 when the line holds a correct 'a+b=c', else 0.0."""

    def step_scores(self, sample):
        text, spans, scores, start = sample.text, [], [], 0
        for line in text.split("\n"):
            end = start + len(line)
            if line.strip():
                spans.append((start, end))
                lhs, _, rhs = line.partition("=")
                a, _, b = lhs.partition("+")
                ok = all(x.strip().isdigit() for x in (a, b, rhs.split()[0] if rhs.split() else ""))
                scores.append(1.0 if ok and int(a) + int(b) == int(rhs.split()[0]) else 0.0)
            start = end + 1
        return StepScores(scores, spans)


class _Plugin:
    @hookimpl
    def rewardkit_register_rewards(self, register):
        register("test.batch_sizes", BatchSizes, kind="outcome")
        register("test.line_steps", LineSteps, kind="process")


@pytest.fixture
def test_rewards():
    register_plugin(_Plugin(), name="verl_test_rewards")
    yield
    unregister_plugin("verl_test_rewards")


class ConfigLike(Mapping):
    """What verl hands over: an OmegaConf-style mapping, not a dict."""

    def __init__(self, data):
        self._d = data

    def __getitem__(self, k):
        return self._d[k]

    def __iter__(self):
        return iter(self._d)

    def __len__(self):
        return len(self._d)


def test_compute_score_returns_total_and_components(tmp_path):
    spec = tmp_path / "rewards.yaml"
    spec.write_text("rewards:\n  math.accuracy: 1.0\n  format.boxed: 0.1\n")
    right = rk_verl.compute_score("gsm8k", "so \\boxed{42}", "42", {"question": "6*7?"}, spec=str(spec))
    assert right == {"score": 1.1, "math.accuracy": 1.0, "format.boxed": 1.0, "rewardkit/none": 0.0}
    wrong = rk_verl.compute_score("gsm8k", "so \\boxed{41}", "42", None, spec=ConfigLike(SPEC))
    assert wrong == {"score": 0.1, "math.accuracy": 0.0, "format.boxed": 1.0, "rewardkit/none": 0.0}
    # a gold answer under another column, and a ground_truth mapping spread into columns
    answer_spec = {"math.accuracy": {"weight": 1.0, "gold_column": "answer"}}
    assert rk_verl.compute_score("x", "\\boxed{3}", "3", spec=answer_spec, gold_column="answer")["score"] == 1.0
    assert rk_verl.compute_score("x", "\\boxed{3}", {"solution": "3"}, spec={"math.accuracy": 1.0})["score"] == 1.0
    # verl's router kwargs are accepted and ignored; built once per process
    assert rk_verl.get_scorer(spec=SPEC) is rk_verl.get_scorer(spec=ConfigLike(SPEC), reward_router_address="h:1")


def test_no_applicable_reward_is_counted_not_silently_zero():
    row = rk_verl.compute_score("x", "\\boxed{3}", None, spec={"math.accuracy": 1.0}, none_score=-1.0)
    assert row["score"] == -1.0 and row["rewardkit/none"] == 1.0 and math.isnan(row["math.accuracy"])


def test_bad_reward_kwargs_are_clear_errors():
    with pytest.raises(ValueError, match="reward_kwargs.spec"):
        rk_verl.compute_score("x", "y", "1")
    with pytest.raises(TypeError, match="unknown rewardkit reward_kwargs"):
        rk_verl.compute_score("x", "y", "1", spec=SPEC, gold_colum="answer")
    with pytest.raises(ValueError, match="completion_ids"):
        rk_verl.compute_score("x", "y", "1", {"completion_ids": [1]}, spec=SPEC)
    with pytest.raises(ValueError, match="none_score"):
        rk_verl.compute_score("x", "y", "1", spec=SPEC, none_score=float("nan"))


def test_batch_and_async_agree_with_per_sample():
    sols = [f"\\boxed{{{i}}}" if i % 3 else f"{i}" for i in range(30)]
    golds = [str(i if i % 2 else i + 1) for i in range(30)]
    one = [rk_verl.compute_score("s", s, g, {}, spec=SPEC) for s, g in zip(sols, golds)]
    batch = rk_verl.compute_score_batch(["s"] * 30, sols, golds, [{}] * 30, spec=SPEC)

    async def gather():
        return await asyncio.gather(*[rk_verl.compute_score_async("s", s, g, {}, spec=SPEC)
                                      for s, g in zip(sols, golds)])

    assert one == batch == asyncio.run(gather())


def test_async_calls_are_scored_as_one_batch(test_rewards):
    spec = {"test.batch_sizes": 1.0}
    BatchSizes.sizes.clear()

    async def gather(n, **kw):
        return await asyncio.gather(*[rk_verl.compute_score_async("s", "x", "1", {}, spec=spec, **kw)
                                      for _ in range(n)])

    assert [r["score"] for r in asyncio.run(gather(40))] == [1.0] * 40
    assert BatchSizes.sizes == [40]
    BatchSizes.sizes.clear()
    asyncio.run(gather(10, async_max_batch=4))
    assert sorted(BatchSizes.sizes) == [2, 4, 4]


def _prefix_end_token(tok, ids, char_end):
    # independent of rewardkit.trajectory: the first token whose decoded prefix reaches char_end
    return next(k for k in range(len(ids)) if len(tok.decode(ids[:k + 1], skip_special_tokens=True)) >= char_end)


def test_step_rows_put_each_step_on_the_token_that_ends_it(test_rewards):
    tok = build_tokenizer()
    text = "2+3=5\n4+4=9\n\n1+1=2 so \\boxed{2}"
    ids = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    decoded = tok.decode(ids, skip_special_tokens=True)
    scorer = rk_verl.get_scorer(spec={"math.accuracy": 1.0, "steps": {"reward": "test.line_steps", "weight": 0.5}})
    rows, steps = scorer.score([decoded], ["2"], with_steps=True)
    (name, weight, st), = steps[0].steps
    assert (name, weight, st.scores) == ("steps", 0.5, [1.0, 0.0, 1.0])  # the middle step scores 0.0
    width = len(ids) + 5
    part = step_rows(st, ids, decoded, tok, width, weight)
    want_ends = [_prefix_end_token(tok, ids, e) for _, e in st.spans]
    assert [t for t in range(width) if part.count[t]] == want_ends  # a 0.0 step is still a step
    assert [part.total[t] for t in want_ends] == [1.0, 0.0, 1.0]
    row = dense_row([part], steps[0].outcome, len(ids), width)
    want = [0.0] * width
    for t, s in zip(want_ends, st.scores):
        want[t] += 0.5 * s
    want[len(ids) - 1] += 1.0  # math.accuracy on the last valid token (the EOS)
    assert row == want and steps[0].outcome == 1.0
    assert rows[0]["score"] == 1.0 + 0.5 * min(st.scores)  # the scalar total reduces the steps ('min')


def _rows(steps: list[tuple[int, float]], width: int, weight: float = 1.0) -> StepRows:
    r = StepRows(weight, [0.0] * width, [0.0] * width, [0.0] * width)
    for end, score in steps:
        r.count[end - 1] += 1
        r.total[end - 1] += score
        r.squares[end - 1] += score * score
    return r


def test_process_supervision_is_deepseekmath_per_group():
    width = 8
    # group a: two responses; group b: one response with steps, one without any
    raw = {0: [(2, 0.9), (5, 0.2)], 1: [(3, 0.0), (4, 0.6), (6, 1.0)], 2: [(1, 0.5), (3, 0.1)], 3: []}
    groups, lengths = ["a", "a", "b", "b"], [7, 6, 4, 5]
    parts = [{"prm": _rows(raw[i], width, weight=0.5)} for i in range(4)]
    got = process_supervision_rows(parts, lengths, groups, width, eps=1e-4)
    for i in range(4):
        pool = [s for j in range(4) if groups[j] == groups[i] for _, s in raw[j]]
        mean = sum(pool) / len(pool)
        std = math.sqrt(sum((x - mean) ** 2 for x in pool) / (len(pool) - 1))
        values = [(s - mean) / (std + 1e-4) for _, s in raw[i]]
        want = [0.5 * v for v in token_advantages(values, [e for e, _ in raw[i]], lengths[i], width)]
        assert got[i] == pytest.approx(want, abs=1e-12)
    assert got[3] == [0.0] * width  # no steps: no process term
    assert got[0][6] == got[0][4] != 0.0  # tokens after the last step get its value; padding (7) gets 0
    assert got[0][7] == 0.0


def test_verl_config_prints_the_overrides(tmp_path, capsys):
    spec = tmp_path / "rewards.yaml"
    spec.write_text("rewards:\n  math.accuracy: 1.0\n")
    assert main(["verl-config", "--spec", str(spec)]) == 0
    lines = capsys.readouterr().out.split()
    assert lines == ["reward.custom_reward_function.path=pkg://rewardkit.integrations.verl",
                     "reward.custom_reward_function.name=compute_score",
                     f"+reward.custom_reward_function.reward_kwargs.spec={spec}"]
    ps = overrides(str(spec), "process_supervision", use_async=True)
    assert "reward.custom_reward_function.name=compute_score_async" in ps
    assert "+reward.custom_reward_function.reward_kwargs.dense_mode=process_supervision" in ps
    assert "algorithm.adv_estimator=rewardkit_process_supervision" in ps
    assert "algorithm.adv_estimator=gae" in overrides(str(spec), "dense")
    legacy = overrides(str(spec), legacy=True)
    assert legacy[0] == f"custom_reward_function.path={rk_verl.__file__}" and legacy[1].endswith("=compute_score")
    with pytest.raises(ValueError, match="outcome"):
        overrides(str(spec), "dense", legacy=True)
    bad = tmp_path / "bad.yaml"
    bad.write_text("rewards:\n  math.acuracy: 1.0\n")
    with pytest.raises(KeyError, match="math.accuracy"):
        main(["verl-config", "--spec", str(bad)])
