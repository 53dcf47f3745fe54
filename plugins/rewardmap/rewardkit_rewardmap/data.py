"""Synthetic transit maps with ReasonMap / ReasonMap-Plus questions, and a reader for the released data.

:func:`make_dataset` builds random metro networks at three difficulty levels (more lines and more
transfer stations as the level rises), asks questions of all ReasonMap-Plus types plus route
planning, and computes the ground truth (for planning: a route with the fewest transfers, found by
breadth-first search over lines). Every row carries the map as ``metro`` JSON text, so the
RewardMap rewards score it without files. Optionally each map is rendered to a PNG (matplotlib) in
an ``images`` column that TRL's GRPO trainer hands to vision-language models.

:func:`load_reasonmap` reads the released ReasonMap-Train / ReasonMap-Plus rows (jsonl, json,
parquet or a ``save_to_disk`` folder) and resolves their ``json`` paths against the ``stations/``
folder of fscdc/ReasonMap.

Everything is deterministic for a given ``seed``.
"""

from __future__ import annotations

import json
import math
import random
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewardkit_rewardmap.scoring import ALL_TYPES, PLANNING, PLUS_TYPES, clean_string

DIFFICULTIES = ("easy", "middle", "hard")
# lines per map, stops per line, transfer stations each new line shares with earlier lines
LEVELS = {
    "easy": {"lines": (3, 4), "stops": (5, 8), "shared": (1, 1)},
    "middle": {"lines": (5, 6), "stops": (6, 10), "shared": (1, 2)},
    "hard": {"lines": (7, 9), "stops": (7, 12), "shared": (1, 3)},
}
_SYLLABLES = ("ka", "lo", "mi", "ra", "ten", "vo", "sa", "del", "quin", "bor", "na", "ri", "zu", "fel", "mar",
              "to", "wen", "pi", "gal", "ster", "hu", "lan", "ces", "do", "bri", "ol", "an", "mes", "tor", "ville")
_PLACE_WORDS = ("", "", "", " Park", " Square", " Gate", " Bridge", " Market", " Harbour", " Hill", " Central",
                " Garden", " Cross")
_UNICODE_NAMES = ("Ångström Plaza", "Zürich Tor", "São Bento", "Łódź Fabryczna", "Café Müller", "東門", "西湖",
                  "Škoda Works", "Ñuñoa", "Øster Allé", "Ηλιούπολη", "Київська")
_COLOURS = ("Red", "Blue", "Green", "Yellow", "Purple", "Orange", "Brown", "Pink", "Grey", "Silver", "Gold", "Teal")

PLUS_PREFIX = "Please solve the problem and put your answer in one \\boxed{}."
ROUTE_FORMAT = (
    "Route Name: Line x\nDeparture Stop: xx Station\nArrival Stop: xx Station\n--\n"
    "Route Name: Line x\nDeparture Stop: xx Station\nArrival Stop: xx Station"
)
PLANNING_TEMPLATE = (
    "According to the subway map, how do I get from {s1} to {s2}? Provide only one optimal route, with only "
    "the line name and the departure and arrival stations. The format should be strictly followed:\n" + ROUTE_FORMAT
)


@dataclass
class TransitMap:
    """A metro network: ordered stop lists per line name."""

    city: str
    difficulty: str
    lines: dict[str, list[str]]
    _lines_of: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for line, stops in self.lines.items():
            for s in stops:
                self._lines_of.setdefault(s, []).append(line)

    @property
    def stations(self) -> list[str]:
        return list(self._lines_of)

    def lines_of(self, station: str) -> list[str]:
        return list(self._lines_of.get(station, []))

    @property
    def transfer_stations(self) -> list[str]:
        return [s for s, ls in self._lines_of.items() if len(ls) > 1]

    def route(self, start: str, goal: str) -> list[tuple[str, str, str]]:
        """A route with the fewest transfers: [(line, departure, arrival), ...] (BFS over lines)."""
        if start == goal:
            raise ValueError("start and goal must differ")
        starts, goals = self.lines_of(start), set(self.lines_of(goal))
        if not starts or not goals:
            raise KeyError(f"unknown station {start if not starts else goal!r}")
        parent: dict[str, str | None] = {}
        queue: deque[str] = deque()
        for line in starts:
            parent[line] = None
            queue.append(line)
        end = None
        while queue:
            line = queue.popleft()
            if line in goals:
                end = line
                break
            for stop in self.lines[line]:
                for nxt in self._lines_of[stop]:
                    if nxt not in parent:
                        parent[nxt] = line
                        queue.append(nxt)
        if end is None:
            raise ValueError(f"no route from {start!r} to {goal!r}")
        path = [end]
        while parent[path[-1]] is not None:
            path.append(parent[path[-1]])  # type: ignore[arg-type]
        path.reverse()
        segments = []
        depart = start
        for a, b in zip(path, path[1:]):
            on_b = set(self.lines[b])
            transfer = next(s for s in self.lines[a] if s in on_b)
            segments.append((a, depart, transfer))
            depart = transfer
        segments.append((path[-1], depart, goal))
        return segments

    def describe(self) -> str:
        """The map as text, one line per metro line (the default, image-free prompt)."""
        rows = [f"Metro map of {self.city} ({len(self.lines)} lines):"]
        rows += [f"{line}: " + " - ".join(stops) for line, stops in self.lines.items()]
        return "\n".join(rows)

    def to_json(self) -> str:
        return json.dumps(self.lines, ensure_ascii=False)


