"""One test per RewardMap rule (docs/methods/rewardmap.md; the spec's worked examples are tests)."""

from __future__ import annotations

import json
import pickle

import pytest
from rewardkit_rewardmap.metro import MetroCache, read_metro_json
from rewardkit_rewardmap.rewards import COMPONENTS, MapReward, PlusReward, RouteReward
from rewardkit_rewardmap.scoring import (
    Metro,
    clean_string,
    difficulty_weight,
    extract_plus_answer,
    parse_sections,
    planning_accuracy,
    planning_detail,
    plus_accuracy,
)

from rewardkit import RewardInputError, get_reward, list_rewards

# a slice of Singapore's network, enough for the paper's Figure 2 case
SINGAPORE = {
    "Downtown Line": ["Bukit Panjang", "Bencoolen", "Fort Canning", "Chinatown (Transfer Station)", "Telok Ayer"],
    "North East Line": ["HarbourFront", "Outram Park", "Chinatown (Transfer Station)", "Clarke Quay", "Dhoby Ghaut"],
    "Circle Line": ["Dhoby Ghaut", "Bras Basah", "Esplanade"],
}
SMALL = {"Line 1": ["A", "B", "C", "D"], "Line 2": ["C", "E", "F"], "Line 3": ["F", "G"]}


def seg(line: str, dep: str, arr: str) -> str:
    return f"Route Name: {line}\nDeparture Stop: {dep}\nArrival Stop: {arr}"


def route(*segments: tuple[str, str, str]) -> str:
    return "\n--\n".join(seg(*s) for s in segments)


def planning_cols(n, metro, s1, s2, q, difficulty="easy"):
    return dict(station_1=[s1] * n, station_2=[s2] * n, question_transfer_count=[q] * n,
                difficulty_city=[difficulty] * n, metro=[json.dumps(metro)] * n)


def score_route(texts, metro, s1, s2, q, difficulty="easy", **params):
    r = RouteReward(name="rewardmap.route", **params)
    return r(["p"] * len(texts), list(texts), **planning_cols(len(texts), metro, s1, s2, q, difficulty))


M = Metro.from_mapping(SMALL)


# -- worked examples (spec §1.3) -----------------------------------------------------------------

BASE_ANSWER = seg("Downtown Line", "Bencoolen", "Clarke Quay")
REWARDMAP_ANSWER = route(("Downtown Line", "Bencoolen", "Chinatown"), ("North East Line", "Chinatown", "Clarke Quay"))


def test_worked_example_singapore_official_rule():
    assert score_route([BASE_ANSWER, REWARDMAP_ANSWER], SINGAPORE, "Bencoolen", "Clarke Quay", 1, "hard") == [5.0, 24.0]


def test_worked_example_singapore_paper_rule():
    assert score_route([BASE_ANSWER, REWARDMAP_ANSWER], SINGAPORE, "Bencoolen", "Clarke Quay", 1, "hard",
                       transfer_penalty="paper") == [5.0, 29.0]


def test_worked_example_zero_transfer_question():
    texts = [seg("Line 1", "A", "B"), seg("Line 2", "A", "B"), seg("Line 1", "B", "A"), "I don't know"]
    assert score_route(texts, SMALL, "A", "B", 0, "easy") == [10.5, -1.5, 0.0, 0.0]


# -- station normalisation (clean_string) ----------------------------------------------------------

@pytest.mark.parametrize("raw, cleaned", [
    ("Metro Centre", "centre"), ("metro park", "park"),                 # drops Metro / metro
    ("King's Cross, North*", "kingscrossnorth"),                        # apostrophes, commas, asterisks
    ("Clarke Quay Station", "clarkequay"), ("clarke quay station", "clarkequay"),  # Station / station
    ("Nanjing Road", "nanjinglu"), ("nanjing road", "nanjinglu"),       # Road / road -> lu
    ("Asian Games Village", "yayuncun"),
    ("西直门站", "西直门"),                                              # trailing 站
    ("Chinatown (Transfer Station)", "chinatown"), ("东单（换乘站）", "东单"),  # ASCII / full-width brackets
    ("Bukit-Panjang  \t Hill", "bukitpanjanghill"),                     # whitespace and hyphens
    ("Line\nBreak", "linebreak"),
])
def test_clean_string_normalisation(raw, cleaned):
    assert clean_string(raw) == cleaned


