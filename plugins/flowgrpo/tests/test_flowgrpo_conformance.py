"""Conformance: rewardkit's official Flow-GRPO settings reproduce the released code on recorded tables.

The tables under ``conformance/`` hold inputs and the outputs of the released functions (AgentFlow on
verl 0.5.0), recorded outside the project; each test runs rewardkit on every case and asserts equality.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _flowgrpo_rows import advantages_of, turn_rows
from rewardkit_flowgrpo.agent import extract_answer
from rewardkit_flowgrpo.judges import JudgeError, parse_json_verdict
from rewardkit_flowgrpo.rewards import FlowOutcomeReward

HERE = Path(__file__).parent / "conformance"


def table(name: str) -> list[dict]:
    data = json.loads((HERE / name).read_text(encoding="utf-8"))
    assert data["source"]["repo"] and len(data["source"]["commit"]) == 40
    return data["cases"]


def case_rows(case_input: dict, max_turns: int) -> dict[str, list]:
    """One trajectory per entry of the case (its index is the trajectory id), in the rollout's row layout."""
    return turn_rows(zip(case_input["query"], range(len(case_input["query"])), case_input["reward"],
                         case_input["turns"], strict=True), max_turns)


ADVANTAGE_CASES = table("grpo_advantage.json")


@pytest.mark.parametrize("case", ADVANTAGE_CASES, ids=[c["id"] for c in ADVANTAGE_CASES])
def test_turn_pooled_bf16_reproduces_verl_advantages(case):
    max_turns = max(case["input"]["turns"]) + 1  # at least one padding slot everywhere
    rows = case_rows(case["input"], max_turns)
    res = advantages_of(rows, max_turns, norm="turn_pooled", precision="bf16", loss_norm="token_mean")
    real = [a for a, pad in zip(res.advantages, rows["pad"]) if not pad]
    assert real == case["expected"]
    assert all(a == 0.0 for a, pad in zip(res.advantages, rows["pad"]) if pad)
    assert all(w == (0.0 if pad else 1.0) for w, pad in zip(res.weights, rows["pad"]))


def test_advantage_table_is_wide():
    sizes = {len(c["input"]["query"]) for c in ADVANTAGE_CASES}
    assert {1, 2, 8, 16, 64} <= sizes
    assert any(len(set(c["input"]["reward"])) == 1 for c in ADVANTAGE_CASES)                  # all equal
    assert any(0 < r < 0.01 or 0.99 < r < 1 for c in ADVANTAGE_CASES for r in c["input"]["reward"])  # p near 0/1
    assert any(len(set(c["input"]["query"])) > 1 for c in ADVANTAGE_CASES)                   # several groups


def test_float64_turn_pooled_differs_from_the_release_only_by_bfloat16_rounding():
    """The default precision is the documented deviation: same formula, no bfloat16 rounding."""
    differ = 0
    for case in ADVANTAGE_CASES:
        inp = case["input"]
        if any(abs(r) > 10 or r != round(r) for r in inp["reward"]):
            continue  # bfloat16 rounds the non-binary rewards themselves; compared in the docs, not here
        rows = case_rows(inp, max(inp["turns"]))
        res = advantages_of(rows, max(inp["turns"]), norm="turn_pooled", loss_norm="token_mean")
        real = [a for a, pad in zip(res.advantages, rows["pad"]) if not pad]
        for ours, theirs in zip(real, case["expected"]):
            assert ours == pytest.approx(theirs, rel=2 ** -6, abs=2 ** -7)
            differ += ours != theirs
    assert differ > 0


ANSWER_CASES = table("answer_extraction.json")


@pytest.mark.parametrize("case", ANSWER_CASES, ids=[c["id"] for c in ANSWER_CASES])
def test_official_answer_extraction(case):
    assert extract_answer(case["input"].get("direct_output"), official=True) == case["expected"]


def test_default_answer_extraction_deviates_only_on_whitespace_and_empty_output():
    for case in ANSWER_CASES:
        text = case["input"].get("direct_output")
        ours = extract_answer(text)
        if not text:
            assert ours == "" and case["expected"] == "None"
        else:
            assert ours == case["expected"].strip()


VERDICT_CASES = table("judge_verdict.json")


@pytest.mark.parametrize("case", VERDICT_CASES, ids=[c["id"] for c in VERDICT_CASES])
def test_official_json_verdict(case):
    if case["expected"] == "error":
        with pytest.raises(JudgeError):
            parse_json_verdict(case["input"]["content"])
    else:
        assert parse_json_verdict(case["input"]["content"]) == case["expected"]


@pytest.mark.parametrize("case", VERDICT_CASES, ids=[c["id"] for c in VERDICT_CASES])
def test_json_judge_through_flowgrpo_outcome(case):
    """The whole official judge path: module reply -> verdict -> reward; a failed parse is 0 and counted."""
    reward = FlowOutcomeReward(judge="llm", judge_model=lambda messages: case["input"]["content"], verdict="json")
    values = reward(["q"], ["planner text"], flowgrpo_answer=["42"], answer=["42"])
    expected = 0.0 if case["expected"] == "error" else case["expected"]
    assert values == [expected]
    assert reward.last_call.metrics[f"rewardkit/{reward.name}/judge_errors"] == int(case["expected"] == "error")
