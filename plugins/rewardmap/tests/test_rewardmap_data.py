"""Synthetic transit maps, their ground truth, the CLI and the ReasonMap reader."""

from __future__ import annotations

import json
from collections import deque

import pytest
from rewardkit_rewardmap.data import gold_answer, load_reasonmap, make_dataset, make_map
from rewardkit_rewardmap.rewards import COMPONENTS, MapReward
from rewardkit_rewardmap.scoring import ALL_TYPES

from rewardkit.cli import main as cli_main


@pytest.fixture(scope="module")
def rows():
    return make_dataset(6, 18, seed=3, as_list=True)


def gold_completion(row):
    t, a = row["type"], row["answer"]
    if t == "planning":
        return row["reference_route"]
    if t.startswith("TorF"):
        return f"Looking at the map... \\boxed{{{'yes' if a == '1' else 'no'}}}"
    if t == "Counting1":
        return f"\\boxed{{{'ABCD'[int(a)]}}}"
    return f"The answer is {a}."


def min_transfers(metro, s1, s2):
    """Fewest transfers by BFS over (station, line) states: an independent check of the generator."""
    lines_of = {}
    for line, stops in metro.items():
        for s in stops:
            lines_of.setdefault(s, set()).add(line)
    dist = {(s1, ln): 0 for ln in lines_of[s1]}
    dq = deque(dist)
    while dq:
        st, ln = dq.popleft()
        d = dist[(st, ln)]
        if st == s2:
            return d
        for nxt in metro[ln]:  # ride the line
            if (nxt, ln) not in dist:
                dist[(nxt, ln)] = d
                dq.appendleft((nxt, ln))
        for other in lines_of[st]:  # transfer
            if (st, other) not in dist:
                dist[(st, other)] = d + 1
                dq.append((st, other))
    raise AssertionError("disconnected")


def test_dataset_is_deterministic_and_covers_all_types(rows):
    again = make_dataset(6, 18, seed=3, as_list=True)
    assert again == rows
    other = make_dataset(6, 18, seed=4, as_list=True)
    assert other != rows
    assert {r["type"] for r in rows} == set(ALL_TYPES)
    assert {r["difficulty_city"] for r in rows} == {"easy", "middle", "hard"}
    assert sum(r["type"] == "Counting3" for r in rows) == 6   # one per map


def test_difficulty_levels_grow_in_lines_and_transfers():
    import random

    stats = {}
    for d in ("easy", "middle", "hard"):
        maps = [make_map(random.Random(k), d, "x") for k in range(20)]
        stats[d] = (sum(len(m.lines) for m in maps) / 20, sum(len(m.transfer_stations) for m in maps) / 20)
    assert stats["easy"][0] < stats["middle"][0] < stats["hard"][0]
    assert stats["easy"][1] < stats["middle"][1] < stats["hard"][1]


def test_ground_truth_is_right(rows):
    for r in rows:
        metro = json.loads(r["metro"])
        lines_of = {}
        for line, stops in metro.items():
            for s in stops:
                lines_of.setdefault(s, set()).add(line)
        t, a = r["type"], r["answer"]
        if t == "planning":
            assert r["question_transfer_count"] == min_transfers(metro, r["station_1"], r["station_2"])
            assert r["reference_route"].count("\n--\n") == r["question_transfer_count"]
        elif t == "TorF1":
            assert a == str(int(bool(lines_of[r["station_1"]] & lines_of[r["station_2"]])))
        elif t == "TorF2":
            line = r["question"].split(" on ")[-1].split("?")[0]
            assert a == str(int(line in lines_of[r["station_1"]]))
        elif t == "Counting2":
            assert a == str(len(lines_of[r["station_1"]]))
        elif t == "Counting3":
            assert a == str(len(metro))
        elif t == "Counting1":
            line = r["question"].split(" on ")[-1].split("?")[0]
            stops = metro[line]
            between = abs(stops.index(r["station_1"]) - stops.index(r["station_2"])) - 1
            options = [int(x.split(". ")[1]) for x in r["question"].split("Options: ")[1].split(" (")[0]
                       .replace(" B.", "|B.").replace(" C.", "|C.").replace(" D.", "|D.").split("|")]
            assert options[int(a)] == between


