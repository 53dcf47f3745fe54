"""math.accuracy on gold answers as real datasets write them (tests/data/math_answer_formats.json).

Every case pairs a gold answer in one dataset's format with a completion: an equivalent answer
must score 1.0, a near miss (2 vs 2\\sqrt3, 3/4 vs 4/3, (3,1) vs (1,3), a wrong option letter, ...)
must score 0.0. A false positive is the worst bug a reward can have.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import rewardkit

TABLE = json.loads((Path(__file__).parent / "data" / "math_answer_formats.json").read_text())
CASES = TABLE["cases"]


@pytest.fixture(scope="module")
def acc():
    return rewardkit.get_reward("math.accuracy", timeout=30.0)


@pytest.fixture(scope="module")
def batch_values(acc):
    # the whole table in one call: one batch through the worker pool, as TRL would send it
    return acc(["q"] * len(CASES), [c["completion"] for c in CASES], solution=[c["gold"] for c in CASES])


def test_table_is_wide_and_has_near_misses():
    assert len(CASES) >= 60
    assert sum(c["expected"] == 0.0 for c in CASES) >= 30
    assert {c["source"].split()[0] for c in CASES} >= {"MATH", "GSM8K", "CHAMP"}
    assert len({c["id"] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[f"{c['id']}:{c['format']}" for c in CASES])
def test_answer_format(case, batch_values):
    value = batch_values[CASES.index(case)]
    assert value == case["expected"], f"gold {case['gold']!r} vs completion {case['completion']!r}: {value}"


def test_one_sample_path_agrees_with_the_batch(acc, batch_values):
    from rewardkit.reward import Sample

    for case in CASES[::7]:
        text = case["completion"]
        got = acc.score(Sample(index=0, prompt="q", text=text, completion=text, completion_ids=None,
                               row={"solution": case["gold"]}))
        assert got == case["expected"], case["id"]


def champ_answers() -> dict[str, str]:
    champ = pytest.importorskip("champ_dataset")  # the dev extra installs it
    return {k: p.answer for k, p in champ.load("v0").problems.items()}


def test_champ_golds_in_the_table_are_real():
    real = set(champ_answers().values())
    used = [c["gold"] for c in CASES if c["source"].startswith("CHAMP")]
    assert len(used) >= 20
    assert set(used) <= real


def test_every_champ_gold_reads_and_its_numbers_score(acc):
    from rewardkit.answer_check import read_gold

    answers = champ_answers()
    assert all(read_gold(a) is not None for a in answers.values())
    numbers = sorted({a for a in answers.values() if a.lstrip("-").isdigit()})
    assert len(numbers) >= 30
    golds = numbers * 2
    completions = [f"\\boxed{{{n}}}" for n in numbers] + [f"\\boxed{{{int(n) + 1}}}" for n in numbers]
    assert acc(["q"] * len(golds), completions, solution=golds) == [1.0] * len(numbers) + [0.0] * len(numbers)
