"""Data formats (official v1 / 1.5 JSON, generic with domains) and the Monte-Carlo label builder."""

from __future__ import annotations

import json
import random
import re

import pytest
from rewardkit_dreamprm import Chain, make_chain
from rewardkit_dreamprm import data as D

V1_TRAIN = [
    {"id": 7, "sid": 1, "input": "Compute 2 + 3 + 4.", "add": "Step 1: 2 + 3 = 5.", "ground_truth": "9",
     "image_path": "img/a.png", "dataset": "chartqa", "score": 3, "times": 4, "accuracy": 0.75},
    {"id": 7, "sid": 2, "input": "Compute 2 + 3 + 4.", "add": "Step 1: 2 + 3 = 5.\nStep 2: 5 + 4 = 9.",
     "image_path": "img/a.png", "dataset": "chartqa", "score": 4, "times": 4},
    {"id": 8, "sid": 1, "input": "Q", "add": "Step 1: x", "image_path": None, "dataset": "geos", "accuracy": 0.0},
]
V1_META = [
    {"id": 1, "true_false": True, "input": "Compute 1 + 1.\nStep 1: 1 + 1 = 2.\nFinal answer: 2", "image_path": "m.png"},
    {"id": 2, "true_false": False, "input": "What is the capital?", "image_path": "m.png"},  # no steps: dropped
    {"id": 3, "true_false": "False", "input": "Q\n" + "\n".join(f"Step {k}: s{k}" for k in range(1, 11)) + "\nFinal answer: 0",
     "image_path": None},
]


def test_v1_train_and_meta(tmp_path):
    p = tmp_path / "train.json"
    p.write_text(json.dumps(V1_TRAIN))
    ex = D.load_v1_train(p)
    assert [e.domain for e in ex] == ["chartqa", "chartqa", "geos"]
    assert [e.labels for e in ex] == [[0.75], [1.0], [0.0]]  # accuracy, else score/times
    assert ex[1].chain.prefix(0) == "Step 1: 2 + 3 = 5.\nStep 2: 5 + 4 = 9."
    assert ex[0].chain.image == "img/a.png" and ex[0].id == "7-1"
    m = tmp_path / "meta.json"
    m.write_text(json.dumps(V1_META))
    with pytest.warns(UserWarning, match="dropped 1"):
        meta = D.load_v1_meta(m)
    assert [x.correct for x in meta] == [True, False]
    assert meta[0].chain.question == "Compute 1 + 1." and meta[0].chain.steps == ["Step 1: 1 + 1 = 2."]
    assert len(meta[1].chain) == 10 and meta[1].chain.steps[9] == "Step 10: s10"
    with pytest.raises(ValueError, match="accuracy"):
        D.load_v1_train([{"input": "Q", "add": "Step 1: a", "dataset": "d"}])
    with pytest.raises(ValueError, match="empty"):
        D.load_v1_train([{"input": "Q", "add": "  ", "accuracy": 1.0}])


def test_v15_conversations():
    rows = [{"id": "a", "image": "x.png", "conversations": [
        {"from": "system", "value": "judge"}, {"from": "human", "value": "<image>\n### Question:\nWhat is 2+2?"},
        {"from": "human", "value": "2+2=4"}, {"from": "gpt", "value": "+"},
        {"from": "human", "value": "so 5"}, {"from": "gpt", "value": "-"}]}]
    ex = D.load_v15_train(rows)
    assert ex[0].chain.question == "What is 2+2?" and ex[0].chain.steps == ["2+2=4", "so 5"]
    assert ex[0].labels == [1.0, 0.0] and ex[0].chain.image == "x.png"
    meta = D.load_v15_meta([{**rows[0], "true_false": False}])
    assert meta[0].correct is False
    bad = [{"id": "b", "conversations": [{"from": "human", "value": "Q"}, {"from": "human", "value": "s"},
                                         {"from": "gpt", "value": "maybe"}]}]
    with pytest.raises(ValueError, match="neither"):
        D.load_v15_train(bad)


