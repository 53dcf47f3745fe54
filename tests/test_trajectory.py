"""Step splitting, thinking/answer split, and span -> token mapping, with fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rewardkit.trajectory import (
    parse_trajectory,
    split_steps,
    split_thinking,
    step_token_ends,
    token_char_ends,
)


def test_blank_line_steps_keep_exact_spans():
    text = "  First step.\n\n\nSecond\nstill second.\n \nThird.  "
    steps = split_steps(text)
    assert [s.text for s in steps] == ["First step.", "Second\nstill second.", "Third."]
    assert all(text[s.start:s.end] == s.text for s in steps)


def test_step_k_headers_do_not_confuse_step_10_with_step_1():
    text = "Step 1: a\nStep 2: b\nStep 10: c\nStep 11 - d"
    steps = split_steps(text, "step_k")
    assert [s.text for s in steps] == ["Step 1: a", "Step 2: b", "Step 10: c", "Step 11 - d"]


def test_step_k_keeps_text_before_the_first_header_and_ignores_mid_line_mentions():
    text = "Let me think.\nStep 1: see step 2 below\nStep 2: done"
    steps = split_steps(text, "step_k")
    assert [s.text for s in steps] == ["Let me think.", "Step 1: see step 2 below", "Step 2: done"]


def test_custom_regex_and_callable_splitters():
    assert [s.text for s in split_steps("a ; b;c", "re:\\s*;\\s*")] == ["a", "b", "c"]
    assert [s.text for s in split_steps("abcdef", lambda t: [(0, 2), (2, 6)])] == ["ab", "cdef"]
    with pytest.raises(ValueError, match="outside the text"):
        split_steps("abc", lambda t: [(0, 9)])
    with pytest.raises(ValueError, match="unknown step splitter"):
        split_steps("abc", "paragraphs")


def test_split_thinking_variants():
    t = "<think>plan\n\nmore</think> answer \\boxed{1}"
    thinking, answer = split_thinking(t)
    assert t[thinking[0]:thinking[1]] == "plan\n\nmore" and t[answer[0]:answer[1]] == " answer \\boxed{1}"
    # the chat template opened <think> in the prompt: everything before </think> is thinking
    t2 = "reasoning</think>final"
    th, an = split_thinking(t2)
    assert t2[th[0]:th[1]] == "reasoning" and t2[an[0]:an[1]] == "final"
    # unclosed: all thinking, empty answer
    th, an = split_thinking("<think>never closed")
    assert an[0] == an[1] == len("<think>never closed")
    assert split_thinking("no tags") == (None, (0, 7))


def test_parse_trajectory_splits_the_thinking_part():
    traj = parse_trajectory("<think>a\n\nb</think>\n\nThe answer is 3.")
    assert [s.text for s in traj.steps] == ["a", "b"]
    assert traj.answer_text.strip() == "The answer is 3."


def test_spans_map_to_completion_tokens(tiny_tokenizer):
    text = "Step one is 3 + 4.\n\nSo the answer is \\boxed{7}."
    ids = tiny_tokenizer(text, add_special_tokens=False)["input_ids"] + [tiny_tokenizer.eos_token_id]
    ends = token_char_ends(ids, tiny_tokenizer)
    assert len(ends) == len(ids) and ends[-1] == ends[-2] == len(text)  # eos ends with the last token
    steps = split_steps(text)
    tok_ends = step_token_ends([s.span for s in steps], ends)
    first = tiny_tokenizer.decode(ids[:tok_ends[0]])
    assert first.startswith("Step one is 3 + 4.") and "answer" not in first
    assert tok_ends[-1] == len(ids) - 1  # the eos token follows the last step


def test_token_char_ends_fallback_when_ids_do_not_round_trip(tiny_tokenizer):
    # sampled ids need not be the tokenizer's own segmentation of the decoded text
    a = tiny_tokenizer("ab", add_special_tokens=False)["input_ids"]
    pieces = [tiny_tokenizer.convert_tokens_to_ids(c) for c in "abc"]
    assert None not in pieces
    ends = token_char_ends(pieces, tiny_tokenizer)
    assert ends == [1, 2, 3]
    assert a  # the tokenizer itself works


# -- fuzzing -----------------------------------------------------------------------------------
MARKERS = ["\n\n", "Step 1:", "Step 10:", "<think>", "</think>", "\\boxed{", "}", "\n", " \n \n"]
texts = st.one_of(
    st.text(max_size=300),
    st.lists(st.one_of(st.sampled_from(MARKERS), st.text(max_size=20)), max_size=40).map("".join),
    st.binary(max_size=200).map(lambda b: b.decode("utf-8", errors="surrogateescape")),
    st.integers(min_value=1, max_value=4).map(lambda k: ("x" * 1000 + "\n\n") * (250 * k)),  # up to ~1 MB
)


def _check_steps(text: str, how: str) -> None:
    steps = split_steps(text, how)
    prev_end = 0
    for s in steps:
        assert 0 <= prev_end <= s.start < s.end <= len(text)
        assert text[s.start:s.end] == s.text and s.text == s.text.strip() and s.text
        prev_end = s.end


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(texts, st.sampled_from(["blank_line", "step_k", "line"]))
def test_fuzz_step_splitting_never_fails_and_spans_are_exact(text, how):
    _check_steps(text, how)
    th, an = split_thinking(text)
    assert 0 <= an[0] <= an[1] == len(text)
    if th is not None:
        assert 0 <= th[0] <= th[1] <= an[0]
