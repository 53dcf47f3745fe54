"""Built-in rewards: math.accuracy, format.boxed, format.think, length.overlong."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rewardkit
from rewardkit.builtin_rewards import last_boxed
from rewardkit.reward import RewardInputError
from rewardkit.testing import LogCapture


@pytest.fixture(scope="module")
def acc():
    return rewardkit.get_reward("math.accuracy")


@pytest.mark.parametrize("completion,gold,expected", [
    ("so \\boxed{7}", "7", 1.0),
    ("The answer is 7.", "7", 1.0),
    ("\\boxed{\\frac{1}{2}}", "0.5", 1.0),
    ("\\boxed{\\frac{1}{3}}", "\\frac{1}{3}", 1.0),
    ("first \\boxed{3} then \\boxed{4}", "4", 1.0),  # the last boxed answer counts
    ("\\boxed{8}", "7", 0.0),
    ("", "7", 0.0),
    ("<think>maybe \\boxed{9}</think> final \\boxed{7}", "7", 1.0),
    ("<think>I think \\boxed{7}</think> final \\boxed{9}", "7", 0.0),  # thinking is not the answer
    # bare-LaTeX golds (MATH) were parsed as free text: "\\dfrac{3}{4}" read as nothing, "2\\sqrt3" as 2
    ("\\boxed{\\frac34}", "\\dfrac{3}{4}", 1.0),
    ("\\boxed{2\\sqrt{3}}", "2\\sqrt3", 1.0),
    ("\\boxed{2}", "2\\sqrt3", 0.0),
    ("#### 1,234", "Step.\n#### 1234", 1.0),  # GSM8K answers on both sides
])
def test_math_accuracy_cases(acc, completion, gold, expected):
    assert acc(["q"], [completion], solution=[gold]) == [expected]


def test_math_accuracy_conversational_and_missing_gold(acc):
    cap = LogCapture()
    out = acc(["q", "q"], [[{"role": "assistant", "content": "\\boxed{2}"}]] * 2, solution=["2", None],
              **cap.kwargs())
    assert out == [1.0, None]
    assert cap.metrics["rewardkit/math.accuracy/none"] == [1.0]
    assert cap.extra["math.accuracy/gold"] == ["2", "None"]


def test_math_accuracy_gold_column_is_configurable_and_required():
    r = rewardkit.get_reward("math.accuracy", gold_column="answer")
    assert r(["q"], ["\\boxed{5}"], answer=["5"]) == [1.0]
    with pytest.raises(RewardInputError, match="column 'answer'"):
        r(["q"], ["\\boxed{5}"], solution=["5"])


def test_format_rewards():
    boxed = rewardkit.get_reward("format.boxed")
    assert boxed(["q"] * 4, ["\\boxed{1}", "\\boxed{}", "\\boxed{1", ""]) == [1.0, 0.0, 0.0, 0.0]
    think = rewardkit.get_reward("format.think")
    assert think(["q"] * 3, ["<think>\nr\n</think>\nanswer", "no think", ""]) == [1.0, 0.0, 0.0]


def test_overlong_is_trls_soft_punishment():
    r = rewardkit.get_reward("length.overlong", max_completion_len=10, soft_punish_cache=4)
    assert r(["q"] * 3, ["a"] * 3, completion_ids=[[1] * 6, [1] * 8, [1] * 11]) == [0.0, -0.5, -1.0]
    with pytest.raises(RewardInputError, match="needs completion_ids"):
        r(["q"], ["a"])


def test_last_boxed_handles_nesting():
    assert last_boxed("\\boxed{\\frac{1}{2}} and \\boxed{x^{2}}") == "x^{2}"
    assert last_boxed("\\boxed{a} \\boxed{unclosed") == "a"
    assert last_boxed("none") is None


answers = st.integers(min_value=-50, max_value=50).map(str)
noise = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=100).map(lambda b: b.decode("utf-8", errors="surrogateescape")),
    st.lists(st.sampled_from(["\\boxed{", "}", "{", "</think>", "<think>", "The answer is", "$", "\\frac{1}{",
                              "\n\n", "Step 1:"]), max_size=30).map("".join),
    st.just(""),
    st.integers(min_value=1, max_value=3).map(lambda k: "x" * (350_000 * k)),  # up to ~1 MB
)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(noise, answers, st.booleans())
def test_fuzz_math_accuracy_defined_on_any_text(acc, text, gold, inject):
    completion = f"{text} \\boxed{{{gold}}}" if inject else text
    (value,) = acc(["q"], [completion], solution=[gold])
    if len(completion) > acc.max_chars:
        assert value is None  # oversize: defined as "does not apply", counted under oversize
    else:
        assert value in (0.0, 1.0)
        if inject and "</think>" not in text and "<think>" not in text:
            assert value == 1.0
