"""PRMReward: TRL protocol, reducers, spans, bad input, registry, pickling, data readers, eval metric."""

from __future__ import annotations

import json
import math
import pickle

import pytest

import rewardkit
from rewardkit.data.steps import (
    StepFormatError,
    load_steps,
    load_toy_steps,
    read_math_shepherd,
    read_prm800k,
    read_trl_stepwise,
)
from rewardkit.metrics.prm_eval import compute_prm_metrics
from rewardkit.prm import PRMReward, TaggedScorer
from rewardkit.reducers import reduce_steps
from rewardkit.testing import (
    LogCapture,
    tiny_model_dir,  # noqa: I001
)


@pytest.fixture(scope="module")
def prm_path():
    return str(tiny_model_dir("prm"))


def test_reward_protocol_spans_and_reducer(prm_path):
    scorer = TaggedScorer(prm_path)
    reward = PRMReward(scorer, reducer="mean", name="prm")
    text = "Ben starts with 5 stones.\n\n5 + 9 = 14.\n\nThe answer is \\boxed{14}."
    log = LogCapture()
    out = reward(prompts=["Ben has 5 stones and gets 9 more."], completions=[text], **log.kwargs())
    steps = reward.last_step_scores[0]
    assert [text[a:b] for a, b in steps.spans] == ["Ben starts with 5 stones.", "5 + 9 = 14.",
                                                  "The answer is \\boxed{14}."]
    direct = scorer.score(["Ben has 5 stones and gets 9 more."], [[text[a:b] for a, b in steps.spans]])[0]
    assert steps.scores == pytest.approx(direct, abs=1e-6)
    assert out[0] == pytest.approx(sum(direct) / 3, abs=1e-6)
    assert log.metrics["rewardkit/prm/steps_mean"] == [3.0]
    assert reward.last_call.texts == [text]


@pytest.mark.parametrize("reducer", ["min", "mean", "last", "prod", "mean_logodds", "softmax_weighted"])
def test_every_aggregator(prm_path, reducer):
    reward = PRMReward(TaggedScorer(prm_path), reducer=reducer)
    out = reward(prompts=["Q"], completions=["a\n\nb\n\nc"])
    assert out[0] == pytest.approx(reduce_steps(reward.last_step_scores[0].scores, reducer))


def test_reducers_by_hand():
    assert reduce_steps([0.2, 0.8], "min") == 0.2
    assert reduce_steps([0.2, 0.8], "prod") == pytest.approx(0.16)
    assert reduce_steps([0.2, 0.8], "mean_logodds") == pytest.approx(0.0, abs=1e-12)
    w = [math.exp(0), math.exp(-0.6)]
    assert reduce_steps([0.2, 0.8], "softmax_weighted") == pytest.approx((0.2 * w[0] + 0.8 * w[1]) / sum(w))


def test_bad_input_is_counted_never_zeroed(prm_path):
    reward = PRMReward(TaggedScorer(prm_path, max_length=16), name="prm")
    log = LogCapture()
    out = reward(prompts=["Q", "Q", "Q", [{"role": "user", "content": "Q"}]],
                 completions=["", "a\n\nb", "\n\n".join(["x y z"] * 30), [{"role": "assistant", "content": "ok"}]],
                 **log.kwargs())
    assert out[0] is None and out[2] is None
    assert out[1] is not None and out[3] is not None
    assert log.metrics["rewardkit/prm/empty"] == [1.0]
    assert log.metrics["rewardkit/prm/too_long"] == [1.0]
    assert log.metrics["rewardkit/prm/none"] == [2.0]
    assert reward.last_step_scores[0].scores == [] and reward.last_step_scores[2] is None  # no steps / unscored


def test_max_steps_merges_the_tail(prm_path):
    reward = PRMReward(TaggedScorer(prm_path), max_steps=2)
    log = LogCapture()
    reward(prompts=["Q"], completions=["a\n\nb\n\nc\n\nd"], **log.kwargs())
    s = reward.last_step_scores[0]
    assert s.spans == [(0, 1), (3, 10)] and len(s.scores) == 2  # "b\n\nc\n\nd" is one step
    assert log.metrics[f"rewardkit/{reward.name}/merged"] == [1.0]


def test_registered_reward_and_hook_and_pickling(prm_path):
    reward = rewardkit.get_reward("prm.score", model=prm_path, reducer="last", splitter="line")
    assert reward.kind == "process" and reward.name == "prm.score"
    assert rewardkit.list_rewards()["prm.score"].kind == "process"
    assert "prm.process_advantage" in rewardkit.list_hooks() and "process_advantage" not in rewardkit.list_hooks()
    want = reward(prompts=["Q"], completions=["a\nb"])
    again = pickle.loads(pickle.dumps(reward))
    assert again.scorer._lazy_model is None
    assert again(prompts=["Q"], completions=["a\nb"]) == pytest.approx(want)
    with pytest.raises(ValueError, match="needs model"):
        rewardkit.get_reward("prm.score")
    hook = rewardkit.get_hook("prm.process_advantage", mode="outcome_plus_process", coef=0.2)
    assert hook.name == "prm.process_advantage" and hook.coef == 0.2
    # the name before every hook was <plugin>.<thing> still builds the same hook, with a warning
    with pytest.warns(FutureWarning, match="'process_advantage' is now called 'prm.process_advantage'"):
        old = rewardkit.get_hook("process_advantage", coef=0.3)
    assert type(old) is type(hook) and old.name == "prm.process_advantage" and old.coef == 0.3


