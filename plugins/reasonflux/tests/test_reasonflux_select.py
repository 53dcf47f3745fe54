"""Offline selection and Best-of-N: APIs and the `rewardkit select` / `rewardkit bon` commands."""

from __future__ import annotations

import json

import pytest
from rewardkit_reasonflux.select import best_of_n, final_answer, quantiles, select_top_k

from rewardkit import Reward, hookimpl
from rewardkit.cli import main


class BoxedValue(Reward):
    """Test reward: the number inside the last \\boxed{} (prefers larger answers); None without one."""

    def score(self, sample):
        from rewardkit import last_boxed

        b = last_boxed(sample.text)
        return float(b) if b is not None else None


class ColumnScore(Reward):
    def score(self, sample):
        return sample.row["quality"]


class _TestRewards:
    @hookimpl
    def rewardkit_register_rewards(self, register):
        register("rftest.boxed_value", BoxedValue, kind="outcome", description="test")
        register("rftest.column", ColumnScore, kind="outcome", description="test")


@pytest.fixture
def test_rewards(temp_plugin):
    temp_plugin(_TestRewards(), "rftest")


BON_ROWS = [
    {"question": "q1", "solution": "14", "responses": ["\\boxed{14}", "\\boxed{15}", "\\boxed{15}", "\\boxed{14}"]},
    {"question": "q2", "solution": "18", "responses": ["\\boxed{17}", "\\boxed{18}", "\\boxed{17}", "\\boxed{16}"]},
]
# hand-computed: picks by largest answer; majority ties go to the first answer given
EXPECT = {1: {"bon": 0.5, "majority": 0.5, "random": 0.5, "oracle": 0.5},
          2: {"bon": 0.5, "majority": 0.5, "random": 0.5, "oracle": 1.0},
          4: {"bon": 0.5, "majority": 0.5, "random": 0.375, "oracle": 1.0}}


def test_best_of_n_against_majority_random_oracle(test_rewards):
    report = best_of_n(BON_ROWS, "rftest.boxed_value")
    assert sorted(report["n"]) == [1, 2, 4]
    for n, exp in EXPECT.items():
        got = {k: report["n"][n][k] for k in exp}
        assert got == pytest.approx(exp), n
    assert report["picks"] == [1, 1]
    # the same data as one row per response
    flat = [{"question": r["question"], "solution": r["solution"], "response": c} for r in BON_ROWS
            for c in r["responses"]]
    assert best_of_n(flat, "rftest.boxed_value", n_values=[4])["n"][4]["bon"] == pytest.approx(0.5)
    # math.accuracy as the picker is the oracle
    assert best_of_n(BON_ROWS, "math.accuracy", n_values=[4])["n"][4]["bon"] == pytest.approx(1.0)


def test_bon_with_a_reasonflux_prm(tiny_prm_path):
    report = best_of_n(BON_ROWS, "reasonflux.prm", params={"model": str(tiny_prm_path)}, n_values=[2, 4])
    assert set(report["n"]) == {2, 4}
    assert report["unscored"] == 0
    assert 0.0 <= report["n"][4]["bon"] <= report["n"][4]["oracle"]


def test_final_answer_extraction():
    assert final_answer("so \\boxed{ 3/4 }.") == "3/4"
    assert final_answer("<think>\\boxed{9}</think>The answer is 12.") == "12"
    assert final_answer("no numbers") is None


def test_quantiles_interpolate():
    q = quantiles([1.0, 2.0, 3.0, 4.0, 5.0])
    assert q[0.0] == 1.0 and q[0.5] == 3.0 and q[1.0] == 5.0 and q[0.25] == 2.0 and q[0.1] == pytest.approx(1.4)


def test_select_top_k_api(test_rewards):
    rows = [{"question": f"q{i}", "thinking": "a\n\nb", "response": "r", "quality": v}
            for i, v in enumerate([0.2, 0.9, None, 0.5, 0.9])]
    selected, summary = select_top_k(rows, "rftest.column", 3)
    assert [r["question"] for r in selected] == ["q1", "q4", "q3"]  # ties keep file order
    assert [r["reasonflux_score"] for r in selected] == [0.9, 0.9, 0.5]
    assert summary["unscored"] == 1 and summary["scored"] == 4 and summary["threshold"] == 0.5
    assert summary["quantiles_all"][0.0] == 0.2


def test_select_with_reasonflux_prm_ranks_by_eq_11(tiny_prm_path):
    rows = [{"question": "What is 2 + 2?", "thinking": ["2 + 2 = 4."], "response": "\\boxed{4}"},
            {"question": "What is 2 + 2?", "thinking": "2 + 2 = 5.\n\nHmm.", "response": "\\boxed{5}"},
            {"question": "What is 3 + 3?", "thinking": "", "response": "6"}]
    selected, summary = select_top_k(rows, "reasonflux.prm", 2, params={"model": str(tiny_prm_path), "alpha": 1.0})
    assert len(selected) == 2 and summary["scored"] == 3
    assert selected[0]["reasonflux_score"] >= selected[1]["reasonflux_score"]
    assert all(0.0 < r["reasonflux_score"] < 2.0 for r in selected)  # mean step + 1.0 * trajectory


def test_cli_select_and_bon(tmp_path, test_rewards, capsys):
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(json.dumps({"question": f"q{i}", "thinking": "t", "response": "r", "quality": v})
                              for i, v in enumerate([0.1, 0.7, 0.4])) + "\n")
    out = tmp_path / "top.jsonl"
    assert main(["select", str(data), "--reward", "rftest.column", "--top-k", "2", "-o", str(out)]) == 0
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["question"] for r in kept] == ["q1", "q2"]
    assert "kept 2 of 3" in capsys.readouterr().err
    cands = tmp_path / "cands.jsonl"
    cands.write_text("\n".join(json.dumps(r) for r in BON_ROWS) + "\n")
    report = tmp_path / "bon.json"
    assert main(["bon", str(cands), "--reward", "rftest.boxed_value", "--n", "2,4", "-o", str(report)]) == 0
    got = json.loads(report.read_text())
    assert got["n"]["4"]["random"] == pytest.approx(0.375)
    assert "Best-of-N" in capsys.readouterr().out