def format_route(segments: Sequence[tuple[str, str, str]]) -> str:
    """A route in ReasonMap's answer format (segments separated by a ``--`` line)."""
    return "\n--\n".join(f"Route Name: {line}\nDeparture Stop: {dep}\nArrival Stop: {arr}"
                         for line, dep, arr in segments)


def gold_answer(row: dict[str, Any]) -> str:
    """A completion the RewardMap reward scores fully correct for ``row`` (for warm starts): the
    reference route for planning, a boxed yes/no, option letter or count for ReasonMap-Plus."""
    t, a = row["type"], row["answer"]
    if t == PLANNING:
        return row["reference_route"]
    if t in ("TorF1", "TorF2"):
        return "\\boxed{" + ("yes" if str(a) == "1" else "no") + "}"
    return "\\boxed{" + ("ABCD"[int(a)] if t == "Counting1" else str(a)) + "}"


def _station_name(rng: random.Random, used: set[str], unicode_names: bool, short: bool = False) -> str:
    if short:  # compact names for tiny models: S1, S2, ...
        name = f"S{len(used) + 1}"
        used.add(clean_string(name))
        return name
    for _ in range(1000):
        if unicode_names and rng.random() < 0.2:
            base = rng.choice(_UNICODE_NAMES) + (f" {rng.randint(2, 99)}" if rng.random() < 0.5 else "")
        else:
            base = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()
            base += rng.choice(_PLACE_WORDS)
        key = clean_string(base)
        if key and key not in used:
            used.add(key)
            return base
    raise RuntimeError("ran out of station names")


def make_map(rng: random.Random, difficulty: str, city: str, *, unicode_names: bool = False,
             short_names: bool = False) -> TransitMap:
    """A random connected network for ``difficulty`` (easy / middle / hard)."""
    if difficulty not in LEVELS:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    level = LEVELS[difficulty]
    n_lines = rng.randint(*level["lines"])
    colour_names = rng.random() < 0.5 and not short_names
    colours = rng.sample(_COLOURS, n_lines) if colour_names else []
    used: set[str] = set()
    lines: dict[str, list[str]] = {}
    existing: list[str] = []
    for k in range(n_lines):
        name = f"{colours[k]} Line" if colour_names else f"Line {k + 1}"
        n_stops = rng.randint(*level["stops"])
        stops = [_station_name(rng, used, unicode_names, short_names) for _ in range(n_stops)]
        if existing:
            n_shared = min(rng.randint(*level["shared"]), len(existing), n_stops - 1)
            for s in rng.sample(existing, n_shared):
                stops.insert(rng.randint(0, len(stops)), s)
        for s in stops:
            if s not in existing:
                existing.append(s)
        lines[name] = stops
    return TransitMap(city, difficulty, lines)


# -- questions ----------------------------------------------------------------------------------

