"""CHAMP first-wrong-step annotations (the ``champ-dataset`` wheel) and ``rewardkit eval-prm champ``."""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from collections import Counter

import pytest

from rewardkit import StepScores
from rewardkit.data.champ import first_wrong_step, load_champ
from rewardkit.prm.evaluation import (
    baseline_scores,
    best_threshold,
    configure_cli,
    first_wrong_metrics,
    run_cli,
    scores_on_steps,
)
from rewardkit.trajectory import split_steps


@pytest.fixture(scope="module")
def champ():
    return load_champ()


def test_reader_counts_and_exact_spans(champ):
    assert len(champ) == 540
    assert Counter(r["meta"]["generator"] for r in champ) == {"GPT-3.5": 134, "GPT-4": 136, "GPT-4 Turbo": 134,
                                                              "PaLM 2 Medium": 136}
    assert sum(r["first_wrong"] >= 0 for r in champ) == 444 and len({r["meta"]["problem"] for r in champ}) == 270
    for r in champ:
        assert all(r["text"][a:b] == step for step, (a, b) in zip(r["completions"], r["spans"]))
        fw = r["first_wrong"]
        assert r["labels"] == [1.0 if fw < 0 or k < fw else 0.0 for k in range(len(r["completions"]))]
        if fw >= 0:  # the annotated span starts inside the first wrong step
            a, b = r["spans"][fw]
            assert a <= r["meta"]["span"][0] < b
            assert r["text"][slice(*r["meta"]["span"])] == r["meta"]["wrong_text"]


@pytest.mark.parametrize("rid, n_steps, fw, step_start, wrong_start", [
    # the span is the whole fifth paragraph
    ("P_Combinatorics_1|GPT-3.5|No C w/o H", 12, 4, "If the last digit is 1, then", "If the last digit is 1, then"),
    # the span is the second sentence of the only reasoning paragraph
    ("P_Number-Theory_77|PaLM 2 Medium|No C w/o H", 3, 0, "We can use Fermat's little theorem",
     "In this case, $p=1991$ is a prime number."),
    # the span is the second bullet of a bulleted paragraph
    ("P_Combinatorics_3|PaLM 2 Medium|No C w/o H", None, 2, "* Case 1: $n=1$.", "There are two ways to place two"),
    # no mistake
    ("P_Combinatorics_1|GPT-3.5|Direct C w/ H", 16, -1, None, None),
])
def test_span_to_step_on_annotated_rows(champ, rid, n_steps, fw, step_start, wrong_start):
    r = next(x for x in champ if x["id"] == rid)
    assert r["first_wrong"] == fw
    if n_steps is not None:
        assert len(r["completions"]) == n_steps
    if fw < 0:
        assert r["meta"]["span"] is None and set(r["labels"]) == {1.0}
        return
    assert r["completions"][fw].startswith(step_start)
    assert r["meta"]["wrong_text"].startswith(wrong_start)
    assert r["labels"][fw] == 0.0 and set(r["labels"][:fw]) <= {1.0}


def test_missing_package_names_the_pip_install(monkeypatch):
    import importlib.util

    from rewardkit.data import champ as champ_module

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "champ_dataset" else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match="pip install champ-dataset"):
        champ_module.champ_file()


def test_first_wrong_step_rule():
    text = "a b\n\nc d\n\n\ne"
    steps = split_steps(text)
    assert [first_wrong_step(steps, i) for i in (None, 0, 2, 3, 4, 5, 7, 10, 11)] == [-1, 0, 0, 1, 1, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="after the last step"):
        first_wrong_step(steps, 12)