def test_clean_string_univ_tech_quirk_of_the_official_order():
    # "Univ." -> "University" then "Univ" -> "University" again: the official chain gives these
    assert clean_string("Univ. Town") == clean_string("University Town") == "universityersitytown"
    assert clean_string("Univ Town") == "universitytown"
    assert clean_string("Tech. Park") == clean_string("Technology Park") == "technologynologypark"


# -- parsing --------------------------------------------------------------------------------------

def test_parse_splits_on_every_double_dash_and_needs_all_three_labels():
    text = "Plan: go -- now\n" + route(("Line 1", "A", "C"), ("Line 2", "C", "F")) + "\n--\nRoute Name: Line 3\n"
    secs = parse_sections(text)
    assert [s.route for s in secs] == ["Line 1", "Line 2"]   # the prose and the label-less tail are skipped


def test_parse_label_case_strict_for_accuracy_lenient_for_detail():
    text = "route name: Line 1\ndeparture stop: A\narrival stop: B"
    secs = parse_sections(text)
    assert len(secs) == 1 and not secs[0].strict
    assert secs[0].route == "Wrong"            # the field patterns are case-sensitive
    assert not planning_accuracy(secs, M, "A", "B")


def test_parse_requires_newline_after_route_and_departure_lines():
    secs = parse_sections("Route Name: Line 1 Departure Stop: A Arrival Stop: B")
    assert secs[0].route == "Wrong" and secs[0].depart == "Wrong"


def test_arrival_swallows_rest_of_section():
    assert parse_sections(seg("Line 1", "A", "B") + "\nHave a nice trip!")[0].arrive == "bhaveanicetrip!"
    assert parse_sections(seg("Line 1", "A", "B."))[0].arrive == "b."
    assert score_route([seg("Line 1", "A", "B") + "."], SMALL, "A", "B", 0) == [0.0]


def test_double_dash_in_reasoning_breaks_the_route():
    text = "I think -- Route Name: x, Departure Stop: y, Arrival Stop: z --\n" + seg("Line 1", "A", "B")
    secs = parse_sections(text)
    assert len(secs) == 2 and secs[0].depart == "Wrong"     # a bogus first section
    assert not planning_accuracy(secs, M, "A", "B")


def test_leading_prose_before_first_section_is_tolerated():
    assert score_route(["Let me look at the map.\n" + seg("Line 1", "A", "B")], SMALL, "A", "B", 0) == [10.5]


# -- correctness (ReasonMap Algorithm 1) ----------------------------------------------------------

def test_acc_needs_first_departure_and_last_arrival():
    assert planning_accuracy(parse_sections(seg("Line 1", "A", "B")), M, "A", "B")
    assert not planning_accuracy(parse_sections(seg("Line 1", "A", "C")), M, "A", "B")
    assert not planning_accuracy(parse_sections(seg("Line 1", "B", "A")), M, "A", "B")


def test_acc_route_names_exact_keys_no_alias():
    assert not planning_accuracy(parse_sections(seg("1", "A", "B")), M, "A", "B")
    assert not planning_accuracy(parse_sections(seg("line 1", "A", "B")), M, "A", "B")


def test_acc_beijing_route_name_hacks():
    beijing = Metro.from_mapping({"Line 1": ["A", "B"], "Line 4": ["C", "D"]})
    assert planning_accuracy(parse_sections(seg("八通线", "A", "B")), beijing, "A", "B")
    assert planning_accuracy(parse_sections(seg("大兴线", "C", "D")), beijing, "C", "D")
    assert not planning_accuracy(parse_sections(seg("八通线", "A", "B")), beijing, "A", "B", aliases=False)


