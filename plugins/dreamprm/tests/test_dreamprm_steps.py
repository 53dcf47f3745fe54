"""Step splitting of DreamPRM chains: the v1 template, malformed chains, 1.5 heuristics."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rewardkit_dreamprm.steps import Chain, make_chain, split_dreamprm, split_heuristic


def test_v1_template_prefixes_and_final_answer_not_scored():
    text = "Let me think.\nStep 1: 2 + 3 = 5.\nStep 2: 5 * 2 = 10.\nFinal answer: 10"
    chain = make_chain("Q", text)
    assert chain.steps == ["Step 1: 2 + 3 = 5.", "Step 2: 5 * 2 = 10."]
    # prefix i is the text before "Step i+1" (preamble and whitespace included), the last one stops
    # before "Final answer"
    assert chain.prefix(0) == "Let me think.\nStep 1: 2 + 3 = 5.\n"
    assert chain.prefix(1) == "Let me think.\nStep 1: 2 + 3 = 5.\nStep 2: 5 * 2 = 10.\n"
    assert chain.final_answer == "Final answer: 10"
    # 1.5 appends the final answer as the last step
    assert make_chain("Q", text, final_answer_step=True).steps[-1] == "Final answer: 10"


def test_step_10_is_not_step_1():
    lines = [f"Step {k}: x{k}" for k in range(1, 12)]
    chain = make_chain("Q", "\n".join(lines) + "\nFinal answer: 1")
    assert len(chain) == 11
    assert chain.steps[0] == "Step 1: x1"          # str.split("Step 1") would cut at "Step 10" and "Step 11"
    assert chain.steps[9] == "Step 10: x10"
    assert chain.steps[10] == "Step 11: x11"


def test_quoted_lower_header_stays_in_its_step():
    text = "Step 1: a\nStep 2: as in\nStep 1 above, b\nStep 3: c"
    spans, _ = split_dreamprm(text)
    assert [text[a:b] for a, b in spans] == ["Step 1: a", "Step 2: as in\nStep 1 above, b", "Step 3: c"]


@pytest.mark.parametrize("text", ["", "   \n\n ", "Final answer: 3", "no steps at all"])
def test_no_steps_gives_empty_chain(text):
    chain = make_chain("Q", text)
    assert len(chain) == 0
    assert chain.steps == []


def test_empty_steps_are_dropped_and_from_steps_rejects_them():
    text = "Step 1:\nStep 2: real\nStep 3:   \nFinal answer: 2"
    chain = make_chain("Q", text)
    # header-only steps still carry their header text; whitespace-only content never makes a step
    assert all(s.strip() for s in chain.steps)
    with pytest.raises(ValueError, match="empty"):
        Chain.from_steps("Q", ["a", "  ", "b"])


def test_heuristic_numbered_lines_then_blank_lines():
    spans, fa = split_heuristic("1. first\n2. second\n3. third\nAnswer: 7")
    text = "1. first\n2. second\n3. third\nAnswer: 7"
    assert [text[a:b] for a, b in spans] == ["1. first", "2. second", "3. third"]
    assert text[fa[0]:fa[1]] == "Answer: 7"
    t2 = "We add.\n\nThen we carry.\n\nAnswer: 4"
    spans, _ = split_heuristic(t2)
    assert [t2[a:b] for a, b in spans] == ["We add.", "Then we carry."]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="ab 12+=\n", min_size=0, max_size=12), min_size=0, max_size=12))
def test_spans_are_exact_and_ordered(parts):
    text = "".join(f"Step {k + 1}: {p}\n" for k, p in enumerate(parts)) + "Final answer: 0"
    chain = make_chain("Q", text)
    last = 0
    for (a, b), s in zip(chain.spans, chain.steps):
        assert last <= a < b <= len(text) and text[a:b] == s and s == s.strip()
        last = b


def test_one_line_headers_and_final_answer_are_split():
    text = "Step 1: a = 2. Step 2: b = 3. Final answer: 5"
    chain = make_chain("Q", text)
    assert chain.steps == ["Step 1: a = 2.", "Step 2: b = 3."]
    assert chain.final_answer == "Final answer: 5"
    assert [chain.prefix(i) for i in range(2)] == ["Step 1: a = 2. ", "Step 1: a = 2. Step 2: b = 3. "]


@pytest.mark.parametrize("text", [
    "Step 1: a = 2.\nStep 2: b = 3, so the final answer: 5",
    "**Step 1:** a = 2. **Step 2:** b = 3. **Final answer:** 5",
    "Step 1: a\nFinal answer: 5\nStep 2: checking again",
    "1. a = 2\n2. b = 3. Final answer: 5",
])
def test_final_answer_is_never_inside_a_scored_step_or_prefix(text):
    from rewardkit_dreamprm.rewards import v1_chain

    for chain in (make_chain("Q", text, "dreamprm"), make_chain("Q", text, "heuristic"), v1_chain("Q", text)):
        assert len(chain) >= 1 or "Step" not in text
        for i in range(len(chain)):
            assert "answer:" not in chain.steps[i].lower()
            assert "answer:" not in chain.prefix(i).lower()


def test_default_keeps_whitespace_and_preamble_and_scores_the_last_step_without_final_answer():
    text = "Let me see.\n\nStep 1: a = 2.\n\nStep 2: b = 3.\n\n"
    chain = make_chain("Q", text)
    assert [chain.prefix(i) for i in range(2)] == ["Let me see.\n\nStep 1: a = 2.\n\n",
                                                   "Let me see.\n\nStep 1: a = 2.\n\nStep 2: b = 3."]
    # the released split scores only the first step here (no "Final answer")
    official = make_chain("Q", text, "official")
    assert [official.prefix(i) for i in range(len(official))] == ["Let me see.\n\nStep 1: a = 2.\n\n"]


def test_inline_step_mention_is_not_a_header():
    text = "Step 1: as in step 2 we add.\nStep 2: add.\nFinal answer: 5"
    assert make_chain("Q", text).steps == ["Step 1: as in step 2 we add.", "Step 2: add."]
