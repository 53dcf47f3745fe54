"""Hand-computed S²R rewards, reward contexts and baselines for a small group."""

from __future__ import annotations

import pickle

import pytest
from _s2r_group import GOLD, GROUP
from rewardkit_s2r.advantages import BaselineTable, action_advantages, group_baselines
from rewardkit_s2r.hooks import S2RProcessAdvantageHook
from rewardkit_s2r.rewards import SCORED
from rewardkit_s2r.scoring import trajectory_metrics

from rewardkit import RewardInputError, get_reward, list_hooks, list_rewards


def call(reward, texts=GROUP, gold=GOLD, **kw):
    return reward(prompts=["p"] * len(texts), completions=list(texts), solution=list(gold), **kw)


def test_registered_names():
    assert list_rewards()["s2r.outcome"].kind == "outcome"
    assert list_rewards()["s2r.process"].kind == "process"
    assert {"s2r.process_advantage", "s2r.outcome_rloo"} <= set(list_hooks())


def test_outcome_reward_is_pm1_on_the_last_attempt(log_capture):
    r = get_reward("s2r.outcome")
    assert call(r, **log_capture.kwargs()) == [1.0, 1.0, -1.0, -1.0]
    m = {k: v[-1] for k, v in log_capture.metrics.items()}
    assert m["s2r/final_accuracy"] == 0.5
    assert m["s2r/avg_attempts"] == 1.5
    # 6 verifications: v(t1)=ok,ok  v(t2)=ok  v(t3)=bad  v(t4)=ok,bad
    assert m["s2r/verification_accuracy"] == pytest.approx(4 / 6)
    assert m["s2r/incorrect_to_correct"] == 0.25 and m["s2r/correct_to_incorrect"] == 0.0
    # wrong attempts: t1 s1, t3 s1, t4 s1, t4 s2 -> caught: t1, t4 s1
    assert m["s2r/error_recall"] == pytest.approx(2 / 4)
    # "correct" verdicts: t1 v2 (true), t2 (true), t3 (false), t4 v2 (false)
    assert m["s2r/correct_precision"] == pytest.approx(2 / 4)


def test_outcome_reward_missing_gold_is_none_and_symbolic_match():
    r = get_reward("s2r.outcome")
    assert call(r, texts=[GROUP[1], "\\boxed{0.5}"], gold=[None, "\\frac{1}{2}"]) == [None, 1.0]
    with pytest.raises(RewardInputError):
        r(prompts=["p"], completions=["x"])


def test_process_rewards_contexts_and_weights():
    r = get_reward("s2r.process", bonus=True)
    values = call(r)
    assert values == [pytest.approx(0.5), 1.0, -1.0, pytest.approx(-0.5)]  # reducer "mean"
    d = r.last_call.detail(SCORED)
    assert [x.rewards for x in d] == [[-1, 1, 1, 1], [1, 1], [-1, -1], [-1, 1, -1, -1]]
    assert [x.contexts for x in d] == [["", "R-1", "R-1V1", "R-1V1R1"], ["", "R1"], ["", "R-1"],
                                       ["", "R-1", "R-1V1", "R-1V1R-1"]]
    # bonus: a retry that changes correctness (t1 s2) and verifications of a correct attempt (t1 v2, t2 v1)
    assert [x.weights for x in d] == [[1, 1, 2, 2], [1, 2], [1, 1], [1, 1, 1, 1]]
    steps = r.last_step_scores
    assert [s.scores for s in steps] == [x.rewards for x in d]
    assert steps[0].spans[0] == (0, GROUP[0].index("Wait,"))
    assert steps[0].spans[-1][1] == len(GROUP[0])


def test_truncated_penalty_is_a_flat_minus_one_that_leaves_rewards_contexts_and_table_alone():
    r = get_reward("s2r.process", truncated_penalty=True, bonus=True, eos_token_ids=[0])
    call(r, texts=GROUP[:2], gold=GOLD[:2], completion_ids=[[5, 6, 0], [5, 6]])
    d = r.last_call.detail(SCORED)
    # the real rewards and contexts stay (t2 = right, confirmed); only its last action is penalised
    assert [x.rewards for x in d] == [[-1, 1, 1, 1], [1, 1]]
    assert [x.contexts for x in d] == [["", "R-1", "R-1V1", "R-1V1R1"], ["", "R1"]]
    assert [x.truncated for x in d] == [False, True] and [x.penalised for x in d] == [None, 1]
    assert [s.scores for s in r.last_step_scores] == [[-1, 1, 1, 1], [1, -1]]
    # the advantage of the penalised action is -1, not 2 * (-1 - b): no bonus, no baseline
    table = BaselineTable(min_count=1)
    table.update([("", 1.0), ("R1", 1.0), ("R1", 1.0)])
    assert action_advantages(d, table.baseline)[1] == [0.0, -1.0]
    table.update([(c, x) for s in d for c, x in zip(s.contexts, s.rewards)])
    assert table.sums["R1"] == 3.0 and table.counts["R1"] == 3  # the raw +1 went in, not -1
    with pytest.raises(RewardInputError, match="eos_token_ids"):
        call(get_reward("s2r.process", truncated_penalty=True), texts=GROUP[:1], gold=GOLD[:1])
    # a 'truncated' column works without token ids; a lone attempt or a trailing marker is not penalised
    r = get_reward("s2r.process", truncated_penalty=True)
    call(r, texts=[GROUP[1], "\\boxed{14}", "\\boxed{14}\n\nWait, let me recheck my solution."], gold=["14"] * 3,
         truncated=[True, True, True])
    assert [s.scores for s in r.last_step_scores] == [[1, -1], [1], [1]]