def _question(tmap: TransitMap, qtype: str, rng: random.Random) -> dict[str, Any]:
    stations = tmap.stations
    lines = list(tmap.lines)
    row: dict[str, Any] = {"type": qtype, "station_1": "", "station_2": "", "question_transfer_count": 0,
                           "reference_route": ""}
    if qtype == PLANNING:
        s1, s2 = rng.sample(stations, 2)
        segments = tmap.route(s1, s2)
        row.update(station_1=s1, station_2=s2, question_transfer_count=len(segments) - 1,
                   reference_route=format_route(segments), answer=format_route(segments),
                   question=PLANNING_TEMPLATE.format(s1=s1, s2=s2))
    elif qtype == "TorF1":
        want = rng.random() < 0.5
        if want:
            line = rng.choice(lines)
            s1, s2 = rng.sample(tmap.lines[line], 2)
        else:
            for _ in range(100):
                s1, s2 = rng.sample(stations, 2)
                if not set(tmap.lines_of(s1)) & set(tmap.lines_of(s2)):
                    break
        truth = int(bool(set(tmap.lines_of(s1)) & set(tmap.lines_of(s2))))
        row.update(station_1=s1, station_2=s2, answer=str(truth),
                   question=f"{PLUS_PREFIX} Is {s1} on the same line as {s2}? Only answer yes or no.")
    elif qtype == "TorF2":
        s1 = rng.choice(stations)
        line = rng.choice(tmap.lines_of(s1)) if rng.random() < 0.5 else rng.choice(lines)
        truth = int(line in tmap.lines_of(s1))
        row.update(station_1=s1, answer=str(truth),
                   question=f"{PLUS_PREFIX} Is {s1} on {line}? Only answer yes or no.")
    elif qtype == "Counting1":
        line = rng.choice([ln for ln in lines if len(tmap.lines[ln]) >= 3] or lines)
        stops = tmap.lines[line]
        if len(stops) >= 3:
            i = rng.randrange(len(stops) - 2)
            j = rng.randrange(i + 2, len(stops))
        else:
            i, j = 0, len(stops) - 1
        s1, s2 = stops[i], stops[j]
        between = j - i - 1
        options = {between}
        while len(options) < 4:
            options.add(max(0, between + rng.randint(-3, 4)))
        opts = sorted(options)
        rng.shuffle(opts)
        letters = "ABCD"
        listing = " ".join(f"{letters[k]}. {v}" for k, v in enumerate(opts))
        row.update(station_1=s1, station_2=s2, answer=str(opts.index(between)),
                   question=(f"{PLUS_PREFIX} How many intermediate stops are there between {s1} and {s2} on "
                             f"{line}? Options: {listing} (one of ABCD)"))
    elif qtype == "Counting2":
        pool = tmap.transfer_stations if tmap.transfer_stations and rng.random() < 0.5 else stations
        s1 = rng.choice(pool)
        row.update(station_1=s1, answer=str(len(tmap.lines_of(s1))),
                   question=f"{PLUS_PREFIX} How many metro lines pass through {s1}?")
    elif qtype == "Counting3":
        row.update(answer=str(len(tmap.lines)),
                   question=f"{PLUS_PREFIX} How many metro lines are there on this map?")
    else:
        raise ValueError(f"unknown question type {qtype!r}; expected one of {ALL_TYPES}")
    return row


def _type_plan(types: Sequence[str], n: int, rng: random.Random) -> list[str]:
    """``n`` question types for one map: Counting3 once (one per map, as in ReasonMap-Plus), the
    others in turn, shuffled."""
    plan: list[str] = []
    others = [t for t in types if t != "Counting3"]
    if "Counting3" in types and n > 0:
        plan.append("Counting3")
    k = 0
    while len(plan) < n and others:
        plan.append(others[k % len(others)])
        k += 1
    rng.shuffle(plan)
    return plan


