"""Benchmark of the reward server: throughput, p50/p99 latency, and the batching speed-up.

A tiny sequence-classification reward model (rewardkit.testing, offline) is served by
``rewardkit.serve`` in a child process; many single-row requests arrive from concurrent clients
(``RemoteReward``, each request one completion, as a fleet of rollout workers would send them).

Runs, same requests each time:
  batched    server merges concurrent requests (max_batch_rows=64)
  unbatched  baseline: the server scores one request at a time (max_batch_rows=1)
  serial     one client, one request at a time (latency floor; no concurrency)

Prints a table and ``batching speed-up = batched / unbatched throughput``.

    python bench/remote_reward.py                  # 2,000 requests, 32 concurrent
    python bench/remote_reward.py --requests 500 --concurrency 16
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from rewardkit.reward import Batch, Reward
from rewardkit.testing import free_port, wait_for_health


class TinyRMReward(Reward):
    """The tiny reward model's logit for prompt + completion, batched (one forward per call)."""

    def __init__(self, path: str, **kw):
        super().__init__(**kw)
        self.path = path
        self._lazy_model = None

    def _load(self):
        if self._lazy_model is None:
            import torch
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            torch.set_num_threads(1)
            self._lazy_tok = AutoTokenizer.from_pretrained(self.path)
            self._lazy_model = AutoModelForSequenceClassification.from_pretrained(self.path).eval()
        return self._lazy_model, self._lazy_tok

    def score_batch(self, batch: Batch):
        import torch

        model, tok = self._load()
        texts = [f"{p}{t}" for p, t in zip(batch.prompts, batch.texts)]
        enc = tok(texts, return_tensors="pt", padding=True, padding_side="right", add_special_tokens=False)
        with torch.inference_mode():
            return model(**enc).logits[:, 0].tolist()


def serve_child(port: int, max_batch_rows: int) -> None:
    # the class by its module name (not __main__), so the server's worker process can import it
    from remote_reward import TinyRMReward as ImportableTinyRM

    from rewardkit.serve import RewardServer, ServerConfig
    from rewardkit.serve.server import serve_forever
    from rewardkit.testing import tiny_model_dir

    reward = ImportableTinyRM(str(tiny_model_dir("reward_model")), name="tiny_rm")
    server = RewardServer({"tiny_rm": reward}, ServerConfig(max_batch_rows=max_batch_rows, max_wait_ms=2.0,
                                                            queue_size=4096))
    serve_forever(server, host="127.0.0.1", port=port, log_level="warning")


def start(max_batch_rows: int):
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen([sys.executable, __file__, "--serve-child", str(port), str(max_batch_rows)], env=env)
    url = f"http://127.0.0.1:{port}"
    wait_for_health(url, proc, seconds=120)
    return proc, url


def drive(url: str, prompts: list[str], completions: list[str], concurrency: int) -> dict:
    import httpx

    from rewardkit.serve import RemoteReward

    client = RemoteReward(url, "tiny_rm", retries=5)
    latencies: list[float] = []

    def one(i: int):
        t0 = time.perf_counter()
        v = client([prompts[i]], [completions[i]])[0]
        latencies.append(time.perf_counter() - t0)
        return v

    client(["warm"], ["up"])  # the server's worker process loads the model on its first call
    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as ex:
        values = list(ex.map(one, range(len(prompts))))
    wall = time.perf_counter() - t0
    stats = httpx.get(url + "/health").json()["stats"]["tiny_rm"]
    lat = sorted(latencies)
    return {"values": values, "wall": wall, "rps": len(prompts) / wall,
            "p50": statistics.median(lat) * 1000, "p99": lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1000,
            "batches": stats["batches"], "mean_batch": stats["rows"] / max(stats["batches"], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--serial-requests", type=int, default=200)
    ap.add_argument("--serve-child", nargs=2, type=int, metavar=("PORT", "MAX_BATCH_ROWS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_child:
        serve_child(*args.serve_child)
        return

    from rewardkit.data import load_arithmetic, to_prompt

    data = load_arithmetic()
    prompts = [to_prompt(data[i % len(data)]) for i in range(args.requests)]
    completions = [f" {data[i % len(data)]['reasoning'][: 20 + (i * 37) % 200]}" for i in range(args.requests)]

    results = {}
    for label, rows, conc, n in (("batched", 64, args.concurrency, args.requests),
                                 ("unbatched", 1, args.concurrency, args.requests),
                                 ("serial", 64, 1, args.serial_requests)):
        proc, url = start(rows)
        try:
            results[label] = drive(url, prompts[:n], completions[:n], conc)
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    # the same requests must get the same values batched or not (padding must not leak into scores)
    a, b = results["batched"]["values"], results["unbatched"]["values"]
    max_diff = max(abs(x - y) for x, y in zip(a, b))
    print(f"\nreward server benchmark: tiny seq-cls RM, {args.requests} single-row requests, "
          f"{args.concurrency} concurrent clients (serial: {args.serial_requests} requests, 1 client)")
    print(f"{'run':<10} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'batches':>8} {'rows/batch':>10}")
    for label, r in results.items():
        print(f"{label:<10} {r['rps']:>8.1f} {r['p50']:>8.1f} {r['p99']:>8.1f} {r['batches']:>8d} {r['mean_batch']:>10.1f}")
    print(f"batching speed-up (batched / unbatched throughput): {results['batched']['rps'] / results['unbatched']['rps']:.2f}x")
    print(f"max |batched - unbatched| reward difference: {max_diff:.2e}")


if __name__ == "__main__":
    main()