def test_first_wrong_metrics_by_hand():
    scores = [[0.9, 0.2, 0.1], [0.9, 0.8], [0.3, 0.9]]
    res = first_wrong_metrics(scores, [1, -1, 1])
    assert res["first_wrong_step_accuracy"] == pytest.approx(2 / 3)
    assert (res["error_accuracy"], res["correct_accuracy"]) == (0.5, 1.0)
    assert res["processbench_f1"] == pytest.approx(2 / 3)
    # steps after the first wrong one carry no label: 6 steps, tp 3, tn 1, fp 1, fn 1
    assert res["n_steps"] == 6 and res["step_accuracy"] == pytest.approx(4 / 6)
    assert res["step_f1"] == pytest.approx((0.75 + 0.5) / 2)
    res = first_wrong_metrics([None, [0.1]], [-1, 0])
    assert res["unscored"] == 1 and math.isnan(res["correct_accuracy"]) and math.isnan(res["processbench_f1"])
    with pytest.raises(ValueError, match="first wrong step 2"):
        first_wrong_metrics([[0.5, 0.5]], [2])
    # a threshold tuned on the data separates the two kinds of solution
    t = best_threshold([[0.9, 0.4], [0.9, 0.8], [0.45, 0.9]], [1, -1, 0])
    assert first_wrong_metrics([[0.9, 0.4], [0.9, 0.8], [0.45, 0.9]], [1, -1, 0], threshold=t)["processbench_f1"] == 1.0


def test_reward_steps_are_placed_on_the_champ_steps():
    ss = StepScores([0.2, 0.9], [(0, 5), (7, 12)])
    assert scores_on_steps(ss, [(0, 5), (7, 9), (10, 12), (13, 15)]) == ([0.2, 0.9, 0.9, math.inf], 1)
    assert scores_on_steps(StepScores([0.7, 0.1], [(0, 3), (4, 8)]), [(0, 8)]) == ([0.1], 0)
    assert scores_on_steps(None, [(0, 1)]) == (None, 0)


def test_baselines(champ):
    fw = [r["first_wrong"] for r in champ]
    last = first_wrong_metrics(baseline_scores(champ, "last_step"), fw)
    n_last = sum(f == len(r["completions"]) - 1 for f, r in zip(fw, champ))
    assert last["error_accuracy"] == pytest.approx(n_last / 444) and last["correct_accuracy"] == 0.0
    assert last["processbench_f1"] == 0.0
    rnd = baseline_scores(champ, "random", seed=0)
    assert rnd == baseline_scores(champ, "random", seed=0) != baseline_scores(champ, "random", seed=1)
    assert 0.0 < first_wrong_metrics(rnd, fw)["processbench_f1"] < 0.3


def _cli(*argv):
    p = argparse.ArgumentParser()
    configure_cli(p)
    return p.parse_args(list(argv))


def test_eval_prm_champ_end_to_end(tiny_prm_path, capsys):
    common = ["--limit", "12", "--max-length", "4096", "--json"]
    proc = subprocess.run([sys.executable, "-m", "rewardkit.cli", "eval-prm", "champ", "--model", str(tiny_prm_path),
                           "--tune-threshold", *common], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["solutions"] == 12 and out["erroneous"] == sum(r["first_wrong"] >= 0 for r in load_champ()[:12])
    results = out["results"]
    assert set(results) == {str(tiny_prm_path), f"{tiny_prm_path} (tuned threshold)", "random", "last_step"}
    prm = results[str(tiny_prm_path)]
    assert prm["n_solutions"] + prm["unscored"] == 12 and prm["n_correct"] > 0 and prm["n_erroneous"] > 0
    assert results[f"{tiny_prm_path} (tuned threshold)"]["processbench_f1"] >= prm["processbench_f1"]
    # the same PRM as a registered process reward gives the same step scores, hence the same metrics
    params = json.dumps({"model": str(tiny_prm_path), "max_length": 4096, "on_error": "none"})
    assert run_cli(_cli("champ", "--reward", "prm.score", "--reward-params", params, *common)) == 0
    via_reward = json.loads(capsys.readouterr().out)
    assert via_reward["unscored_steps"] == 0
    got = via_reward["results"]["prm.score"]
    for key in ("first_wrong_step_accuracy", "processbench_f1", "step_f1", "n_steps"):
        assert got[key] == pytest.approx(prm[key], nan_ok=True), key
