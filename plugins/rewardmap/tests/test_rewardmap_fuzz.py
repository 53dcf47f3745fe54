"""Hypothesis fuzzing of the RewardMap parsers: any text gets a defined, finite value, never an exception."""

from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rewardkit_rewardmap.rewards import COMPONENTS, MapReward
from rewardkit_rewardmap.scoring import clean_string, extract_plus_answer, parse_sections

METRO = {"Line 1": ["Ångström Plaza", "B", "Café Müller"], "Line 2": ["Café Müller", "東門", "Ñuñoa"],
         "Blue Line": ["Ñuñoa", "Zürich Tor (Transfer Station)"]}
METRO_JSON = json.dumps(METRO, ensure_ascii=False)
STATIONS = ["Ångström Plaza", "B", "Café Müller", "東門", "Ñuñoa", "Zürich Tor", "Nowhere", "", " ", "站"]
FRAGMENTS = st.sampled_from([
    "Route Name: ", "Departure Stop: ", "Arrival Stop: ", "route name:", "ARRIVAL STOP:", "--", "\n--\n", "\n",
    "Line 1", "Line 2", "Blue Line", "八通线", "大兴", "<think>", "</think>", "\\boxed{", "}", "{", "\\boxed{yes}",
    "the answer is ", "The final answer is", "=", "\\approx", ".", ":", " ", "\\text{ ", "\\sqrt", "\\frac", "1/2",
    "yes", "no", "A", "d", "3", "-", "(", ")", "（", "）", "Station", "Univ.", "Road", "\\\\", "$", "∞",
])
TEXT = st.one_of(
    st.text(max_size=300),
    st.lists(st.one_of(FRAGMENTS, st.sampled_from(STATIONS), st.text(max_size=12)), max_size=60).map("".join),
    st.builds(lambda a, b, c, tail: f"Route Name: {a}\nDeparture Stop: {b}\nArrival Stop: {c}{tail}",
              st.sampled_from(list(METRO) + ["Line 9", ""]), st.sampled_from(STATIONS), st.sampled_from(STATIONS),
              st.text(max_size=20)),
    st.integers(min_value=1, max_value=10).map(lambda k: ("Route Name: Line 1\nDeparture Stop: B\n--" * k) * 40),
)
TYPES = st.sampled_from(["planning", "TorF1", "TorF2", "Counting1", "Counting2", "Counting3"])

REWARD = MapReward(name="rewardmap.reward", on_error="raise")
REWARD_PAPER = MapReward(name="rewardmap.reward", transfer_penalty="paper", format_reward=1.0, think=True)


@settings(max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=TEXT, qtype=TYPES, s1=st.sampled_from(STATIONS), s2=st.sampled_from(STATIONS),
       q=st.integers(min_value=0, max_value=4), difficulty=st.sampled_from(["easy", "middle", "hard"]),
       answer=st.integers(min_value=0, max_value=3))
def test_any_text_gets_a_defined_finite_value(text, qtype, s1, s2, q, difficulty, answer):
    cols = dict(type=[qtype], answer=[answer], station_1=[s1], station_2=[s2], question_transfer_count=[q],
                difficulty_city=[difficulty], metro=[METRO_JSON])
    for reward in (REWARD, REWARD_PAPER):
        (value,) = reward(["p"], [text], **cols)
        assert value is not None and math.isfinite(value)
        (comp,) = reward.last_call.detail(COMPONENTS)
        assert comp.detail <= 10.0 and comp.acc in (0.0, 1.0)
        upper = (10 + 0.5 * 10 + reward.format_reward) * 2.0
        assert value <= upper
        if qtype != "planning":
            assert comp.detail == 0.0 and value >= 0.0
    parse_sections(text)
    extract_plus_answer(text)
    clean_string(text)