def test_trailing_retry_marker_opens_no_attempt_and_keeps_the_verification_non_final():
    r = get_reward("s2r.process")
    text = "\\boxed{12}\n\nWait, let me recheck my solution.\n\nHmm.\n\nLet me try again.\n\n"
    call(r, texts=[text], gold=["14"])
    d = r.last_call.detail(SCORED)[0]
    assert [a.kind for a in d.trajectory.actions] == ["solve", "verify"]
    # no verdict; followed by a retry -> "incorrect" (like the code), which is right for a wrong attempt
    assert d.trajectory.actions[1].verdict is False and d.rewards == [-1, 1]
    assert d.spans[-1][1] == len(text)


def test_math_verify_timeout_gives_none_not_minus_one(monkeypatch):
    MathAccuracy = type(get_reward("math.accuracy"))  # what the S2R grader asks beyond an exact match
    monkeypatch.setattr(MathAccuracy, "score", lambda self, sample: None)  # what a timed-out grade returns
    for name in ("s2r.outcome", "s2r.process"):
        r = get_reward(name)
        # "0.5" vs "\\frac{1}{2}" needs math-verify; "\\boxed{14}" is decided by the exact match
        assert call(r, texts=["\\boxed{0.5}", "\\boxed{14}"], gold=["\\frac{1}{2}", "14"]) == [None, 1.0]
        assert r.last_call.detail(SCORED)[0] is None


def test_group_baselines_hand_computed():
    r = get_reward("s2r.process")
    call(r)
    pairs = [(c, x) for d in r.last_call.detail(SCORED) for c, x in zip(d.contexts, d.rewards)]
    b = group_baselines(pairs)
    assert b == pytest.approx({"": -0.5, "R-1": 1 / 3, "R-1V1": 0.0, "R-1V1R1": 1.0, "R1": 1.0, "R-1V1R-1": -1.0})
    adv = action_advantages(r.last_call.detail(SCORED), b)
    assert adv[0] == pytest.approx([-0.5, 2 / 3, 1.0, 0.0])
    assert adv[1] == pytest.approx([1.5, 0.0])
    assert adv[2] == pytest.approx([-0.5, -4 / 3])
    assert adv[3] == pytest.approx([-0.5, 2 / 3, -1.0, 0.0])
    rb = get_reward("s2r.process", bonus=True)
    call(rb)
    adv = action_advantages(rb.last_call.detail(SCORED), b)
    assert adv[0] == pytest.approx([-0.5, 2 / 3, 2.0, 0.0]) and adv[1] == pytest.approx([1.5, 0.0])


def test_running_baseline_min_count_and_whitelist():
    r = get_reward("s2r.process")
    call(r)
    pairs = [(c, x) for d in r.last_call.detail(SCORED) for c, x in zip(d.contexts, d.rewards)]
    hook = S2RProcessAdvantageHook(baseline="running", min_count=3, max_context_actions=2)
    first = hook.compute(r.last_call.detail(SCORED), pairs)  # empty table: every baseline is 0
    assert first[0] == pytest.approx([-1, 1, 1, 1])
    # table: "" 4 obs (sum -2), "R-1" 3 obs (sum 1), "R-1V1" 2 obs; 3-action contexts are not tracked
    assert hook.table.counts == {"": 4, "R-1": 3, "R-1V1": 2, "R1": 1}
    second = hook.compute(r.last_call.detail(SCORED), pairs)
    assert second[0] == pytest.approx([-1 + 0.5, 1 - 1 / 3, 1 - 0.0, 1 - 0.0])
    assert second[2] == pytest.approx([-0.5, -4 / 3])
    assert hook.table.counts[""] == 8 and hook.rollouts == 2
    third = hook.compute(r.last_call.detail(SCORED), pairs)  # "R-1V1" now has 4 >= 3 observations: mean 0
    assert third[0][2] == pytest.approx(1.0)
    # the state round-trips
    fresh = S2RProcessAdvantageHook(baseline="running", min_count=3, max_context_actions=2)
    fresh.load_state_dict(pickle.loads(pickle.dumps(hook.state_dict())))
    assert fresh.table == hook.table and fresh.rollouts == 3


