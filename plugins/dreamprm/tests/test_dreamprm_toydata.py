"""The toy set's construction and the rank-sharded, resumable batch order."""

from __future__ import annotations

import re

import pytest
from rewardkit_dreamprm import make_toy
from rewardkit_dreamprm.toy import mc_labels
from rewardkit_dreamprm.trainer import _Cursor


def test_toy_labels_corruption_and_meta_rate():
    clean = make_toy(n_train_per_domain=400, n_meta=200, n_eval=4, corrupted=(), seed=1)
    bad = make_toy(n_train_per_domain=400, n_meta=200, n_eval=4, corrupted=("mix",), flip=0.4, seed=1)
    flipped = {d: 0 for d in ("add", "sub", "mix", "mix2")}
    for a, b in zip(clean["train"], bad["train"]):
        assert a.chain.response == b.chain.response and a.domain == b.domain
        ya = [y for y in a.labels if y is not None][0]
        yb = [y for y in b.labels if y is not None][0]
        if ya != yb:
            assert yb == pytest.approx(1 - ya)
            flipped[a.domain] += 1
    assert flipped["add"] == flipped["sub"] == flipped["mix2"] == 0
    assert 0.3 < flipped["mix"] / 400 < 0.5
    # a slipped chain ends wrong and its later labels are 0; the meta set keeps the policy's success rate
    assert mc_labels([True, True], 0.3) == pytest.approx([0.7, 1.0])
    assert mc_labels([False, False], 0.3) == [0.0, 0.0]
    rate = sum(m.correct for m in clean["meta"]) / len(clean["meta"])
    assert 0.35 < rate < 0.65
    for p in clean["eval"]:
        for c, ok in zip(p["candidates"], p["correct"]):
            assert (c.final_answer == p["answer"]) == ok
            assert ("-" in c.response.split("=")[1]) != ok or "-" in p["question"]


def test_toy_twin_sources_and_domain_slip_kinds():
    toy = make_toy(domains=("add", "add_web", "sub"), same_problems_as={"add_web": "add"}, n_train_per_domain=60,
                   sizes={"add_web": 90}, n_meta=30, n_eval=9, corrupted=("add_web",), flip=0.9,
                   domain_slip_kind={"sub": "carry"}, seed=3)
    by = {}
    for e in toy["train"]:
        by.setdefault(e.domain, []).append(e)
    assert {d: len(v) for d, v in by.items()} == {"add": 60, "add_web": 90, "sub": 60}
    # add_web asks add's questions ("a + b + c"); sub keeps its own and slips by an extra hundred, never a sign
    assert all(e.chain.question.count("+") == 2 for e in by["add_web"] + by["add"])
    sub_results = [int(x) for e in by["sub"] for x in re.findall(r"= (-?\d+)", e.chain.response)]
    assert min(sub_results) >= 0 and max(sub_results) > 100
    assert any(int(x) < 0 for e in by["add_web"] for x in re.findall(r"= (-?\d+)", e.chain.response))
    assert {p["domain"] for p in toy["eval"]} == {"add", "add_web", "sub"}
    with pytest.raises(ValueError, match="unknown problem family"):
        make_toy(domains=("add", "x"), same_problems_as={"x": "nope"})
    with pytest.raises(ValueError, match="slip kind"):
        make_toy(domain_slip_kind={"add": "nope"})
    # the default build is unchanged by the new options
    a, b = make_toy(n_train_per_domain=20, seed=5), make_toy(n_train_per_domain=20, seed=5, same_problems_as={},
                                                               domain_slip_kind={})
    assert [e.chain.response for e in a["train"]] == [e.chain.response for e in b["train"]]


def test_cursor_shards_ranks_and_resumes():
    a, b = _Cursor(12, 3, seed=0, rank=0, world=2), _Cursor(12, 3, seed=0, rank=1, world=2)
    seen = []
    for _ in range(4):
        x, y = a.next(), b.next()
        assert not set(x) & set(y)  # the ranks split each global batch
        seen.append(x + y)
    assert sorted(seen[0] + seen[1]) == list(range(12))  # each epoch is a permutation
    assert sorted(seen[2] + seen[3]) == list(range(12))
    assert seen[0] + seen[1] != seen[2] + seen[3]        # reshuffled per epoch
    c = _Cursor(10, 3, seed=0, rank=0, world=2)
    c.pos = 3
    d = _Cursor(10, 3, seed=0, rank=0, world=2)
    for _ in range(3):
        d.next()
    assert c.next() == d.next()