def test_acc_both_stops_must_be_on_the_line_direction_not_checked():
    assert not planning_accuracy(parse_sections(seg("Line 1", "A", "E")), M, "A", "E")
    assert planning_accuracy(parse_sections(seg("Line 1", "D", "A")), M, "D", "A")


def test_acc_transfers_must_connect():
    ok = route(("Line 1", "A", "C"), ("Line 2", "C", "F"))
    gap = route(("Line 1", "A", "B"), ("Line 2", "C", "F"))
    assert planning_accuracy(parse_sections(ok), M, "A", "F")
    assert not planning_accuracy(parse_sections(gap), M, "A", "F")


def test_acc_does_not_require_optimal_route():
    detour = route(("Line 1", "A", "C"), ("Line 2", "C", "E"), ("Line 2", "E", "F"))
    assert planning_accuracy(parse_sections(detour), M, "A", "F")


# -- detail (partial credit) -----------------------------------------------------------------------

def test_detail_zero_unless_both_endpoints_match():
    # correct line names and transfers, but the last arrival is wrong
    text = route(("Line 1", "A", "C"), ("Line 2", "C", "E"))
    assert planning_detail(parse_sections(text), M, "A", "F", 1) == 0.0


def test_detail_endpoint_bonus_and_official_minus_five_on_last_segment():
    # q = 1, one segment on a wrong-but-existing line: +2 endpoints, +3 existing name, no -5 (1 > 1 false)
    assert planning_detail(parse_sections(seg("Line 3", "A", "F")), M, "A", "F", 1) == 5.0
    # q = 0: every segment is penalised (i+1 > 0): +2 -5 +4
    assert planning_detail(parse_sections(seg("Line 1", "A", "B")), M, "A", "B", 0) == 1.0


def test_detail_paper_penalty_compares_transfers_so_far():
    text = route(("Line 1", "A", "C"), ("Line 2", "C", "F"))   # exactly q = 1 transfer
    official = planning_detail(parse_sections(text), M, "A", "F", 1)
    paper = planning_detail(parse_sections(text), M, "A", "F", 1, transfer_penalty="paper")
    assert official == 2 + 3 + 1 - 5 + 3 == 4.0
    assert paper == 2 + 3 + 1 + 3 == 9.0
    with pytest.raises(ValueError):
        planning_detail(parse_sections(text), M, "A", "F", 1, transfer_penalty="nope")


def test_detail_plus_four_only_when_line_holds_both_endpoints():
    assert planning_detail(parse_sections(seg("Line 1", "A", "B")), M, "A", "B", 0) == 2 - 5 + 4
    assert planning_detail(parse_sections(seg("Line 2", "A", "B")), M, "A", "B", 0) == 2 - 5
    assert planning_detail(parse_sections(seg("No Such Line", "A", "B")), M, "A", "B", 0) == 2 - 5


def test_detail_plus_three_for_any_existing_line_when_transfers_needed():
    right = planning_detail(parse_sections(seg("Line 1", "A", "F")), M, "A", "F", 2)
    wrong = planning_detail(parse_sections(seg("Line 3", "A", "F")), M, "A", "F", 2)
    missing = planning_detail(parse_sections(seg("Line 9", "A", "F")), M, "A", "F", 2)
    assert right == wrong == 5.0 and missing == 2.0


def test_detail_plus_one_per_valid_transfer_up_to_q():
    two = route(("Line 1", "A", "C"), ("Line 2", "C", "F"), ("Line 3", "F", "G"))
    # q = 2: seg0 +3+1, seg1 +3+1, seg2 -5+3
    assert planning_detail(parse_sections(two), M, "A", "G", 2) == 2 + 4 + 4 - 5 + 3
    # q = 1: seg0 +3+1, seg1 -5+3 (its transfer is beyond q: no +1), seg2 -5+3
    assert planning_detail(parse_sections(two), M, "A", "G", 1) == 2 + 4 - 2 - 2
    # a broken transfer earns no +1
    broken = route(("Line 1", "A", "B"), ("Line 2", "C", "F"), ("Line 3", "F", "G"))
    assert planning_detail(parse_sections(broken), M, "A", "G", 2) == 2 + 3 + 4 - 5 + 3