def render_map(tmap: TransitMap, *, size: int = 512, seed: int = 0):
    """Draw the map with matplotlib (stops as dots with names, one colour per line); a PIL image."""
    import io

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from PIL import Image

    rng = random.Random(seed)
    pos: dict[str, tuple[float, float]] = {}
    for li, stops in enumerate(tmap.lines.values()):
        placed = [k for k, s in enumerate(stops) if s in pos]
        angle = rng.uniform(0, 2 * math.pi)
        if placed:
            anchor = placed[0]
        else:
            anchor = 0
            pos[stops[0]] = (li * 0.7, -li * 0.7)
        for direction, rng_idx in ((1, range(anchor + 1, len(stops))), (-1, range(anchor - 1, -1, -1))):
            p, a = pos[stops[anchor]], angle if direction == 1 else angle + math.pi
            for k in rng_idx:
                s = stops[k]
                if s in pos:
                    p = pos[s]
                    continue
                a += rng.uniform(-0.6, 0.6)
                p = (p[0] + math.cos(a), p[1] + math.sin(a))
                pos[s] = p
    fig, ax = plt.subplots(figsize=(size / 100, size / 100), dpi=100)
    cmap = plt.get_cmap("tab10")
    for li, (line, stops) in enumerate(tmap.lines.items()):
        xs, ys = zip(*(pos[s] for s in stops))
        ax.plot(xs, ys, "-o", color=cmap(li % 10), lw=2, ms=4, label=line)
    for s, (x, y) in pos.items():
        ax.annotate(s, (x, y), fontsize=5, xytext=(2, 2), textcoords="offset points")
    ax.set_title(f"{tmap.city} metro", fontsize=8)
    ax.legend(fontsize=5, loc="best")
    ax.set_axis_off()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def make_dataset(n_maps: int = 6, questions_per_map: int = 20, *, seed: int = 0,
                 difficulties: Sequence[str] = DIFFICULTIES, types: Sequence[str] | None = None,
                 images: bool = False, image_size: int = 512, prompt_format: str = "text",
                 describe_map: bool | None = None, unicode_names: bool = False, short_names: bool = False,
                 as_list: bool = False):
    """A synthetic RewardMap dataset (a ``datasets.Dataset``; a list of dicts with ``as_list``).

    Args:
        n_maps: maps to generate; their difficulties cycle through ``difficulties``.
        questions_per_map: questions per map (Counting3 once per map, other types in turn).
        seed: everything is a function of the seed.
        types: question types to ask (default: the five Plus types and ``planning``).
        images: render each map to a PNG and add an ``images`` column (a list with one PIL image),
            and make prompts conversational with an image placeholder (TRL's VLM format).
        prompt_format: ``"text"`` (a plain string prompt) or ``"chat"`` (one user message).
        describe_map: put the map as text into the prompt (default: yes without images).
        unicode_names: mix accented / non-Latin station names in.
        short_names: name stations S1, S2, ... and lines Line 1, Line 2, ... (short prompts for tiny models).

    Columns: ``prompt``, ``question``, ``type``, ``answer`` (str: "1"/"0" for TorF, a count, an
    option index, or the reference route for planning), ``station_1``, ``station_2``,
    ``question_transfer_count``, ``difficulty_city``, ``metro`` (JSON), ``city``, ``country``,
    ``city_line_count``, ``city_transfer_count``, ``reference_route`` and optionally ``images``.
    """
    types = tuple(ALL_TYPES if types is None else types)
    bad = [t for t in types if t not in ALL_TYPES]
    if bad:
        raise ValueError(f"unknown question types {bad}; expected some of {ALL_TYPES}")
    for d in difficulties:
        if d not in LEVELS:
            raise ValueError(f"unknown difficulty {d!r}; expected some of {DIFFICULTIES}")
    if prompt_format not in ("text", "chat"):
        raise ValueError("prompt_format must be 'text' or 'chat'")
    if describe_map is None:
        describe_map = not images
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for m in range(n_maps):
        difficulty = difficulties[m % len(difficulties)]
        tmap = make_map(rng, difficulty, f"Synthcity {m + 1}", unicode_names=unicode_names, short_names=short_names)
        image = render_map(tmap, size=image_size, seed=seed * 7919 + m) if images else None
        for qtype in _type_plan(types, questions_per_map, rng):
            row = _question(tmap, qtype, rng)
            text = (tmap.describe() + "\n\n" + row["question"]) if describe_map else row["question"]
            if images:
                prompt: Any = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
            elif prompt_format == "chat":
                prompt = [{"role": "user", "content": text}]
            else:
                prompt = text + "\n"
            row.update(prompt=prompt, difficulty_city=difficulty, metro=tmap.to_json(), city=tmap.city,
                       country="Synthland", city_line_count=len(tmap.lines),
                       city_transfer_count=len(tmap.transfer_stations))
            if images:
                row["images"] = [image]
            rows.append(row)
    if as_list:
        return rows
    from datasets import Dataset

    return Dataset.from_list(rows)


# -- the released ReasonMap format --------------------------------------------------------------

