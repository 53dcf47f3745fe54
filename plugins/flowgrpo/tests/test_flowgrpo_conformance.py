"""Conformance: rewardkit's official Flow-GRPO settings reproduce the released code on recorded tables.

The tables under ``conformance/`` hold inputs and the outputs of the released functions (AgentFlow on
verl 0.5.0), recorded outside the project; each test runs rewardkit on every case and asserts equality.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rewardkit_flowgrpo.advantages import flow_advantages

HERE = Path(__file__).parent / "conformance"


def table(name: str) -> list[dict]:
    data = json.loads((HERE / name).read_text(encoding="utf-8"))
    assert data["source"]["repo"] and len(data["source"]["commit"]) == 40
    return data["cases"]


def turn_rows(case_input: dict, max_turns: int) -> dict[str, list]:
    """The rollout's row layout: T_max slots per trajectory, real turns first, then padding."""
    rows = {"reward": [], "query": [], "traj": [], "pad": [], "turns": []}
    for k, (q, r, t) in enumerate(zip(case_input["query"], case_input["reward"], case_input["turns"])):
        for slot in range(max_turns):
            rows["reward"].append(r)
            rows["query"].append(q)
            rows["traj"].append(k)
            rows["pad"].append(slot >= t)
            rows["turns"].append(t)
    return rows


ADVANTAGE_CASES = table("grpo_advantage.json")


@pytest.mark.parametrize("case", ADVANTAGE_CASES, ids=[c["id"] for c in ADVANTAGE_CASES])
def test_turn_pooled_bf16_reproduces_verl_advantages(case):
    max_turns = max(case["input"]["turns"]) + 1  # at least one padding slot everywhere
    rows = turn_rows(case["input"], max_turns)
    res = flow_advantages(rows["reward"], rows["query"], rows["traj"], rows["pad"], rows["turns"], max_turns,
                          norm="turn_pooled", precision="bf16", loss_norm="token_mean")
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
        rows = turn_rows(inp, max(inp["turns"]))
        res = flow_advantages(rows["reward"], rows["query"], rows["traj"], rows["pad"], rows["turns"],
                              max(inp["turns"]), norm="turn_pooled", loss_norm="token_mean")
        real = [a for a, pad in zip(res.advantages, rows["pad"]) if not pad]
        for ours, theirs in zip(real, case["expected"]):
            assert ours == pytest.approx(theirs, rel=2 ** -6, abs=2 ** -7)
            differ += ours != theirs
    assert differ > 0