def test_detail_capped_at_ten_without_lower_bound():
    long_route = route(("Line 1", "A", "C"), *[("Line 2", "C", "C")] * 5, ("Line 2", "C", "F"))
    low = planning_detail(parse_sections(long_route), M, "A", "F", 0)
    assert low < -20
    big = Metro.from_mapping({f"L{k}": [f"S{k}", f"S{k + 1}"] for k in range(8)})
    chain = route(*[(f"L{k}", f"S{k}", f"S{k + 1}") for k in range(8)])
    assert planning_detail(parse_sections(chain), big, "S0", "S8", 8) == 10.0   # 2 + 8*3 + 7 = 33 -> 10


# -- difficulty weights ----------------------------------------------------------------------------

def test_weight_map_difficulty_and_transfer_bonus():
    assert difficulty_weight("planning", "easy", 0) == 1.0
    assert difficulty_weight("planning", "middle", 1) == pytest.approx(1.7)
    assert difficulty_weight("planning", "hard", 3) == 2.0
    assert difficulty_weight("TorF1", "hard") == 1.5          # Plus: map weight only
    assert difficulty_weight("planning", "middle", 2, gamma={"easy": 1, "middle": 1.5, "hard": 2},
                             beta=(0.0, 0.8)) == pytest.approx(2.3)


def test_weight_errors_on_unknown_labels_and_negative_transfers():
    with pytest.raises(ValueError):
        difficulty_weight("planning", "medium", 0)
    with pytest.raises(ValueError):
        difficulty_weight("planning", "easy", -1)
    with pytest.raises(ValueError):
        difficulty_weight("Counting9", "easy")
    r = RouteReward(name="r")
    with pytest.raises(ValueError):
        r(["p"], [seg("Line 1", "A", "B")], **planning_cols(1, SMALL, "A", "B", -1))


def test_difficulty_weights_off_gives_raw_scores():
    texts = [BASE_ANSWER, REWARDMAP_ANSWER]
    assert score_route(texts, SINGAPORE, "Bencoolen", "Clarke Quay", 1, "hard", difficulty_weights=False) == [2.5, 12.0]


def test_alpha_scales_detail():
    assert score_route([REWARDMAP_ANSWER], SINGAPORE, "Bencoolen", "Clarke Quay", 1, "hard", alpha=0.3) == \
        [pytest.approx((10 + 0.3 * 4) * 2.0)]


# -- ReasonMap-Plus ----------------------------------------------------------------------------------

@pytest.mark.parametrize("response, extracted", [
    ("so \\boxed{3} or rather \\boxed{4}", "4"),              # the last box
    ("\\boxed{Yes}", "yes"),                                  # lower-cased
    ("\\boxed{x = 7}", "7"),                                  # the part after "="
    ("\\boxed{ 1 2 }", "12"),                                 # spaces removed
    ("\\boxed{5.}", "5"),                                     # rstrip "."
    ("The answer is 6. Because lines.", "6"),                 # phrase, first sentence
    ("the final answer is: no\nmore text", "no"),             # lstrip ":" , first line
    ("The correct answer is B", "b"),
    ("yes", "yes"),                                           # no box, no phrase: the whole text
    ("\\boxed{\\text{yes}}", "{yes}"),                        # official quirk: braces stay
])
def test_plus_extraction(response, extracted):
    assert extract_plus_answer(response) == extracted


def test_plus_exact_match_rules():
    assert plus_accuracy("TorF1", "yes", 1) and plus_accuracy("TorF2", "no", 0)
    assert not plus_accuracy("TorF1", "true", 1)
    assert plus_accuracy("Counting2", "3", 3) and not plus_accuracy("Counting2", "3.0", 3)
    assert not plus_accuracy("Counting3", "three", 3)
    assert plus_accuracy("Counting1", "c", 2) and not plus_accuracy("Counting1", "2", 2)
    with pytest.raises(ValueError):
        plus_accuracy("Counting7", "1", 1)