def load_reasonmap(data: Any, *, stations_root: str | Path | None = None, image_root: str | Path | None = None,
                   with_images: bool = False, prompt_format: str = "chat", types: Iterable[str] | None = None):
    """Rows of ReasonMap-Train / ReasonMap-Plus as a ``datasets.Dataset`` the rewards can score.

    ``data`` is a path (jsonl, json, parquet, or a ``save_to_disk`` folder, optionally with a
    ``train`` split) or a list of dicts. The ``json`` column's paths (``./stations/<country>/<city>.json``)
    are resolved against ``stations_root`` and made absolute; the ``answer`` column becomes text
    (Plus ground truth as "1"/"0"/count/option index); ``question`` becomes the ``prompt`` (a user
    message, with an image placeholder and the ``figure`` loaded from ``image_root`` when
    ``with_images``).
    """
    from datasets import Dataset

    from rewardkit_rewardmap.metro import resolve_metro_path

    rows = _records(data)
    keep = set(ALL_TYPES if types is None else types)
    out = []
    for k, r in enumerate(rows):
        qtype = r.get("type")
        if qtype not in ALL_TYPES:
            raise ValueError(f"row {k}: unknown type {qtype!r}; expected one of {ALL_TYPES}")
        if qtype not in keep:
            continue
        if r.get("difficulty_city") not in DIFFICULTIES:
            raise ValueError(f"row {k}: difficulty_city must be one of {DIFFICULTIES}, got {r.get('difficulty_city')!r}")
        row = {key: r.get(key) for key in ("question", "type", "station_1", "station_2", "difficulty_city",
                                            "country", "city", "city_line_count", "city_transfer_count")}
        row["station_1"] = row["station_1"] or ""
        row["station_2"] = row["station_2"] or ""
        row["answer"] = "" if r.get("answer") is None else str(r.get("answer"))
        row["question_transfer_count"] = int(r.get("question_transfer_count") or 0)
        if r.get("json"):
            row["json"] = str(resolve_metro_path(str(r["json"]), stations_root).resolve())
        elif r.get("metro") is not None:
            m = r["metro"]
            row["metro"] = m if isinstance(m, str) else json.dumps(m, ensure_ascii=False)
        elif qtype == PLANNING:
            raise ValueError(f"row {k}: a planning row needs its map ('json' path or 'metro')")
        question = str(r.get("question") or "").strip()
        if with_images:
            row["prompt"] = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
            row["images"] = [_load_figure(r.get("figure"), image_root, k)]
        elif prompt_format == "chat":
            row["prompt"] = [{"role": "user", "content": question}]
        else:
            row["prompt"] = question + "\n"
        out.append(row)
    return Dataset.from_list(out)


def _records(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, (list, tuple)):
        return [dict(r) for r in data]
    if hasattr(data, "to_list"):  # a datasets.Dataset
        return data.to_list()
    p = Path(data)
    if p.is_dir():
        from datasets import DatasetDict, load_from_disk

        ds = load_from_disk(str(p))
        if isinstance(ds, DatasetDict):
            ds = ds["train"] if "train" in ds else next(iter(ds.values()))
        return ds.to_list()
    from rewardkit.data import load_records

    return [dict(r) for r in load_records(p)]


def _load_figure(figure: Any, image_root: str | Path | None, k: int):
    from PIL import Image

    if figure is None:
        raise ValueError(f"row {k}: with_images needs a 'figure' column")
    if hasattr(figure, "convert"):
        return figure.convert("RGB")
    p = Path(str(figure))
    if not p.is_absolute() and image_root is not None:
        p = Path(image_root) / p
    if not p.is_file():
        raise FileNotFoundError(f"row {k}: figure {figure!r} not found (image_root={image_root!r})")
    return Image.open(p).convert("RGB")


# -- CLI: rewardkit rewardmap-data ----------------------------------------------------------------

def configure_cli(p) -> None:
    p.add_argument("--out", required=True, help="output: a .jsonl file, or a folder (datasets save_to_disk)")
    p.add_argument("--maps", type=int, default=6, help="number of maps (difficulties cycle easy/middle/hard)")
    p.add_argument("--questions-per-map", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--difficulties", default=",".join(DIFFICULTIES), help="comma-separated subset of easy,middle,hard")
    p.add_argument("--types", default=",".join(ALL_TYPES), help="comma-separated question types")
    p.add_argument("--images", action="store_true", help="render map PNGs into an 'images' column (folder output)")
    p.add_argument("--prompt-format", choices=["text", "chat"], default="text")
    p.add_argument("--unicode-names", action="store_true")
    p.add_argument("--short-names", action="store_true", help="stations S1, S2, ... (short prompts)")


def run_cli(args) -> int:
    ds = make_dataset(args.maps, args.questions_per_map, seed=args.seed,
                      difficulties=[d.strip() for d in args.difficulties.split(",") if d.strip()],
                      types=[t.strip() for t in args.types.split(",") if t.strip()], images=args.images,
                      prompt_format=args.prompt_format, unicode_names=args.unicode_names,
                      short_names=args.short_names)
    out = Path(args.out)
    if out.suffix == ".jsonl":
        if args.images:
            raise SystemExit("--images needs a folder output (datasets save_to_disk), not .jsonl")
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", encoding="utf-8") as fh:
            for row in ds:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    else:
        ds.save_to_disk(str(out))
    counts: dict[str, int] = {}
    for t in ds["type"]:
        counts[t] = counts.get(t, 0) + 1
    print(f"wrote {len(ds)} rows to {out}: " + ", ".join(f"{t}={counts[t]}" for t in ALL_TYPES if t in counts))
    return 0


__all__ = ["DIFFICULTIES", "PLUS_TYPES", "TransitMap", "format_route", "gold_answer", "load_reasonmap",
           "make_dataset", "make_map", "render_map"]