def test_gold_answers_score_full_accuracy(rows):
    r = MapReward(name="rewardmap.reward")
    cols = {k: [row[k] for row in rows] for k in rows[0] if k != "prompt"}
    values = r([row["prompt"] for row in rows], [gold_completion(row) for row in rows], **cols)
    assert all(c.acc == 1.0 for c in r.last_call.detail(COMPONENTS))
    # the warm-start answers of the plugin score fully correct too
    r([row["prompt"] for row in rows], [gold_answer(row) for row in rows], **cols)
    assert all(c.acc == 1.0 for c in r.last_call.detail(COMPONENTS))
    assert all(v > 0 for v in values)
    yes_no = [row["answer"] for row in rows if row["type"].startswith("TorF")]
    assert 0.25 < yes_no.count("1") / len(yes_no) < 0.75   # roughly balanced


def test_images_column_and_vlm_prompt():
    from PIL import Image

    ds = make_dataset(1, 3, seed=0, images=True, image_size=200)
    assert "images" in ds.column_names
    img = ds[0]["images"][0]
    assert isinstance(img, Image.Image) and img.size == (200, 200)
    prompt = ds[0]["prompt"]
    assert prompt[0]["role"] == "user" and prompt[0]["content"][0]["type"] == "image"
    assert "Metro map of" not in prompt[0]["content"][1]["text"]   # the map is in the picture


def test_unicode_names_and_chat_prompts():
    rows = make_dataset(3, 10, seed=1, unicode_names=True, prompt_format="chat", as_list=True)
    assert any(any(ord(ch) > 127 for ch in r["metro"]) for r in rows)
    assert all(r["prompt"][0]["role"] == "user" for r in rows)
    with pytest.raises(ValueError):
        make_dataset(1, 2, types=["planning", "Routing"])


def test_short_names_for_tiny_models():
    rows = make_dataset(2, 6, seed=0, short_names=True, as_list=True)
    metro = json.loads(rows[0]["metro"])
    assert all(line.startswith("Line ") for line in metro)
    assert all(s.startswith("S") and s[1:].isdigit() for stops in metro.values() for s in stops)


def test_cli_writes_jsonl(tmp_path, capsys):
    out = tmp_path / "maps.jsonl"
    assert cli_main(["rewardmap-data", "--out", str(out), "--maps", "2", "--questions-per-map", "6",
                     "--types", "TorF1,planning"]) == 0
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 12 and {x["type"] for x in lines} == {"TorF1", "planning"}
    assert "wrote 12 rows" in capsys.readouterr().out


def test_reader_for_released_reasonmap_rows(tmp_path):
    stations = tmp_path / "stations" / "singapore"
    stations.mkdir(parents=True)
    metro = {"Downtown Line": ["Bencoolen", "Chinatown (Transfer Station)"],
             "North East Line": ["Chinatown (Transfer Station)", "Clarke Quay"]}
    (stations / "singapore.json").write_text(json.dumps(metro), encoding="utf-8")
    released = [
        {"question": "how do I get from Bencoolen to Clarke Quay?", "answer": 0, "type": "planning",
         "difficulty_city": "hard", "question_transfer_count": 1, "station_1": "Bencoolen",
         "station_2": "Clarke Quay", "json": "./stations/singapore/singapore.json", "figure": "maps/x.png",
         "country": "singapore", "city": "singapore", "city_line_count": 2, "city_transfer_count": 1},
        {"question": "Is Bencoolen on the Downtown Line?", "answer": 1, "type": "TorF2", "difficulty_city": "hard",
         "question_transfer_count": None, "station_1": "Bencoolen", "station_2": None,
         "json": "./stations/singapore/singapore.json", "figure": "maps/x.png"},
    ]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in released), encoding="utf-8")
    ds = load_reasonmap(path, stations_root=tmp_path)
    assert ds["answer"] == ["0", "1"] and ds["question_transfer_count"] == [1, 0]
    assert ds[0]["prompt"] == [{"role": "user", "content": released[0]["question"]}]
    answer = ("Route Name: Downtown Line\nDeparture Stop: Bencoolen\nArrival Stop: Chinatown\n--\n"
              "Route Name: North East Line\nDeparture Stop: Chinatown\nArrival Stop: Clarke Quay")
    cols = {k: ds[k] for k in ds.column_names if k != "prompt"}
    assert MapReward(name="m")(ds["prompt"], [answer, "\\boxed{yes}"], **cols) == [24.0, 15.0]
    with pytest.raises(FileNotFoundError):
        load_reasonmap(path)   # without stations_root the relative paths do not resolve here
    with pytest.raises(ValueError, match="unknown type"):
        load_reasonmap([{**released[1], "type": "Routing"}], stations_root=tmp_path)