def test_plus_reward_weight_by_map_only_no_detail():
    r = PlusReward(name="rewardmap.plus")
    vals = r(["p"] * 5, ["\\boxed{yes}", "\\boxed{no}", "\\boxed{4}", "\\boxed{D}", "\\boxed{2}"],
             type=["TorF1", "TorF2", "Counting2", "Counting1", "Counting3"], answer=[1, 1, "4", 3, 3],
             difficulty_city=["easy", "middle", "hard", "middle", "hard"])
    assert vals == [10.0, 0.0, 15.0, 12.0, 0.0]
    assert all(c.detail == 0.0 for c in r.last_call.detail(COMPONENTS))


def test_plus_reward_skips_planning_rows_and_route_skips_plus_rows():
    plus = PlusReward(name="p")
    assert plus(["p"], ["\\boxed{yes}"], type=["planning"], answer=["x"], difficulty_city=["easy"]) == [None]
    rt = RouteReward(name="r")
    cols = planning_cols(1, SMALL, "A", "B", 0)
    assert rt(["p"], ["\\boxed{yes}"], type=["TorF1"], **cols) == [None]


# -- the dispatching reward, format term, think, protocol ------------------------------------------

def test_dispatch_reward_mixed_batch():
    r = MapReward(name="rewardmap.reward")
    texts = [REWARDMAP_ANSWER, "\\boxed{yes}"]
    vals = r(["p"] * 2, texts, type=["planning", "TorF1"], answer=["", 1], station_1=["Bencoolen", ""],
             station_2=["Clarke Quay", ""], question_transfer_count=[1, 0], difficulty_city=["hard", "middle"],
             metro=[SINGAPORE, None])
    assert vals == [24.0, 12.0]


def test_format_reward_is_inside_the_weight():
    vals = score_route([REWARDMAP_ANSWER, "Route Name: Downtown Line Departure Stop: x Arrival Stop: y"],
                       SINGAPORE, "Bencoolen", "Clarke Quay", 1, "hard", format_reward=1.0, transfer_penalty="paper")
    assert vals == [(1 + 10 + 0.5 * 9) * 2.0, 0.0]
    r = PlusReward(name="p", format_reward=0.5)
    assert r(["p"] * 2, ["\\boxed{no}", "no"], type=["TorF1"] * 2, answer=[1, 1], difficulty_city=["easy"] * 2) == [0.5, 0.0]


def test_think_blocks_are_kept_by_default_and_stripped_on_request():
    text = "<think>maybe -- Route Name: Line 9\nDeparture Stop: Z\n</think>\n" + seg("Line 1", "A", "B")
    assert score_route([text], SMALL, "A", "B", 0) == [0.0]
    assert score_route([text], SMALL, "A", "B", 0, think=True) == [10.5]


def test_conversational_completions_and_logged_components(log_capture):
    r = get_reward("rewardmap.route")
    completions = [[{"role": "assistant", "content": REWARDMAP_ANSWER}], [{"role": "assistant", "content": BASE_ANSWER}]]
    vals = r(["p"] * 2, completions, **planning_cols(2, SINGAPORE, "Bencoolen", "Clarke Quay", 1, "hard"),
             **log_capture.kwargs())
    assert vals == [24.0, 5.0]
    m = log_capture.metrics
    assert m["rewardmap/rewardmap.route/acc"] == [0.5]
    assert m["rewardmap/rewardmap.route/detail"] == [4.5]
    assert m["rewardmap/rewardmap.route/weight"] == [2.0]
    # the same statistics stay in the reward's record of the call, with the per-row components
    assert r.last_call.metrics["rewardmap/rewardmap.route/detail"] == 4.5
    assert [(c.acc, c.detail, c.weight) for c in r.last_call.detail(COMPONENTS)] == [(1.0, 4.0, 2.0), (0.0, 5.0, 2.0)]


