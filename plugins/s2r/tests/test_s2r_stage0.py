"""Stage-0 data construction: schedule, agreement filter, loopback OpenAI-compatible servers, CLI."""

from __future__ import annotations

import json
import re

import pytest
from rewardkit_s2r.backends import OpenAIBackend, TransformersBackend, serve
from rewardkit_s2r.parse import parse
from rewardkit_s2r.stage0 import (
    ScriptedArithmeticJudge,
    Stage0Config,
    build_trajectories,
    clean_verification,
    judge_verdict,
)

ROWS = [
    {"question": "Q0: 5 + 9?", "solution": "14"},
    {"question": "Q1: 4 + 6?", "solution": "10"},
    {"question": "Q2: 4 * 2?", "solution": "8"},
    {"question": "Q3: 6 + 6?", "solution": "12"},
    {"question": "Q4: 9 + 9?", "solution": "18"},
]
SAMPLES = {
    "Q0: 5 + 9?": ["14"] * 5,                      # w=0 -> 1 round
    "Q1: 4 + 6?": ["10", "9", "9", "10", "10"],    # w=2, one distinct wrong answer -> fallback 2 rounds
    "Q2: 4 * 2?": ["8", "7", "6", "5", None],      # w=4, judge wrong on 6 -> usable {7, 5} -> fallback 3 rounds
    "Q3: 6 + 6?": ["11"] * 5,                      # w=5, no correct sample -> dropped
    "Q4: 9 + 9?": ["18", "17", "17", "16", "18"],  # judge cannot verify 18 -> dropped
}


def policy_fn(messages, n, temperature, top_p, max_tokens):
    q = messages[-1]["content"]
    outs = [f"I compute it. The answer is \\boxed{{{a}}}." if a else "I am not sure." for a in SAMPLES[q]]
    return outs[:n]


def judge_fn(messages, n, temperature, top_p, max_tokens):
    m = re.search(r"Problem: (.*?)\n\nStudent's final answer: (.*)$", messages[-1]["content"], re.S)
    q, a = m.group(1), m.group(2)
    gold = next(r["solution"] for r in ROWS if r["question"] == q)
    if (q, a) == ("Q4: 9 + 9?", "18"):
        return ["Hmm, I cannot verify this answer."] * n
    ok = a == gold
    if (q, a) == ("Q2: 4 * 2?", "6"):
        ok = True  # a judge mistake: the agreement filter must drop it
    return [f"Substituting {a} back, it checks out. " + ("Therefore, the answer is correct." if ok
                                                         else "Therefore, the answer is incorrect.")] * n


@pytest.fixture(scope="module")
def servers():
    policy_server, policy_url = serve(policy_fn)
    judge_server, judge_url = serve(judge_fn)
    yield policy_url, judge_url
    policy_server.stop()
    judge_server.stop()


def test_schedule_and_agreement_filter_over_http(servers):
    policy_url, judge_url = servers
    res = build_trajectories(ROWS, OpenAIBackend(policy_url), OpenAIBackend(judge_url),
                             Stage0Config(downsample=False))
    by_q = {r["question"]: r for r in res.records}
    assert sorted(by_q) == ["Q0: 5 + 9?", "Q1: 4 + 6?", "Q2: 4 * 2?"]
    assert [by_q[q]["rounds"] for q in sorted(by_q)] == [1, 2, 3]
    assert [by_q[q]["difficulty"] for q in sorted(by_q)] == [0, 2, 4]
    q2 = by_q["Q2: 4 * 2?"]
    assert sorted(q2["answers"][:-1]) == ["5", "7"] and q2["answers"][-1] == "8"
    for r in res.records:
        t = parse(r["text"])
        assert t.num_rounds == r["rounds"] and t.final_answer == r["solution"]
        assert [a.verdict for a in t.verifications] == [False] * (r["rounds"] - 1) + [True]
        assert all(a.verdict_source == "explicit" for a in t.verifications)
        assert len({a.answer for a in t.attempts}) == r["rounds"]  # distinct answers
    s = res.stats
    assert s["questions"] == 5 and s["trajectories"] == 3
    assert s["dropped_no_usable_correct"] == 2
    assert s["verifications_disagree"] == 1 and s["verifications_undecided"] == 1
    # unique answers per question, gold first: Q0 1, Q1 2, Q2 4, Q3 2, Q4 3
    assert s["verifications"] == 12
    assert s["samples"] == 25 and s["samples_without_answer"] == 1


