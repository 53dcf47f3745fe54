"""Benchmark: completions per second of ``rewardmap.route`` on 20,000 synthetic planning answers.

Baseline (named, measured in the same run): the same scorer re-reading the city's metro JSON file
for every completion, as the official RewardMap reward does (custom.py opens ``json`` per sample).
Target: >= 20,000 completions/s on one core with the cached maps.

    python bench/rewardmap_reward.py [--n 20000] [--batch 128] [--maps 30]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

from rewardkit_rewardmap.data import format_route, make_dataset
from rewardkit_rewardmap.metro import read_metro_json, resolve_metro_path
from rewardkit_rewardmap.rewards import RouteReward
from rewardkit_rewardmap.scoring import Metro

TARGET = 20_000


class RereadRoute(RouteReward):
    """The baseline: open and parse the metro JSON for every completion (no cache)."""

    def _metro(self, columns, i):
        path = resolve_metro_path(columns["json"][i], self.stations_root)
        return Metro.from_mapping(read_metro_json(path))


def answers(rows, n: int, seed: int) -> list[tuple[dict, str]]:
    """n (row, completion) pairs: gold routes, wrong lines, wrong stops, broken formats, prose."""
    rng = random.Random(seed)
    out = []
    for k in range(n):
        row = rows[k % len(rows)]
        metro = json.loads(row["metro"])
        gold = row["reference_route"]
        kind = rng.randrange(6)
        if kind == 0:
            text = gold
        elif kind == 1:   # a wrong but existing line on the first segment
            text = gold.replace("Route Name: ", f"Route Name: {rng.choice(list(metro))}\n#", 1)
        elif kind == 2:   # a stop that is not on the line
            text = gold.replace(row["station_2"], rng.choice(rng.choice(list(metro.values()))))
        elif kind == 3:   # direct single segment
            text = format_route([(rng.choice(list(metro)), row["station_1"], row["station_2"])])
        elif kind == 4:   # reasoning first, trailing prose after the last stop
            text = "Let me trace the lines on the map first.\n" + gold + "\nThat is the fastest way."
        else:             # unparseable
            text = f"Take the train from {row['station_1']} to {row['station_2']}."
        out.append((row, text))
    return out


def run(reward: RouteReward, pairs, batch: int) -> tuple[float, float, list[float]]:
    """(wall seconds, CPU seconds of this process, values)."""
    values: list[float] = []
    start, cpu = time.perf_counter(), time.process_time()
    for b in range(0, len(pairs), batch):
        chunk = pairs[b:b + batch]
        cols = {k: [r[k] for r, _ in chunk] for k in ("station_1", "station_2", "question_transfer_count",
                                                      "difficulty_city", "json")}
        values += reward(["p"] * len(chunk), [t for _, t in chunk], **cols)
    return time.perf_counter() - start, time.process_time() - cpu, values


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--maps", type=int, default=30)
    args = ap.parse_args()
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})   # one core
    except (AttributeError, OSError):
        pass
    rows = make_dataset(args.maps, 40, seed=0, types=["planning"], as_list=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for row in rows:
            path = root / "stations" / "synthland" / (row["city"].replace(" ", "_").lower() + ".json")
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(row["metro"], encoding="utf-8")
            row["json"] = "./" + str(path.relative_to(root))
        pairs = answers(rows, args.n, seed=1)
        cached = RouteReward(name="rewardmap.route", stations_root=str(root))
        baseline = RereadRoute(name="rewardmap.route", stations_root=str(root))
        run(cached, pairs[:500], args.batch)          # warm-up (imports, first file reads)
        t_cached, c_cached, v_cached = run(cached, pairs, args.batch)
        t_base, c_base, v_base = run(baseline, pairs, args.batch)
    assert v_cached == v_base, "cached and re-reading scorers disagree"
    rate, base_rate = args.n / t_cached, args.n / t_base
    cpu_rate, cpu_base_rate = args.n / c_cached, args.n / c_base
    mean = sum(v_cached) / len(v_cached)
    print(f"rewardmap.route on {args.n} synthetic planning answers ({args.maps} maps, batches of {args.batch}, "
          f"mean reward {mean:.3f})")
    print(f"  {'':24}  {'wall clock':>16}  {'CPU time (1 core)':>18}")
    print(f"  {'cached metro maps':24}  {rate:12,.0f} /s  {cpu_rate:14,.0f} /s")
    print(f"  {'baseline: re-read JSON':24}  {base_rate:12,.0f} /s  {cpu_base_rate:14,.0f} /s")
    print(f"  {'ratio cached / re-read':24}  {rate / base_rate:13.1f}x  {cpu_rate / cpu_base_rate:15.1f}x")
    print(f"  target >= {TARGET:,}/s on one core (CPU time; wall clock is slower on a shared machine): "
          f"{'MET' if cpu_rate >= TARGET else 'NOT MET'}")

if __name__ == "__main__":
    main()
