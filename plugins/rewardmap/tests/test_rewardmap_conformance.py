"""Conformance: rewardkit's RewardMap rewards (defaults = the released code) reproduce fscdc/RewardMap.

The tables under ``conformance/`` hold inputs and the outputs of the released reward module, recorded
outside the project; every case is run through the registered rewards and compared exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rewardkit_rewardmap.rewards import COMPONENTS
from rewardkit_rewardmap.scoring import PLANNING, clean_string, extract_plus_answer

from rewardkit import get_reward

HERE = Path(__file__).parent / "conformance"


def load(name: str) -> dict:
    data = json.loads((HERE / name).read_text(encoding="utf-8"))
    assert data["source"]["repo"] == "fscdc/RewardMap" and len(data["source"]["commit"]) == 40
    return data


REWARD = load("reward.json")
MAPS = REWARD["maps"]
CASES = REWARD["cases"]
SCORED = [c for c in CASES if "error" not in c["expected"]]
FAILING = [c for c in CASES if "error" in c["expected"]]


def columns(inp: dict, map_column: str = "metro") -> dict[str, list]:
    cols = {"type": [inp["type"]], "answer": [inp["answer"]], "difficulty_city": [inp["difficulty_city"]],
            "station_1": [inp.get("station_1")], "station_2": [inp.get("station_2")],
            "question_transfer_count": [inp.get("question_transfer_count")]}
    if map_column == "metro":
        cols["metro"] = [MAPS[inp["map"]] if inp.get("map") else {}]
    return cols


def check(reward, case: dict, cols: dict) -> None:
    value = reward(["prompt"], [case["input"]["response"]], **cols)
    comp = reward.last_call.detail(COMPONENTS)[0]
    exp = case["expected"]
    assert value == [exp["score"]]
    assert bool(comp.acc) == exp["acc"]
    if case["input"]["type"] == PLANNING:
        assert comp.detail == exp["detail"]


@pytest.mark.parametrize("case", SCORED, ids=[c["id"] for c in SCORED])
def test_rewardmap_reward_reproduces_the_released_score(case):
    check(get_reward("rewardmap.reward", on_error="raise"), case, columns(case["input"]))


@pytest.mark.parametrize("case", SCORED, ids=[c["id"] for c in SCORED])
def test_route_and_plus_rewards_reproduce_the_released_score(case):
    name = "rewardmap.route" if case["input"]["type"] == PLANNING else "rewardmap.plus"
    check(get_reward(name, on_error="raise"), case, columns(case["input"]))


@pytest.mark.parametrize("case", FAILING, ids=[c["id"] for c in FAILING])
def test_rows_the_released_code_rejects_are_errors_here(case):
    """An unknown difficulty label, a negative transfer count or an unknown type crash the released
    reward; rewardkit raises a clear error instead of guessing a value."""
    with pytest.raises(ValueError):
        get_reward("rewardmap.reward", on_error="raise")(["prompt"], [case["input"]["response"]],
                                                         **columns(case["input"]))


def test_planning_cases_through_stations_files(tmp_path):
    """The same scores when the map comes as a ReasonMap stations file (the `json` column)."""
    for name, metro in MAPS.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}.json").write_text(json.dumps(metro, ensure_ascii=False), encoding="utf-8")
    reward = get_reward("rewardmap.route", on_error="raise", stations_root=str(tmp_path))
    planning = [c for c in SCORED if c["input"]["type"] == PLANNING]
    for case in planning:
        cols = columns(case["input"], map_column="json")
        cols["json"] = [f"./{case['input']['map']}/{case['input']['map']}.json"]
        check(reward, case, cols)


def test_reward_table_is_wide():
    planning = [c for c in SCORED if c["input"]["type"] == PLANNING]
    plus = [c for c in SCORED if c["input"]["type"] != PLANNING]
    assert len(planning) >= 300 and len(plus) >= 400
    assert {c["expected"]["acc"] for c in planning} == {True, False}
    details = {c["expected"]["detail"] for c in planning}
    assert 10.0 in details and min(details) < -10 and 0.0 in details          # cap, no lower bound, gated
    assert {c["input"]["question_transfer_count"] for c in planning} >= {0, 1, 2, 3}
    assert {c["input"]["type"] for c in plus} == {"TorF1", "TorF2", "Counting1", "Counting2", "Counting3"}
    assert {c["expected"]["acc"] for c in plus} == {True, False}


PLUS_ANSWERS = load("plus_answer.json")["cases"]


@pytest.mark.parametrize("case", PLUS_ANSWERS, ids=[c["id"] for c in PLUS_ANSWERS])
def test_plus_answer_extraction(case):
    assert extract_plus_answer(case["input"]["response"]) == case["expected"]


CLEAN = load("clean_string.json")["cases"]


@pytest.mark.parametrize("case", CLEAN, ids=[c["id"] for c in CLEAN])
def test_clean_string(case):
    once = clean_string(case["input"]["name"])
    assert {"once": once, "twice": clean_string(once)} == case["expected"]
