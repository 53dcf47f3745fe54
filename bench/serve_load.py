"""Load and abuse benchmark of ``rewardkit serve`` on loopback: correctness under load, latency, memory.

The server runs in a child process (``math.accuracy`` and ``format.boxed``); this process sends
``--requests`` requests of 1-4 rows each from ``--concurrency`` threads and compares every answer
with the same reward computed locally. Reports throughput, p50/p99 latency, ``lost`` (requests
that got no 200 answer) and ``mismatched`` (answers that differ from the local values).

``--big-bodies`` then sends four 100 MB bodies at once (and one 10 MB body) and reports the
server's peak resident memory (VmHWM, per process: the server and its reward workers) before and
after, and the status codes it answered.

Works against any rewardkit checkout on PYTHONPATH (the before/after comparison of issue 13):

    python bench/serve_load.py                       # 2,000 requests, 32 concurrent
    python bench/serve_load.py --big-bodies
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from rewardkit.testing import free_port, wait_for_health

TOKEN = "bench-token"


def serve_child(port: int) -> None:
    from rewardkit import get_reward
    from rewardkit.serve import server as srv_mod
    from rewardkit.serve.server import RewardServer, ServerConfig

    rewards = {"acc": get_reward("math.accuracy"), "boxed": get_reward("format.boxed")}
    rewards["acc"](["warm"], ["\\boxed{1}"], solution=["1"])  # import math-verify before the clock starts
    config = ServerConfig(queue_size=4096)
    if hasattr(srv_mod, "serve_forever"):  # the hardened server: auth on
        config.token = TOKEN
        srv_mod.serve_forever(RewardServer(rewards, config), host="127.0.0.1", port=port, log_level="warning")
    else:
        import uvicorn

        uvicorn.run(srv_mod.create_app(RewardServer(rewards, config)), host="127.0.0.1", port=port,
                    log_level="warning", access_log=False)


def _peak_rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MB, from /proc (Linux)."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def _tree(pid: int) -> list[int]:
    """pid and all its descendants (the hardened server runs each reward in a child process)."""
    out = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                for child in f.read().split():
                    out += _tree(int(child))
    except OSError:
        pass
    return out


def _tree_peaks(pid: int) -> dict[int, float]:
    return {p: round(_peak_rss_mb(p)[1], 1) for p in _tree(pid)}


def start() -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, __file__, "--serve-child", str(port)], env=env)
    url = f"http://127.0.0.1:{port}"
    wait_for_health(url, proc, seconds=120)
    return proc, url


def make_jobs(n: int) -> list[dict]:
    from rewardkit.data import load_arithmetic

    data = load_arithmetic()
    jobs = []
    for i in range(n):
        rows = 1 + i % 4
        prompts, completions, gold = [], [], []
        for j in range(rows):
            ex = data[(i * 4 + j) % len(data)]
            answer = ex["solution"] if (i + j) % 3 else str(int(float(ex["solution"])) + 1)  # a third wrong
            prompts.append(ex["question"])
            completions.append(f"{ex['reasoning'][: 10 + (i * 37 + j) % 120]} so \\boxed{{{answer}}}"
                               if (i + j) % 5 else "no box here")
            gold.append(ex["solution"])
        jobs.append({"reward": "acc" if i % 2 == 0 else "boxed", "prompts": prompts, "completions": completions,
                     "columns": {"solution": gold} if i % 2 == 0 else {}})
    return jobs


def local_values(jobs: list[dict]) -> list[list]:
    from rewardkit import get_reward

    rewards = {"acc": get_reward("math.accuracy"), "boxed": get_reward("format.boxed")}
    return [rewards[j["reward"]](j["prompts"], j["completions"], **j["columns"]) for j in jobs]


def drive(url: str, jobs: list[dict], want: list[list], concurrency: int) -> dict:
    import httpx

    client = httpx.Client(base_url=url, timeout=60, headers={"authorization": f"Bearer {TOKEN}"},
                          limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency))
    latencies: list[float] = []
    lost, mismatched = [], []
    for job in jobs[:2]:  # warm up: the first call of a reward may import its checker
        client.post("/v1/score", json=job)

    def one(i: int) -> None:
        t0 = time.perf_counter()
        try:
            r = client.post("/v1/score", json=jobs[i])
        except httpx.HTTPError as exc:
            lost.append((i, repr(exc)))
            return
        latencies.append(time.perf_counter() - t0)
        if r.status_code != 200:
            lost.append((i, r.status_code))
        elif r.json()["rewards"] != want[i]:
            mismatched.append((i, r.json()["rewards"], want[i]))

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as ex:
        list(ex.map(one, range(len(jobs))))
    wall = time.perf_counter() - t0
    lat = sorted(latencies) or [float("nan")]
    return {"requests": len(jobs), "rows": sum(len(j["completions"]) for j in jobs), "wall_s": wall,
            "req_per_s": len(jobs) / wall, "p50_ms": statistics.median(lat) * 1000,
            "p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1000,
            "lost": len(lost), "mismatched": len(mismatched), "examples": (lost + mismatched)[:3]}


def big_bodies(url: str, pid: int) -> dict:
    import httpx

    def body(mb: int) -> bytes:
        head = b'{"reward": "boxed", "prompts": ["p"], "completions": ["'
        return head + b"x" * (mb * 1024 * 1024 - len(head) - 3) + b'"]}'

    headers = {"authorization": f"Bearer {TOKEN}", "content-type": "application/json"}
    out: dict = {"peak_before_mb": _tree_peaks(pid)}
    ten = body(10)
    try:
        out["10MB_status"] = httpx.post(url + "/v1/score", content=ten, headers=headers, timeout=120).status_code
    except httpx.HTTPError as exc:
        out["10MB_status"] = type(exc).__name__
    del ten
    hundred = body(100)

    def send(_):
        try:
            return httpx.post(url + "/v1/score", content=hundred, headers=headers, timeout=120).status_code
        except httpx.HTTPError as exc:
            return type(exc).__name__

    with ThreadPoolExecutor(4) as ex:
        out["4x100MB_status"] = list(ex.map(send, range(4)))
    out["peak_after_mb"] = _tree_peaks(pid)
    out["health_after"] = httpx.get(url + "/health", timeout=10).status_code
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--big-bodies", action="store_true", help="also send 10 MB and 4 x 100 MB bodies")
    ap.add_argument("--serve-child", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_child:
        serve_child(args.serve_child)
        return
    import rewardkit

    jobs = make_jobs(args.requests)
    want = local_values(jobs)
    proc, url = start()
    try:
        res = drive(url, jobs, want, args.concurrency)
        print(f"rewardkit from {os.path.dirname(os.path.dirname(rewardkit.__file__))}")
        print(f"{res['requests']} requests ({res['rows']} rows), {args.concurrency} concurrent: "
              f"{res['req_per_s']:.1f} req/s, p50 {res['p50_ms']:.1f} ms, p99 {res['p99_ms']:.1f} ms, "
              f"lost {res['lost']}, mismatched {res['mismatched']}  (wall {res['wall_s']:.1f} s)")
        if res["examples"]:
            print("examples:", res["examples"])
        if args.big_bodies:
            print("big bodies:", big_bodies(url, proc.pid))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            print("server ignored SIGTERM for 30 s: killed")


if __name__ == "__main__":
    main()
