"""rewardkit's S²R code mode against tables computed by running the released NineAbyss/S2R code.

Each table under ``conformance/`` names the released function and commit it came from; every case
is run through rewardkit's code mode and must match exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from rewardkit_s2r.code import (
    code_answers_match,
    code_attempt_reward,
    code_boxed_answer,
    code_normalize,
    code_verdict,
)
from rewardkit_s2r.config import hook_kwargs, reward_kwargs
from rewardkit_s2r.hooks import S2ROutcomeRLOOHook, S2RProcessAdvantageHook
from rewardkit_s2r.rewards import SCORED

from rewardkit import get_reward

HERE = Path(__file__).parent / "conformance"


def load(name: str) -> dict[str, Any]:
    table = json.loads((HERE / f"{name}.json").read_text())
    assert table["source"]["repo"] == "NineAbyss/S2R" and len(table["source"]["commit"]) == 40
    return table


def cases(name: str) -> list[Any]:
    return [pytest.param(c, id=c["id"]) for c in load(name)["cases"]]


@pytest.mark.parametrize("case", cases("strip_string"))
def test_strip_string(case):
    assert code_normalize(case["input"]["answer"]) == case["expected"]


@pytest.mark.parametrize("case", cases("boxed_answer"))
def test_boxed_answer(case):
    assert code_boxed_answer(case["input"]["text"]) == case["expected"]


@pytest.mark.parametrize("case", cases("answer_match"))
def test_answer_match(case):
    assert code_answers_match(case["input"]["gold"], case["input"]["output"]) is case["expected"]


@pytest.mark.parametrize("case", cases("attempt_reward"))
def test_attempt_reward(case):
    x = case["input"]
    reward, gold, generated = code_attempt_reward(x["solution"], x["answer"], x["response"])
    assert {"reward": reward, "gold": gold, "generated": generated} == case["expected"]


@pytest.mark.parametrize("case", cases("verdict"))
def test_verdict(case):
    assert code_verdict(case["input"]["text"], is_last=case["input"]["is_last"]) == case["expected"]


class VocabTokenizer:
    """The tables' tokenizer: a fixed id -> string vocabulary (unknown ids decode to ``<id>``)."""

    def __init__(self, meta: dict[str, Any]) -> None:
        self.vocab = {int(k): v for k, v in meta["vocab"].items()}
        self.eos_token_id = meta["eos_id"]
        self._markers = {"Wait,": meta["verify_ids"], "Let me try again.\n\n": meta["retry_ids"]}

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return list(self._markers[text])

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return "".join(self.vocab.get(int(i), f"<{int(i)}>") for i in ids
                       if not (skip_special_tokens and int(i) == self.eos_token_id))


def call(reward, tok, rows):
    return reward(prompts=["p"] * len(rows), completions=[tok.decode(r["ids"], True) for r in rows],
                  completion_ids=[r["ids"] for r in rows], solution=[r["solution"] for r in rows],
                  answer=[r["answer"] for r in rows], truncated=[r["truncated"] for r in rows])


PROCESS = load("process_rollout")


@pytest.mark.parametrize("case", cases("process_rollout"))
def test_process_rollout_rewards_and_running_baseline(case):
    tok = VocabTokenizer(PROCESS["tokenizer"])
    reward = get_reward("s2r.process", answer_column="answer", tokenizer=tok, **reward_kwargs("code"))
    hook = S2RProcessAdvantageHook(**hook_kwargs("code"))
    for rows, expected, table in zip(case["input"]["batches"], case["expected"]["rows"], case["expected"]["tables"]):
        values = call(reward, tok, rows)
        details = reward.last_call.detail(SCORED)
        before = [None if d is None else d.token_values(hook.table.baseline) for d in details]
        pairs = [p for d in details if d is not None for p in zip(d.contexts, d.rewards)]
        adv = hook.compute(details, pairs)
        for d, v, b, a, e in zip(details, values, before, adv, expected):
            if "error" in e:  # the released loop fails on an empty completion; rewardkit skips the row
                assert d is None and v is None and a is None
                continue
            assert (d.valid, d.last_reward, d.rewards, d.contexts) == (e["valid"], e["last_reward"], e["rewards"],
                                                                       e["contexts"])
            assert [s.verdict for s in d.actions if s.kind == "verify"] == e["verdicts"]
            assert b == e["token_rewards"]
            assert a == (e["token_rewards"] if e["valid"] else [0.0] * len(b))  # invalid rows weigh 0
        got = {k: [hook.table.sums[k], float(hook.table.counts[k])] for k in hook.table.counts}
        assert got == table


OUTCOME = load("outcome_rollout")


@pytest.mark.parametrize("case", [c for c in cases("outcome_rollout") if "ids" in c.values[0]["input"]])
def test_outcome_reward_is_the_last_attempt_without_marker_merging(case):
    tok = VocabTokenizer(OUTCOME["tokenizer"])
    reward = get_reward("s2r.outcome", answer_column="answer", tokenizer=tok, **reward_kwargs("code"))
    row = case["input"]
    assert call(reward, tok, [row]) == [float(case["expected"]["last_reward"])]
    assert reward.last_call.detail(SCORED)[0].attempt_rewards == case["expected"]["attempts"]


@pytest.mark.parametrize("case", [c for c in cases("outcome_rollout") if "group_rewards" in c.values[0]["input"]])
def test_outcome_rloo_advantages(case):
    r = torch.tensor(case["input"]["group_rewards"], dtype=torch.float64)
    # GRPOTrainer(scale_rewards="none") hands the hook r - group mean
    out = S2ROutcomeRLOOHook().after_rollout(SimpleNamespace(num_generations=4), [], {"advantages": r - r.mean()})
    assert out["advantages"].tolist() == pytest.approx(case["expected"]["advantages"], rel=1e-12, abs=1e-12)
    assert (out["advantages"] != 0).double().tolist() == case["expected"]["weights"]