def test_missing_columns_and_bad_values_are_clear_errors():
    r = RouteReward(name="r")
    with pytest.raises(RewardInputError, match="station_1"):
        r(["p"], ["x"], difficulty_city=["easy"])
    with pytest.raises(RewardInputError, match="metro"):
        r(["p"], [seg("Line 1", "A", "B")], station_1=["A"], station_2=["B"], question_transfer_count=[0],
          difficulty_city=["easy"])
    soft = RouteReward(name="r", on_error="none")
    vals = soft(["p"] * 2, ["x", "y"], **{**planning_cols(2, SMALL, "A", "B", 0), "difficulty_city": ["easy", "??"]})
    assert vals == [0.0, None] and soft.counters["errors"] == 1
    assert soft.last_call.detail(COMPONENTS)[1] is None
    # a batch that fails as a whole (a missing column) leaves a row-aligned record without components
    assert soft(["p"] * 2, ["x", "y"], difficulty_city=["easy"] * 2) == [None, None]
    assert soft.last_call.detail(COMPONENTS) == [None, None]


def test_empty_and_oversize_completions_get_defined_counted_values(log_capture):
    r = RouteReward(name="r", max_chars=1000)
    vals = r(["p"] * 3, ["", "x" * 5000, seg("Line 1", "A", "B")], **planning_cols(3, SMALL, "A", "B", 0),
             **log_capture.kwargs())
    assert vals == [0.0, None, 10.5]     # empty: the official value 0 (unparseable); oversize: None
    assert log_capture.metrics["rewardkit/r/empty"] == [1.0]
    assert log_capture.metrics["rewardkit/r/oversize"] == [1.0]
    comps = r.last_call.detail(COMPONENTS)   # the oversize row was never scored: it has no components
    assert comps[1] is None and comps[0].reward == 0.0 and comps[2].reward == 10.5


def test_registered_names_and_pickling():
    names = list_rewards()
    for n in ("rewardmap.route", "rewardmap.plus", "rewardmap.reward"):
        assert names[n].kind == "outcome"
    r = get_reward("rewardmap.reward", alpha=0.7)
    r(["p"], [seg("Line 1", "A", "B")], type=["planning"], station_1=["A"], station_2=["B"],
      question_transfer_count=[0], difficulty_city=["easy"], metro=[json.dumps(SMALL)], answer=[""])
    clone = pickle.loads(pickle.dumps(r))
    assert clone.alpha == 0.7 and clone._lazy_metros is None and clone.name == "rewardmap.reward"


# -- metro files -----------------------------------------------------------------------------------

def test_metro_json_read_once_with_suffixes_stripped(tmp_path):
    d = tmp_path / "stations" / "singapore"
    d.mkdir(parents=True)
    (d / "singapore.json").write_text(json.dumps(SINGAPORE), encoding="utf-8")
    assert read_metro_json(d / "singapore.json")["Downtown Line"][3] == "Chinatown"
    r = RouteReward(name="r", stations_root=str(tmp_path))
    cols = planning_cols(3, SINGAPORE, "Bencoolen", "Clarke Quay", 1, "hard")
    del cols["metro"]
    cols["json"] = ["./stations/singapore/singapore.json"] * 3
    assert r(["p"] * 3, [REWARDMAP_ANSWER, BASE_ANSWER, REWARDMAP_ANSWER], **cols) == [24.0, 5.0, 24.0]
    assert r.metros.loads == 1
    one = {k: v[:1] for k, v in cols.items()}
    with pytest.raises(FileNotFoundError, match="stations_root"):
        RouteReward(name="r")(["p"], [BASE_ANSWER], **{**one, "json": ["./stations/nowhere.json"]})


def test_metro_cache_keys_by_content():
    cache = MetroCache()
    a = cache.from_value(dict(SMALL))
    b = cache.from_value(json.loads(json.dumps(SMALL)))
    assert a is b and cache.loads == 1
    assert cache.from_value(json.dumps(SMALL)).lines == a.lines
    with pytest.raises(TypeError):
        cache.from_value(42)
