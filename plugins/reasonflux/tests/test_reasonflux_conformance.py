"""reasonflux.prm mode="official" against tables recorded from the released ReasonFlux-PRM code.

* worker_input.json: what the released GRPO reward worker feeds its PRM (user turn, rendered chat,
  token ids after right truncation, the position it reads, the separators it counts).
* worker_score.json: its score post-processing (bfloat16 softmax, ``make_step_rewards(...)[0][0]``
  with its underflow quirks, the 0.75 / 0.25 mix with the rule reward, float32).
* scalar_readme.json: the 1.5B ``RewardModel`` (Linear head with bias + sigmoid at the last token)
  on the README's tokenization, with the head saved in the released layout (``reward_head.pt``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from rewardkit_reasonflux import official
from rewardkit_reasonflux.prm import ReasonFluxPRMReward, convert_scalar_checkpoint
from transformers import AutoTokenizer

from rewardkit.testing import tiny_model_dir

TABLES = Path(__file__).resolve().parent / "conformance"
INPUT = json.loads((TABLES / "worker_input.json").read_text())
SCORE = json.loads((TABLES / "worker_score.json").read_text())
SCALAR = json.loads((TABLES / "scalar_readme.json").read_text())


@pytest.fixture(scope="module")
def prm_dirs(tmp_path_factory) -> dict[str, str]:
    """The tiny PRM with each chat template of the table (its tokenizer is also the policy's)."""
    base = tiny_model_dir("prm")
    dirs = {"tiny": str(base)}
    for name, template in INPUT["tokenizers"].items():
        if name == "base":
            continue
        d = tmp_path_factory.mktemp(f"prm_{name}")
        shutil.copytree(base, d, dirs_exist_ok=True)
        tok = AutoTokenizer.from_pretrained(d)
        tok.chat_template = template
        tok.save_pretrained(d)
        dirs[name] = str(d)
    return dirs


@pytest.fixture(scope="module")
def official_rewards(prm_dirs):
    cache: dict[tuple[str, str], ReasonFluxPRMReward] = {}

    def get(policy: str, prm: str) -> ReasonFluxPRMReward:
        if (policy, prm) not in cache:
            cache[(policy, prm)] = ReasonFluxPRMReward(model=prm_dirs[prm], mode="official",
                                                 policy_tokenizer=prm_dirs[policy])
        return cache[(policy, prm)]
    return get


@pytest.mark.parametrize("case", INPUT["cases"], ids=[c["id"] for c in INPUT["cases"]])
def test_worker_input(case, prm_dirs, official_rewards):
    inp, exp = case["input"], case["expected"]
    policy_tok = AutoTokenizer.from_pretrained(prm_dirs[inp["policy_template"]])
    prm_tok = AutoTokenizer.from_pretrained(prm_dirs[inp["prm_template"]])
    user = official.policy_prompt_text(inp["prompt"], policy_tok)
    assert user == exp["user_turn"]
    text, ids = official.prm_input(prm_tok, user, inp["response"], max_length=inp["max_length"])
    assert text == exp["text"]
    assert ids == exp["input_ids"]
    # the reward itself builds the same input from the TRL-style (prompt, completion)
    r = official_rewards(inp["policy_template"], inp["prm_template"])
    r.max_length = inp["max_length"]
    assert r.official_input(inp["prompt"], inp["response"]) == (exp["input_ids"], exp["read_position"],
                                                                exp["n_separators"])


@pytest.mark.parametrize("case", SCORE["cases"], ids=[c["id"] for c in SCORE["cases"]])
def test_worker_score(case):
    inp, exp = case["input"], case["expected"]
    # the scorer's softmax (float32 over the model's logits), then the worker's bfloat16 result
    probs = torch.softmax(torch.tensor(inp["logits"], dtype=torch.bfloat16).float(), dim=-1).tolist()
    p_neg, p_pos = official.to_bfloat16(probs[0]), official.to_bfloat16(probs[1])
    got = official.first_step_score(p_pos, inp["n_separators"], p_neg)
    if "error" in exp:
        assert got is None
        # the reward only sees P(positive): where the released code raises on an underflowed
        # P(negative) it returns P(positive) = 1.0 (documented)
        unknown_neg = official.first_step_score(p_pos, inp["n_separators"])
        assert unknown_neg is None or (p_neg == 0.0 and unknown_neg == 1.0)
        return
    assert got == exp["prm"]
    assert official.first_step_score(p_pos, inp["n_separators"]) == exp["prm"]
    assert official.released_mix(got, inp["rule_score"]) == exp["reward"]


@pytest.fixture(scope="module")
def scalar_prms(tmp_path_factory) -> dict[str, ReasonFluxPRMReward]:
    """Each head saved in the released 1.5B layout (causal LM + reward_head.pt), converted, loaded."""
    out = {}
    for name, head in SCALAR["heads"].items():
        release = tmp_path_factory.mktemp(f"release_{name}")
        shutil.copytree(tiny_model_dir("causal_lm"), release, dirs_exist_ok=True)
        torch.save({"weight": torch.tensor([head["weight"]]), "bias": torch.tensor(head["bias"])},
                   release / "reward_head.pt")
        converted = convert_scalar_checkpoint(release, None, tmp_path_factory.mktemp(f"converted_{name}"))
        out[name] = ReasonFluxPRMReward(model=converted, interface="scalar", mode="official")
    return out


@pytest.mark.parametrize("case", SCALAR["cases"], ids=[c["id"] for c in SCALAR["cases"]])
def test_scalar_readme(case, scalar_prms):
    inp, exp = case["input"], case["expected"]
    r = scalar_prms[inp["head"]]
    r.max_length = inp["max_length"]
    ids, pos, _ = r.official_input(inp["problem"], inp["completion"])
    assert len(ids) == exp["n_tokens"] and pos == len(ids) - 1
    value = r([inp["problem"]], [inp["completion"]])[0]
    # a float32 forward pass: the head runs over every position here, at one position in the
    # released class, so the last bits may differ
    assert value == pytest.approx(exp["reward"], rel=1e-5, abs=1e-7)


RULE = json.loads((TABLES / "rule_strict_box.json").read_text())


@pytest.mark.parametrize("case", RULE["cases"], ids=[c["id"] for c in RULE["cases"]])
def test_rule_strict_box(case):
    inp = case["input"]
    assert official.strict_box_score(inp["solution"], inp["ground_truth"]) == case["expected"]


def test_released_rl_reward_on_every_rule_case(tiny_prm_path):
    """reasonflux.rl (the whole released reward) over the rule table in one batch: its rule part is
    the table's score and its value the worker's float32 mix with the official PRM score."""
    import rewardkit

    r = rewardkit.get_reward("reasonflux.rl", model=str(tiny_prm_path))
    cases = RULE["cases"]
    values = r(["Ben has 5 stones and gets 9 more. How many?"] * len(cases), [c["input"]["solution"] for c in cases],
               solution=[c["input"]["ground_truth"] for c in cases])
    prm_scores = r.last_call.detail("prm_scores")
    assert r.last_call.detail("rule_scores") == [c["expected"] for c in cases]
    assert all(p is not None for p in prm_scores)
    assert values == [official.released_mix(p, c["expected"]) for p, c in zip(prm_scores, cases)]
    # each PRM score is the official reasonflux.prm score of that row alone
    prm = rewardkit.get_reward("reasonflux.prm", model=str(tiny_prm_path), mode="official")
    assert prm(["Ben has 5 stones and gets 9 more. How many?"], [cases[0]["input"]["solution"]]) == prm_scores[:1]


E2E = json.loads((TABLES / "worker_end_to_end.json").read_text())


@pytest.mark.parametrize("case", E2E["cases"], ids=[c["id"] for c in E2E["cases"]])
def test_worker_end_to_end(case, tiny_prm_path):
    """reasonflux.rl with the PRM in bfloat16 (as the worker loads it) gives the released numbers."""
    import rewardkit

    inp, exp = case["input"], case["expected"]
    r = rewardkit.get_reward("reasonflux.rl", model=str(tiny_prm_path),
                             prm_params={"max_length": inp["max_length"], "model_kwargs": {"dtype": "bfloat16"}})
    value = r([inp["prompt"]], [inp["response"]], solution=[inp["solution"]])[0]
    assert r.last_call.detail("rule_scores") == [exp["rule"]]
    if "error" in exp:  # the released worker raises (separator cut off): a counted None here
        assert r.last_call.detail("prm_scores") == [None] and value is None
        assert r.counters["official_error"] == 1
        return
    assert r.last_call.detail("prm_scores") == [exp["prm"]]
    assert value == exp["reward"]
