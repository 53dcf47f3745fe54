"""DreamPRM: wall time of an upper step (DARTS hypergradient) vs a lower step on the tiny PRM.

    python bench/dreamprm_step.py [--steps 20] [--batch 16] [--meta-batch 16] [--variant v1|1.5]

Baseline: the lower step (forward + backward + AdamW on the PRM), measured in the same run on the
same batches. The upper step = meta forward/backward for v = dL_meta/dphi + two perturbed lower
forwards + AdamW on the weights. Target: upper/lower <= 3x. Also times the exact hypergradient
(autograd through one lower step) and, when ``betty-ml`` imports, Betty's DARTS step on the same
problem (betty-ml 0.2.x requires Python < 3.11 and 0.1.1 has metadata pip >= 24.1 rejects, so on
this Python it usually does not install; the script says so).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--meta-batch", type=int, default=16)
    ap.add_argument("--variant", default="v1", choices=["v1", "1.5"])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

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


if __name__ == "__main__":
    raise SystemExit(main())