def test_baseline_table_default_min_count_is_ten():
    t = BaselineTable()
    t.update([("", 1.0)] * 9)
    assert t.baseline("") == 0.0
    t.update([("", 0.0)])
    assert t.baseline("") == pytest.approx(0.9)


def test_rewards_pickle_and_bad_input():
    r = get_reward("s2r.process")
    call(r)
    clone = pickle.loads(pickle.dumps(r))
    assert call(clone) == call(r)
    assert call(r, texts=["", "\x00\\boxed{14}"], gold=GOLD[:2]) == [-1.0, 1.0]
    assert trajectory_metrics([None]) == {}


def test_code_eval_is_bounded_and_never_runs_model_text():
    import time

    from rewardkit_s2r.code import code_corrected_match

    start = time.perf_counter()
    for answer in ["9**9**9**9", "[0]*10**12", "1<<10**10", "(10**100000)**10**6", "-" * 5000 + "1",
                   "__import__('os').system('echo x')", "open('/etc/passwd').read()", "().__class__"]:
        assert code_corrected_match("\\frac{1}{2}", answer) is False
    assert time.perf_counter() - start < 5
    # what the code's eval accepts still matches: arithmetic, indexing, builtins on numbers
    for answer in ["1/2", "2**-1", "[0.5][0]", "abs(-0.5)", "10**400/10**401*5"]:
        assert code_corrected_match("\\frac{1}{2}", answer) is True


def test_default_answers_drop_escaped_dollars():
    r = get_reward("s2r.outcome")
    assert call(r, texts=["The total is \\boxed{\\$18.90}."], gold=["18.90"]) == [1.0]


def test_code_mode_needs_token_ids_and_a_tokenizer_and_matching_hook():
    r = get_reward("s2r.outcome", mode="code")
    with pytest.raises(RewardInputError, match="completion_ids"):
        call(r, texts=["\\boxed{14}"], gold=["14"])
    with pytest.raises(RewardInputError, match="tokenizer"):
        call(r, texts=["\\boxed{14}"], gold=["14"], completion_ids=[[1, 2]])
    with pytest.raises(ValueError, match="mode must be"):
        get_reward("s2r.process", mode="official")
    with pytest.raises(ValueError, match="context_keys"):
        S2RProcessAdvantageHook(context_keys="paper")


def test_code_context_whitelist():
    from rewardkit_s2r.code import CODE_CONTEXT_KEYS

    hook = S2RProcessAdvantageHook(baseline="running", context_keys="code", min_count=1)
    assert len(CODE_CONTEXT_KEYS) == 164 and "R-1V1R-1V1R-1V1R-1V1R-1V1R-1V1R-1V1R-1" in CODE_CONTEXT_KEYS
    hook.table.update([("", 1.0), ("R1V1", 1.0), ("R1V1R-1V-1R1", 1.0), ("R-1V1", -1.0)])
    # R1V1R-1V-1R1 is not in the released whitelist (R1V1R-1V1R1 is): never tracked, baseline 0
    assert set(hook.table.counts) == {"", "R1V1", "R-1V1"} and hook.table.baseline("R1V1R-1V-1R1") == 0.0


def test_code_split_action_weighting_gives_every_piece_the_same_weight():
    from rewardkit_s2r.code import code_rollout

    vocab = {1: "\\boxed{13}", 2: "Wait", 3: ",", 4: " no.", 5: "Let me try again.\n\n", 6: " \\boxed{14}", 7: " ok", 9: ""}
    ids = [1, 1, 2, 3, 4, 4, 4, 5, 6, 6, 6, 6, 2, 3, 7, 9]
    r = code_rollout(ids, truncated=False, solution="\\boxed{14}", answer="14",
                     decode=lambda t: "".join(vocab[i] for i in t), eos_id=9, verify_ids=[2, 3], retry_ids=[5])
    assert r.valid and [s.kind for s in r.segments] == ["solve", "marker", "verify", "marker", "solve", "marker",
                                                         "verify"]
    values = r.token_values(lambda c: 0.0)
    hook = S2RProcessAdvantageHook(split="code", weighting="action")
    row = hook._code_row(r, values, len(ids))
    # pieces: attempt (2 tokens), verification (3), attempt (4), verification (1), markers (2+1+2)
    n, parts = len(ids), 5
    assert sum(row[0:2]) == pytest.approx(values[0] * n / parts)
    assert sum(row[4:7]) == pytest.approx(values[4] * n / parts)
    assert sum(row[8:12]) == pytest.approx(values[8] * n / parts)
    assert row[14] == pytest.approx(values[14] * n / parts)
    assert [row[k] for k in (2, 3, 7, 12, 13, 15)] == [0.0] * 6  # markers and EOS
    # the retry fixed the answer (x2 bonus) and the final verification confirmed a correct attempt (x2)
    assert (values[0], values[4], values[8], values[14]) == (-1.0, 1.0, 2.0, 2.0)
