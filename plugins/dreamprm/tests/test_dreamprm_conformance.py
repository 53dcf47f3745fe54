"""rewardkit's official DreamPRM pieces against tables recorded from the released code
(tests/conformance/*.json): the v1 Best-of-N step split and aggregate, and both releases' optimiser
and learning-rate schedules."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from _dreamprm_util import v1_prm
from rewardkit_dreamprm import Chain, DreamPRMConfig, DreamPRMReward, make_chain
from rewardkit_dreamprm.rewards import released_mean_logodds
from rewardkit_dreamprm.trainer import level_optimizer

from rewardkit import STEP_SCORES

TABLES = Path(__file__).parent / "conformance"


def _table(name: str) -> dict:
    table = json.loads((TABLES / name).read_text())
    assert len(table["source"]["commit"]) == 40 and table["cases"]
    return table


SPLIT = _table("released_split.json")["cases"]
AGG = _table("released_bon_aggregate.json")["cases"]
OPT = _table("optimizer_v15.json")["cases"] + _table("optimizer_v1.json")["cases"]


@pytest.mark.parametrize("case", SPLIT, ids=[c["id"] for c in SPLIT])
def test_official_split_matches_released_prefixes(case):
    chain = make_chain("Q", case["input"]["response"], "official")
    assert [chain.prefix(i) for i in range(len(chain))] == case["expected"]["prefixes"]
    for a, b in chain.spans:
        assert 0 <= a <= b <= len(case["input"]["response"])


@pytest.fixture(scope="module")
def official_reward():
    return DreamPRMReward(v1_prm(seed=3), mode="official")


def test_official_reward_scores_exactly_the_released_prefixes(official_reward):
    """The reward in official mode feeds the PRM the released prefixes (as the question + "\\n\\n" +
    prefix user turn) and aggregates as released: one run over every response of the split table."""
    texts = [c["input"]["response"] for c in SPLIT]
    values = official_reward(["Q"] * len(texts), texts)
    steps = official_reward.last_call.detail(STEP_SCORES)
    prm = official_reward.scorer.prm
    for case, v, s in zip(SPLIT, values, steps):
        pre = case["expected"]["prefixes"]
        if not pre:  # released: no step -> pseudo-score 0.5, mean log-odds 0
            assert s.scores == [0.5] and v == 0.0, case["id"]
            continue
        # a chain whose prefixes are the released strings, scored on its own
        text = case["input"]["response"]
        ends = [len(p) for p in pre]
        direct = prm.score_chains([Chain("Q", text, [(0, e) for e in ends], prefix_ends=ends)])[0]
        assert s.scores == pytest.approx(direct, abs=1e-6), case["id"]
        assert v == pytest.approx(released_mean_logodds(s.scores), rel=1e-6), case["id"]


@pytest.mark.parametrize("case", AGG, ids=[c["id"] for c in AGG])
def test_official_aggregate_matches_released(case):
    probs, expected = case["input"]["step_probs"], case["expected"]
    got = released_mean_logodds(probs) if probs else 0.0
    if isinstance(expected, str):
        expected = float(expected)
    if math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == expected  # float32 arithmetic, bit for bit


def test_official_reward_non_finite_aggregate_is_not_a_reward(official_reward):
    """p == 1.0 exactly gives the released aggregate +inf; the core refuses it (error / counted None)."""
    prm = official_reward.scorer.prm
    bias = prm.head.bias.detach().clone()
    try:
        with torch.no_grad():
            prm.head.bias.fill_(1e4)
        assert released_mean_logodds([1.0, 1.0]) == math.inf
        with pytest.raises(FloatingPointError):
            official_reward(["Q"], ["Step 1: a\nStep 2: b\nFinal answer: 5"])
    finally:
        with torch.no_grad():
            prm.head.bias.copy_(bias)


def _config(inp: dict) -> DreamPRMConfig:
    kw = {"max_steps": inp["max_steps"]}
    if "step_size" in inp:
        kw.update(step_size=inp["step_size"], gamma=inp["gamma"])
    return DreamPRMConfig.v15(**kw) if inp["variant"] == "1.5" else DreamPRMConfig(**kw)


def _run(config: DreamPRMConfig, inp: dict) -> tuple[list[list[float]], list[float]]:
    p = torch.nn.Parameter(torch.tensor(inp["param0"], dtype=torch.float32))
    opt, sched = level_optimizer([p], config, inp["level"])
    params, lrs = [], []
    for g in inp["grads"]:
        p.grad = torch.tensor(g, dtype=torch.float32)
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        params.append(p.detach().tolist())
    return params, lrs


@pytest.mark.parametrize("case", OPT, ids=[c["id"] for c in OPT])
def test_config_optimizer_and_schedule_match_released(case):
    inp = case["input"]
    config = _config(inp)
    # the table's official arguments are what the config holds
    args = inp["official_args"]
    lr = config.lr if inp["level"] == "lower" else config.meta_lr
    wd = config.weight_decay if inp["level"] == "lower" else config.meta_weight_decay
    assert (lr, wd, config.adam_eps) == (args["lr"], args["weight_decay"], 1e-6)
    params, lrs = _run(config, inp)
    assert lrs == case["expected"]["lrs"]
    assert params == case["expected"]["params"]  # same float32 operations in the same order


def test_torch_adamw_does_not_reproduce_the_released_optimizer():
    """torch.optim.AdamW with the same arguments is a different update (eps after the bias
    correction, weight decay before the step): it misses the table, which is why v15() does not use it."""
    missed = 0
    for case in OPT:
        config = _config(case["input"])
        config.adam_impl = "torch"
        params, _ = _run(config, case["input"])
        exp = case["expected"]["params"]
        worst = max(abs(a - b) / max(abs(b), 1e-30) for row, erow in zip(params, exp) for a, b in zip(row, erow))
        missed += worst > 1e-6
    assert missed >= len(OPT) // 2


def test_v15_lr_schedule_shape():
    """Warm-up from 0 over the float 5% of max_steps, then cosine to 0 at max_steps, at both levels."""
    config = DreamPRMConfig.v15(max_steps=30)
    for level, base in (("lower", config.lr), ("meta", config.meta_lr)):
        p = torch.nn.Parameter(torch.zeros(1))
        opt, sched = level_optimizer([p], config, level)
        lrs = []
        for _ in range(31):
            lrs.append(opt.param_groups[0]["lr"])
            p.grad = torch.zeros(1)
            opt.step()
            sched.step()
        assert lrs[0] == 0.0 and lrs[1] == pytest.approx(base / 1.5) and lrs[30] == pytest.approx(0.0, abs=1e-20)
        assert max(lrs) <= base and lrs[2] == pytest.approx(base * 0.5 * (1 + math.cos(math.pi * 0.5 / 28.5)))