def test_keep_probabilities_downsample_easy_items():
    class Always:
        def generate(self, prompts, n, **kw):
            return [["\\boxed{1}"] * n for _ in prompts]

    rows = [{"question": f"q{i}", "solution": "1"} for i in range(300)]
    judge = ScriptedArithmeticJudge({r["question"]: "1" for r in rows}, error_rate=0.0)
    res = build_trajectories(rows, Always(), judge, Stage0Config(seed=3))
    kept = res.stats["trajectories"] / 300
    assert 0.15 < kept < 0.34  # p = 0.76 * 0.45 * 0.7 = 0.239
    assert res.stats["dropped_downsampled"] == 300 - res.stats["trajectories"]


def test_judge_verdict_parsing_and_cleanup():
    assert judge_verdict("x. Therefore, the answer is correct.") is True
    assert judge_verdict("Plugging in gives 3 = 4. So the answer is wrong.") is False
    assert judge_verdict("Everything fits. The answer is plausible.") is True
    assert judge_verdict("The answer checks out. I am done here.") is True
    assert judge_verdict("I cannot verify it.") is None
    assert judge_verdict("Some text without a decision.") is None
    out = clean_verification("Without solving the problem step by step, the original answer is plausible.", True)
    assert out == ", the answer is correct. Therefore, the answer is correct."


def test_real_tiny_model_behind_a_loopback_server(tiny_model_path):
    server, url = serve(TransformersBackend(str(tiny_model_path)))
    try:
        client = OpenAIBackend(url)
        outs = client.generate([[{"role": "user", "content": "Ben has 5 stones."}]], n=2, max_new_tokens=6)
        assert len(outs) == 1 and len(outs[0]) == 2 and all(isinstance(t, str) for t in outs[0])
        # as the judge of stage 0 (a local model that cannot judge: undecided verifications are dropped)
        res = build_trajectories(ROWS[:1], OpenAIBackend(url), client,
                                 Stage0Config(k=2, max_new_tokens=6, judge_max_new_tokens=6, downsample=False))
        assert res.stats["verifications"] >= 1 and res.stats["samples"] == 2
        with pytest.raises(RuntimeError, match="HTTP 404"):
            OpenAIBackend(url.replace("/v1", "/nope")).generate(["x"], max_new_tokens=2)
    finally:
        server.stop()


def test_cli_subcommand(servers, tmp_path):
    from rewardkit.cli import main

    policy_url, _ = servers
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS[:3]))
    out = tmp_path / "traj.jsonl"
    rc = main(["s2r-data", "--data", str(data), "--policy", policy_url, "--judge", "scripted-arithmetic",
               "--no-downsample", "-o", str(out)])
    assert rc == 0
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["question"] for r in recs] == ["Q0: 5 + 9?", "Q1: 4 + 6?", "Q2: 4 * 2?"]
    assert main(["s2r-data", "--data", str(data), "--question-column", "nope", "--policy", policy_url,
                 "--judge", "scripted-arithmetic", "-o", str(out)]) == 2


def test_evaluate_policy_scores_greedy_trajectories_from_a_served_policy():
    from rewardkit_s2r.evaluation import evaluate_policy
    from rewardkit_s2r.parse import format_trajectory

    C, W = "Therefore, the answer is correct.", "Therefore, the answer is incorrect."
    answers = {  # wrong then fixed and verified; right, wrongly doubted then kept; never verified
        "Q0: 5 + 9?": format_trajectory(["\\boxed{13}", "\\boxed{14}"], [W, C]),
        "Q1: 4 + 6?": format_trajectory(["\\boxed{10}"], [W]),
        "Q2: 4 * 2?": "\\boxed{9}",
    }
    seen = []

    def greedy(messages, n, temperature, top_p, max_tokens):
        seen.append((temperature, max_tokens, messages[0]["role"]))
        return [answers[messages[-1]["content"]]] * n

    server, url = serve(greedy)
    try:
        metrics, texts = evaluate_policy(OpenAIBackend(url), ROWS[:3], max_new_tokens=32)
    finally:
        server.stop()
    assert texts == [answers[r["question"]] for r in ROWS[:3]]
    assert seen == [(0.0, 32, "system")] * 3  # greedy, the length asked for, the S2R system prompt
    assert metrics["final_accuracy"] == pytest.approx(2 / 3)  # Q0 and Q1 end right (Q1 despite its doubt)
    assert metrics["incorrect_to_correct"] == pytest.approx(1 / 3)
    assert metrics["verification_accuracy"] == pytest.approx(2 / 3)  # Q0: W right, C right; Q1: W wrong
    assert metrics["any_verification"] == pytest.approx(2 / 3)
    assert metrics["avg_attempts"] == pytest.approx(4 / 3)
    with pytest.raises(ValueError, match="at least one row"):
        evaluate_policy(OpenAIBackend(url), [])