# -- data readers -------------------------------------------------------------------------------

def test_math_shepherd_reader():
    rec = {"input": "What is 2+3? Step 1: 2+3=5. ки\nStep 2: The answer is 6. ки",
           "label": "What is 2+3? Step 1: 2+3=5. +\nStep 2: The answer is 6. -"}
    out = read_math_shepherd(rec)
    assert out == {"prompt": "What is 2+3?", "completions": ["Step 1: 2+3=5.", "Step 2: The answer is 6."],
                   "labels": [1.0, 0.0]}
    with pytest.raises(StepFormatError, match="does not match"):
        read_math_shepherd({"input": rec["input"], "label": "something else"})
    with pytest.raises(StepFormatError, match="no step tag"):
        read_math_shepherd({"input": "no tags", "label": "no tags"})


def test_prm800k_reader_neutral_policy():
    rec = {"question": {"problem": "P", "ground_truth_answer": "1"},
           "label": {"steps": [{"completions": [{"text": "s1", "rating": 0}], "chosen_completion": 0},
                               {"completions": [{"text": "bad", "rating": -1}],
                                "human_completion": {"text": "fixed", "rating": 1}, "chosen_completion": None},
                               {"completions": [{"text": "s3", "rating": -1}], "chosen_completion": None}]}}
    assert read_prm800k(rec) == {"prompt": "P", "completions": ["s1", "fixed", "s3"], "labels": [1.0, 1.0, 0.0],
                                 "meta": {"ground_truth_answer": "1"}}
    assert read_prm800k(rec, neutral=None)["completions"] == ["fixed", "s3"]
    rec["label"]["steps"][0]["completions"][0]["rating"] = 2
    with pytest.raises(StepFormatError, match="rating"):
        read_prm800k(rec)


def test_trl_reader_and_autodetect(tmp_path):
    assert read_trl_stepwise({"prompt": "P", "completions": ["a", "b"], "labels": [True, 0.25]})["labels"] == [1.0, 0.25]
    with pytest.raises(StepFormatError, match="2 completions but 1 labels"):
        read_trl_stepwise({"prompt": "P", "completions": ["a", "b"], "labels": [True]})
    with pytest.raises(StepFormatError, match="outside"):
        read_trl_stepwise({"prompt": "P", "completions": ["a"], "labels": [3]})
    path = tmp_path / "mixed.jsonl"
    path.write_text(json.dumps({"prompt": "P", "completions": ["a"], "labels": [False]}) + "\n" +
                    json.dumps({"input": "Q Step 1: x ки", "label": "Q Step 1: x +"}) + "\n", encoding="utf-8")
    rows = load_steps(path)
    assert [r["labels"] for r in rows] == [[0.0], [1.0]]
    (tmp_path / "bad.jsonl").write_text('{"foo": 1}\n')
    with pytest.raises(StepFormatError, match="record 0: unknown"):
        load_steps(tmp_path / "bad.jsonl")


def test_bundled_toy_sets():
    train, test = load_toy_steps("train"), load_toy_steps("test")
    assert len(train) == 384 and len(test) == 128
    assert 0.3 < sum(sum(r["labels"]) for r in test) / sum(len(r["labels"]) for r in test) < 0.7
    from rewardkit.data import DATA_DIR

    assert len(load_steps(DATA_DIR / "toy_math_shepherd.jsonl")) == 4
    assert load_steps(DATA_DIR / "toy_prm800k.jsonl")[1]["labels"] == [1.0, 0.0]


# -- evaluation metric ------------------------------------------------------------------------------

def test_prm_eval_metric_by_hand_and_through_evaluate():
    preds = [[0.9, 0.2], [0.8, 0.7], [0.1, 0.9]]
    refs = [[1, 0], [1, 1], [1, 1]]
    m = compute_prm_metrics(preds, refs)
    # steps: tp=4 (correct, predicted correct), tn=1, fn=1, fp=0
    assert m["step_accuracy"] == pytest.approx(5 / 6)
    assert m["step_f1_correct"] == pytest.approx(8 / 9) and m["step_f1_error"] == pytest.approx(2 / 3)
    # chains: erroneous #0 found at step 1 (1/1), correct #1 right, #2 flagged at 0 (1/2)
    assert m["error_accuracy"] == 1.0 and m["correct_accuracy"] == 0.5
    assert m["processbench_f1"] == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert math.isnan(compute_prm_metrics([[0.9]], [[1]])["processbench_f1"])
    with pytest.raises(ValueError, match="2 step scores but 1 labels"):
        compute_prm_metrics([[0.1, 0.2]], [[1]])

    from rewardkit.metrics import prm_eval

    via = prm_eval.load().compute(predictions=preds, references=refs)
    assert via["processbench_f1"] == pytest.approx(m["processbench_f1"])


def test_eval_prm_cli(prm_path, tmp_path, capsys):
    from rewardkit.cli import main
    from rewardkit.data import DATA_DIR

    assert main(["eval-prm", str(DATA_DIR / "toy_math_shepherd.jsonl"), "--model", prm_path, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_solutions"] == 4 and result["n_steps"] == 10 and 0 <= result["step_accuracy"] <= 1
    assert main(["eval-prm", "toy", "--model", prm_path, "--limit", "8"]) == 0
    assert "processbench_f1" in capsys.readouterr().out
