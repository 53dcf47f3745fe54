"""DreamPRM: wall time of an upper step (DARTS hypergradient) vs a lower step on the tiny PRM.

    python bench/dreamprm_step.py [--steps 20] [--batch 16] [--meta-batch 16] [--variant v1|1.5]
    python bench/dreamprm_step.py --prm-memory 10 100 400 [--max-batch-tokens 32768]

Baseline: the lower step (forward + backward + AdamW on the PRM), measured in the same run on the
same batches. The upper step = meta forward/backward for v = dL_meta/dphi + two perturbed lower
forwards + AdamW on the weights. Target: upper/lower <= 3x. Also times the exact hypergradient
(autograd through one lower step) and, when ``betty-ml`` imports, Betty's DARTS step on the same
problem (betty-ml 0.2.x requires Python < 3.11 and 0.1.1 has metadata pip >= 24.1 rejects, so on
this Python it usually does not install; the script says so).

``--prm-memory N ...``: peak RSS of scoring one N-step completion ("Step k: ..." lines) with the
``dreamprm.prm`` reward (v1, tiny PRM), each N in a fresh child process (``ru_maxrss``), plus the
number of forwards and the largest forward (rows x width). The child imports whatever
``rewardkit_dreamprm`` is first on ``PYTHONPATH``, so an older checkout can be measured the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--meta-batch", type=int, default=16)
    ap.add_argument("--variant", default="v1", choices=["v1", "1.5"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--prm-memory", type=int, nargs="*", default=None, metavar="N")
    ap.add_argument("--max-batch-tokens", type=int, default=None)
    ap.add_argument("--_child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args._child:
        return _memory_child(args._child[0], int(args._child[1]), args.max_batch_tokens)
    if args.prm_memory:
        return _memory(args)

    from rewardkit_dreamprm import DreamPRMConfig, DreamPRMTrainer, GenerativePRM, ValueHeadPRM, make_toy

    from rewardkit.testing import tiny_model_dir

    toy = make_toy(n_train_per_domain=64, n_meta=64, n_eval=1)
    cls = ValueHeadPRM if args.variant == "v1" else GenerativePRM
    torch.manual_seed(0)
    prm = cls.from_pretrained(tiny_model_dir("causal_lm"))
    make = DreamPRMConfig.v15 if args.variant == "1.5" else DreamPRMConfig
    cfg = make(weighting="domain", lr=1e-3, meta_lr=0.05, batch_size=args.batch, meta_batch_size=args.meta_batch,
               unroll_steps=1, lr_scheduler="constant", logging_steps=10**9)
    tr = DreamPRMTrainer(prm, toy["train"], toy["meta"], cfg)
    tr.train(max_steps=3)  # warm-up (allocator, first-call overheads)
    tr.timings = {"lower": [], "upper": []}
    tr.train(max_steps=3 + args.steps)
    lower = statistics.median(tr.timings["lower"])
    upper = statistics.median(tr.timings["upper"])
    exact = []
    for _ in range(max(3, args.steps // 4)):
        meta = [toy["meta"][i] for i in tr.meta_cursor.next()]
        t0 = time.perf_counter()
        tr.hypergradient(meta, mode="exact")
        exact.append(time.perf_counter() - t0)
    print(f"tiny {args.variant} PRM, lower batch {args.batch}, meta batch {args.meta_batch}, "
          f"{args.steps} steps, torch threads {args.threads}")
    print(f"lower step (baseline):        {lower * 1e3:8.1f} ms")
    print(f"upper step, DARTS:            {upper * 1e3:8.1f} ms   ratio upper/lower = {upper / lower:.2f}x "
          f"(target <= 3x: {'ok' if upper / lower <= 3 else 'MISSED'})")
    print(f"hypergradient, exact (1 step):{statistics.median(exact) * 1e3:8.1f} ms   "
          f"ratio exact/lower = {statistics.median(exact) / lower:.2f}x")
    try:
        import betty  # noqa: F401  (betty-ml)
    except Exception as exc:  # noqa: BLE001
        print(f"betty-ml: not available here ({type(exc).__name__}: {exc}); "
              f"Python {sys.version.split()[0]} - betty-ml 0.2.x needs Python < 3.11, 0.1.1's metadata is "
              "rejected by pip >= 24.1. No Betty ratio.")
    else:  # pragma: no cover - not installable on this machine
        print("betty-ml imports, but a Betty port of this problem is not included; no Betty ratio.")
    return 0


def chain_text(n: int) -> str:
    return "".join(f"Step {k}: x={k}\n" for k in range(1, n + 1)) + "Final answer: 1"


def _memory_child(prm_dir: str, n: int, budget: int | None) -> int:
    from rewardkit import get_reward

    kw = {} if budget is None else {"max_batch_tokens": budget}
    reward = get_reward("dreamprm.prm", model=prm_dir, **kw)
    text = chain_text(n)
    t0 = time.perf_counter()
    value = reward(["Compute x."], [text])[0]
    prm = reward.scorer.prm
    shapes = getattr(prm, "forward_shapes", [])
    print(json.dumps({"steps": n, "chars": len(text), "value": value, "seconds": time.perf_counter() - t0,
                      "forwards": len(shapes), "max_tokens_per_forward": max((r * w for r, w in shapes), default=None),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    return 0


def _memory(args) -> int:
    from rewardkit_dreamprm import ValueHeadPRM

    from rewardkit.testing import tiny_model_dir

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        ValueHeadPRM.from_pretrained(tiny_model_dir("causal_lm")).save_pretrained(tmp)
        for n in args.prm_memory:
            cmd = [sys.executable, __file__, "--threads", str(args.threads), "--_child", tmp, str(n)]
            if args.max_batch_tokens is not None:
                cmd += ["--max-batch-tokens", str(args.max_batch_tokens)]
            run = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
            lines = [ln for ln in run.stdout.splitlines() if ln.startswith("{")]
            if run.returncode != 0 or not lines:
                tail = (run.stderr.strip().splitlines() or ["?"])[-1]
                print(f"{n:5d} steps: FAILED (exit {run.returncode}): {tail}")
                continue
            r = json.loads(lines[-1])
            print(f"{n:5d} steps ({r['chars']:6d} chars): peak RSS {r['peak_rss_mb']:8.0f} MB, "
                  f"{r['forwards']} forwards, largest {r['max_tokens_per_forward']} padded tokens, "
                  f"{r['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
