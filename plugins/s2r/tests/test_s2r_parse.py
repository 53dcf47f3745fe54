"""Parser cases from the S²R spec (methods/s2r.md §1), stray markers, token ids, fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rewardkit_s2r.parse import (
    Markers,
    format_trajectory,
    normalize_answer,
    parse,
    parse_verdict,
    regex_parse,
    split_token_ids,
)

WRONG = "Therefore, the answer is incorrect."
RIGHT = "Therefore, the answer is correct."
S1 = "Ben starts with 5 stones. 5 + 9 = 13. The answer is \\boxed{13}."
V1 = "If Ben had 13 stones, giving back 9 leaves 4, not 5. " + WRONG
S2 = "5 + 9 = 14. The answer is \\boxed{14}."
V2 = "Working backwards, 14 - 9 = 5, which matches. " + RIGHT


def two_rounds() -> str:
    return format_trajectory([S1, S2], [V1, V2])


def test_format_matches_the_released_construction():
    text = two_rounds()
    assert text == (S1 + "\n\nWait, let me recheck my solution.\n\n" + V1 + "\n\nLet me try again.\n\n" + S2
                     + "\n\nWait, let me recheck my solution.\n\n" + V2)


def test_two_round_trajectory_actions_spans_answers_verdicts():
    text = two_rounds()
    t = parse(text)
    assert [a.kind for a in t.actions] == ["solve", "verify", "solve", "verify"]
    assert [a.index for a in t.actions] == [0, 0, 1, 1]
    # spans partition the text exactly
    assert t.actions[0].start == 0 and t.actions[-1].end == len(text)
    for a, b in zip(t.actions, t.actions[1:]):
        assert a.end == b.start
    # the blank line before "Wait," belongs to the attempt; the marker opens the verification
    assert text[t.actions[0].start:t.actions[0].end] == S1 + "\n\n"
    assert t.segment_text(t.actions[1]).startswith("Wait, let me recheck my solution.\n\n" + V1)
    assert t.body(t.actions[1]) == V1 + "\n\n"
    # "Let me try again.\n\n" opens the next attempt
    assert t.segment_text(t.actions[2]) == "Let me try again.\n\n" + S2 + "\n\n"
    assert t.body(t.actions[2]) == S2 + "\n\n"
    assert [a.answer for a in t.attempts] == ["13", "14"]
    assert [a.verdict for a in t.verifications] == [False, True]
    assert [a.verdict_source for a in t.verifications] == ["explicit", "explicit"]
    assert t.final_answer == "14" and t.num_rounds == 2 and t.ends_with_verification


def test_single_round_and_unverified_last_attempt():
    t = parse(format_trajectory([S2], [V2]))
    assert [a.kind for a in t.actions] == ["solve", "verify"]
    t = parse(format_trajectory([S1, S2], [V1]))  # truncated before the last verification
    assert [a.kind for a in t.actions] == ["solve", "verify", "solve"]
    assert t.final_answer == "14" and not t.ends_with_verification
    t = parse("no markers at all, \\boxed{7}")
    assert len(t.actions) == 1 and t.final_answer == "7"


def test_verification_without_verdict_follows_the_default_rule():
    # middle verification with no verdict: a retry follows, so it rejected the answer
    text = format_trajectory([S1, S2], ["Let me look at it again from the start.", "I think it is fine now"])
    t = parse(text)
    v1, v2 = t.verifications
    assert (v1.verdict, v1.verdict_source) == (False, "default")
    assert (v2.verdict, v2.verdict_source) == (True, "default")


def test_verdict_rules():
    assert parse_verdict("So it is fine. Therefore, the answer is incorrect.", is_last=True) == (False, "explicit")
    # the last explicit verdict wins; non-verdict words are ignored
    assert parse_verdict(f"{RIGHT} Hmm. {WRONG}", is_last=True) == (False, "explicit")
    assert parse_verdict(f"{WRONG} On second thought {RIGHT}", is_last=False) == (True, "explicit")
    assert parse_verdict("Therefore, the answer is cannot be verified.", is_last=True) == (True, "default")
    # keyword fallback, incorrect first
    assert parse_verdict("The answer 13 is incorrect since 13 - 9 = 4.", is_last=True) == (False, "keyword")
    assert parse_verdict("I cannot verify this.", is_last=True) == (False, "keyword")
    assert parse_verdict("The value is indeed 14.", is_last=False) == (True, "keyword")
    assert parse_verdict("It is verified to be correct.", is_last=False) == (True, "keyword")
    assert parse_verdict("", is_last=False) == (False, "default")


def test_stray_markers_inside_a_solution_do_not_split_it():
    attempt = ("Wait, 5 + 9 is not 13. Let me try again.\nLet me try again.\n5 + 9 = 14, "
               "so Wait, let me recheck my solution. is just a phrase here. \\boxed{14}")
    text = format_trajectory([attempt], [V2])
    t = parse(text)
    assert [a.kind for a in t.actions] == ["solve", "verify"]
    assert t.body(t.actions[0]).strip() == attempt
    assert t.final_answer == "14"
    # a retry marker inside a verification that is not at a line start does not split it either
    text = format_trajectory([S1, S2], ["I will not say Let me try again. here. " + WRONG, V2])
    assert [a.kind for a in parse(text).actions] == ["solve", "verify", "solve", "verify"]
    # a second verify marker inside a verification stays in it
    text = S2 + "\n\nWait, let me recheck my solution.\n\nFirst check.\n\nWait, let me recheck my solution.\n\n" + RIGHT
    assert [a.kind for a in parse(text).actions] == ["solve", "verify"]


def test_line_start_off_and_custom_markers():
    mk = Markers(verify="<verify>", retry="<retry>", line_start=False,
                 verdict_regex=r"VERDICT: (\w+)\.", correct_words=("yes",), incorrect_words=("no",))
    text = "x = 3 \\boxed{3}<verify>3*2=6. VERDICT: no.<retry>x = 4 \\boxed{4}<verify>ok VERDICT: yes."
    t = parse(text, mk)
    assert [a.kind for a in t.actions] == ["solve", "verify", "solve", "verify"]
    assert [a.answer for a in t.attempts] == ["3", "4"]
    assert [a.verdict for a in t.verifications] == [False, True]
    assert parse(text, {"verify": "<verify>", "retry": "<retry>", "line_start": False}).num_rounds == 2
    with pytest.raises(ValueError):
        Markers(verify="x", retry="x")


def test_answer_normalisation():
    assert normalize_answer("x = 5") == "5"
    assert normalize_answer("\\frac{1}2") == "\\frac{1}{2}"
    assert normalize_answer(" 14.\nmore") == "14"
    assert normalize_answer("\\text{12 }") == "12"
    assert normalize_answer("") is None
    t = parse("so \\boxed{\\frac{3}{\\sqrt{2}}} and earlier \\boxed{1}" + "\n\nWait, let me recheck my solution.\n\nok")
    assert t.final_answer is None or t.final_answer == "1"  # last boxed in the attempt is the first here
    t = parse("\\boxed{1} then \\boxed{\\frac{3}{\\sqrt{2}}}")
    assert t.final_answer == "\\frac{3}{\\sqrt{2}}"
    assert parse("unbalanced \\boxed{12").final_answer is None


def test_token_id_split_on_real_tokenizer(tiny_tokenizer):
    text = two_rounds()
    ids = tiny_tokenizer.encode(text, add_special_tokens=False) + [tiny_tokenizer.eos_token_id]
    segs = split_token_ids(ids, tiny_tokenizer)
    kinds = [k for k, _, _ in segs]
    assert kinds == ["solve", "marker", "verify", "marker", "solve", "marker", "verify"]
    # segments cover the ids in order
    assert segs[0][1] == 0 and segs[-1][2] == len(ids)
    assert all(a[2] == b[1] for a, b in zip(segs, segs[1:]))
    markers = [tiny_tokenizer.decode(ids[s:e]) for k, s, e in segs if k == "marker"]
    assert markers == ["Wait,", "Let me try again.\n\n", "Wait,"]
    # the released code splits on "Wait," anywhere: a stray one turns the attempt into a verification (and the
    # real marker after it is merged as a consecutive identical marker); the text parser keeps the attempt whole
    stray = format_trajectory(["Wait, 5 + 9 = 14. \\boxed{14}"], [V2])
    ids = tiny_tokenizer.encode(stray, add_special_tokens=False)
    assert [k for k, _, _ in split_token_ids(ids, tiny_tokenizer)] == ["marker", "verify"]
    stray = format_trajectory(["5 + 9 = 13. Wait, no: 5 + 9 = 14. \\boxed{14}"], [V2])
    ids = tiny_tokenizer.encode(stray, add_special_tokens=False)
    assert [k for k, _, _ in split_token_ids(ids, tiny_tokenizer)] == ["solve", "marker", "verify"]
    assert [a.kind for a in parse(stray).actions] == ["solve", "verify"]


def test_regex_baseline_agrees_on_clean_trajectories():
    assert regex_parse(two_rounds()) == [("solve", "13"), ("verify", "incorrect"), ("solve", "14"),
                                         ("verify", "correct")]


FRAGMENTS = st.sampled_from([
    "Wait, let me recheck my solution.", "Let me try again.", "Wait,", "\n", "\n\n", " ", "\\boxed{", "}", "{",
    "\\boxed{12}", "Therefore, the answer is correct.", "Therefore, the answer is incorrect.",
    "Therefore, the answer is ", "is incorrect", "is indeed", "=", "\\frac{1}2", "5 + 9 = 14.", "é", "\x00", "🙂",
])
# fragments plus short free text (a small alphabet of the characters that matter keeps generation cheap)
FREE = st.text(alphabet="abW, .\n{}\\=$:/é🙂\x00", max_size=6)
TEXTS = st.lists(st.one_of(FRAGMENTS, FREE), max_size=16).map("".join)


@settings(max_examples=5000, deadline=None)
@given(text=TEXTS, line_start=st.booleans())
def test_fuzz_parser_never_raises_and_partitions(text, line_start):
    t = parse(text, Markers(line_start=line_start))
    assert t.actions and t.actions[0].kind == "solve" and t.actions[0].start == 0
    assert t.actions[-1].end == len(text)
    for a, b in zip(t.actions, t.actions[1:]):
        assert a.end == b.start and a.kind != b.kind
    for a in t.actions:
        assert a.start <= a.body_start <= a.end
        assert (a.verdict is None) == (a.kind == "solve")


@settings(max_examples=500, deadline=None)
@given(ids=st.lists(st.integers(0, 6), max_size=40))
def test_fuzz_token_split_covers_ids(ids):
    segs = split_token_ids(ids, verify_ids=[1, 2], retry_ids=[3])
    assert segs[0][1] == 0 and segs[-1][2] == len(ids)
    assert all(a[2] == b[1] for a, b in zip(segs, segs[1:]))