def test_generic_with_domain_column_and_per_prefix(tmp_path):
    rows = [{"prompt": "Q1", "completions": ["a", "b", "c"], "labels": [True, False, None], "domain": "alg"},
            {"question": "Q2", "response": "Step 1: x\nStep 2: y\nFinal answer: 1", "labels": [0.5, 1], "domain": "geo"}]
    p = tmp_path / "g.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows))
    ex = D.load_generic(p)
    assert [e.domain for e in ex] == ["alg", "geo"] and ex[0].labels == [1.0, 0.0, None]
    pre = D.load_generic(p, per_prefix=True)
    assert len(pre) == 4 and [len(e.chain) for e in pre] == [1, 2, 1, 2]
    assert pre[1].labels == [None, 0.0] and pre[1].labelled == [1]
    with pytest.raises(ValueError, match="labels for"):
        D.load_generic([{"prompt": "Q", "steps": ["a"], "labels": [1, 0]}])
    with pytest.raises(ValueError, match="empty step"):
        D.load_generic([{"prompt": "Q", "steps": ["a", " "], "labels": [1, 0]}])
    with pytest.raises(ValueError, match="outside"):
        D.load_generic([{"prompt": "Q", "steps": ["a"], "labels": [1.5]}])


def _scripted_policy(seed=0):
    """A policy that finishes the chain correctly unless the prefix already slipped (a 1xx number),
    and slips on the unfinished second step half of the time."""
    rng = random.Random(seed)

    def policy(prompts, n):
        out = []
        for p in prompts:
            q = re.search(r"Compute (\d+) ([+-]) (\d+) ([+-]) (\d+)", p)
            a, o1, b, o2, c = int(q[1]), q[2], int(q[3]), q[4], int(q[5])
            r1 = a + b if o1 == "+" else a - b
            gold = r1 + c if o2 == "+" else r1 - c
            slipped = re.search(r"= 1\d\d", p) is not None
            done_step2 = "Step 2" in p
            conts = []
            for _ in range(n):
                ans = gold + 100 if slipped or (not done_step2 and rng.random() < 0.5) else gold
                conts.append(f"\nThe rest follows, so the final answer is \\boxed{{{ans}}}.")
            out.append(conts)
        return out

    return policy


def test_mc_labels_adaptive_rollouts_graded_by_math_accuracy():
    chain = make_chain("Compute 2 + 3 + 4.", "Step 1: 2 + 3 = 5.\nStep 2: 5 + 4 = 9.\nFinal answer: 9")
    labels = D.mc_step_labels(_scripted_policy(), "Compute 2 + 3 + 4.", chain, "9", original_correct=True,
                              min_rollouts=4, max_rollouts=12, per_round=2)
    (s1, t1), (s2, t2) = labels
    assert t2 == 4 and s2 == 4                 # certain prefix: exactly the minimum
    assert t1 > 4 and t1 <= 12 and 0 < s1 < t1  # uncertain prefix: extra rollouts, up to the cap
    bad = make_chain("Compute 2 + 3 + 4.", "Step 1: 2 + 3 = 105.\nStep 2: 105 + 4 = 109.\nFinal answer: 109")
    labels = D.mc_step_labels(_scripted_policy(), "Compute 2 + 3 + 4.", bad, "9", original_correct=False)
    assert [s for s, _ in labels] == [0, 0] and all(t == 4 for _, t in labels)


def test_build_mc_dataset_writes_v1_records_that_load(tmp_path):
    probs = [{"id": "p1", "question": "Compute 2 + 3 + 4.", "solution": "9", "domain": "add",
              "response": "Step 1: 2 + 3 = 5.\nStep 2: 5 + 4 = 9.\nFinal answer: \\boxed{9}"},
             {"id": "p2", "question": "Compute 9 - 1 - 1.", "solution": "7", "domain": "sub", "response": "no steps"}]
    recs = D.build_mc_dataset(_scripted_policy(1), probs, max_rollouts=8)
    assert [r["sid"] for r in recs] == [1, 2] and all(r["dataset"] == "add" for r in recs)
    D.write_json(recs, tmp_path / "train.json")
    ex = D.load_v1_train(tmp_path / "train.json")
    assert ex[1].labels == [1.0] and 0.0 < ex[0].labels[0] < 1.0


def test_hf_policy_on_the_tiny_lm_runs_the_loop(tiny_model_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    pol = D.hf_policy(model, tok, max_new_tokens=4, seed=0)
    chain = Chain.from_steps("Compute 2 + 3.", ["Step 1: 2 + 3 = 5."])
    (s, t), = D.mc_step_labels(pol, "Compute 2 + 3.", chain, "5", min_rollouts=2, max_rollouts=2, min_chars=0)
    assert t == 2 and 0 <= s <= 2
