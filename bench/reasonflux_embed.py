"""Benchmark: ReasonFlux coherence + alignment, batched & deduplicated encoding vs one encode per trajectory.

    python bench/reasonflux_embed.py                       # 512 trajectories x 16 steps, offline MiniLM
    python bench/reasonflux_embed.py --unique-steps        # no repeated step texts (batching gain only)

Data: ``--questions`` arithmetic questions, ``--per-question`` sampled trajectories each (a GRPO
generation batch: groups of completions of one prompt), every trajectory ``--steps`` thinking
steps drawn from its question's derivation steps (reworded with probability ``--paraphrase``) and
from generic long-CoT steps ("Wait, let me recheck my solution.", ...), plus a two-step response. Repeated steps are what long chain-of-thought
samples look like; the script prints the share of unique step texts so the ratio can be read.

Baseline (named ``per_trajectory``): for each trajectory, one ``SentenceTransformer.encode`` call
on everything that trajectory needs (its steps, question, response steps and its coherence
negatives), no cache, then the same arithmetic. Candidate (``batched``): the plugin's path, one
deduplicated encode call for the whole batch through :class:`rewardkit_reasonflux.Embedder`. Both
use the same model and encode batch size; the script checks that they give the same scores.
"""

from __future__ import annotations

import argparse
import math
import random
import time

import numpy as np

GENERIC = ["Wait, let me recheck my solution.", "Let me try again.", "Hmm, let me think about this carefully.",
           "Let me double-check the arithmetic.", "So far so good.", "Let me re-read the question.",
           "That seems right.", "Alternatively, I could count step by step.", "I should be careful here.",
           "Let me verify this once more.", "OK, that matches.", "Let me write down what we know."]


LEADS = ["So ", "First, ", "Next, ", "We know: ", "Recall that ", "Then ", "Now, "]


def make_batch(n_questions: int, per_question: int, steps: int, unique: bool, seed: int,
               paraphrase: float = 0.3):
    from rewardkit.data import load_arithmetic

    rng = random.Random(seed)
    rows = load_arithmetic()[:n_questions]
    prompts, completions = [], []
    for qi, r in enumerate(rows):
        own = list(r["steps"]) + [f"So we have {r['solution']}.", f"The result is {r['solution']}.",
                                  f"Check: the answer {r['solution']} fits the question."]
        for k in range(per_question):
            chosen = []
            for j in range(steps):
                if rng.random() < 0.25:  # a generic long-CoT step, shared across trajectories
                    chosen.append(rng.choice(GENERIC))
                else:  # a derivation step of this question, phrased one of several ways
                    step = rng.choice(own)
                    if rng.random() < paraphrase:
                        step = rng.choice(LEADS) + step + (f" That was step {j + 1}." if rng.random() < 0.5 else "")
                    chosen.append(step)
            if unique:
                chosen = [f"{s} (q{qi} s{k}.{j})" for j, s in enumerate(chosen)]
            response = f"The answer is {r['solution']}.\n\nSo the final answer is \\boxed{{{r['solution']}}}."
            prompts.append(r["question"])
            completions.append("<think>" + "\n\n".join(chosen) + "</think>" + response)
    return prompts, completions


def per_trajectory(samples, model, tau, k, seed, batch_size):
    """Baseline: one encode call per trajectory, no cache."""
    from rewardkit_reasonflux.components import _logsumexp, select_negatives

    coh, ali = [], []
    for i, s in enumerate(samples):
        negs = select_negatives(i, samples, k, seed)
        texts = s.thinking_texts + negs + [s.question] + s.response_texts
        v = model.encode(texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=False,
                         show_progress_bar=False)
        v = v / np.where(np.linalg.norm(v, axis=1, keepdims=True) > 0, np.linalg.norm(v, axis=1, keepdims=True), 1)
        T = len(s.thinking_texts)
        steps, neg, q, resp = v[:T], v[T:T + len(negs)], v[T + len(negs)], v[T + len(negs) + 1:]
        row = []
        for t in range(T):
            prev = q if t == 0 else steps[t - 1]
            pos = float(prev @ steps[t]) / tau
            row.append(pos - _logsumexp([pos, *(neg @ prev / tau).tolist()]))
        coh.append(row)
        ali.append((steps @ resp.T).max(axis=1).tolist())
    return coh, ali


def batched(samples, model, tau, k, seed, batch_size):
    from rewardkit_reasonflux.embed import Embedder

    import rewardkit

    emb = Embedder(model, batch_size=batch_size)
    emb._lazy_model = model  # share the loaded model; the cache starts empty
    # the plugin's path: reasonflux.step's components (one model call for the whole batch)
    step = rewardkit.get_reward("reasonflux.step", components=["alignment", "coherence"], encoder=emb, tau=tau,
                                num_negatives=k, seed=seed, bank_size=0)
    comp = step.component_values(samples, {})
    return comp["coherence"], comp["alignment"], emb.stats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--questions", type=int, default=64)
    p.add_argument("--per-question", type=int, default=8)
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--negatives", type=int, default=8)
    p.add_argument("--tau", type=float, default=0.1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    p.add_argument("--paraphrase", type=float, default=0.3,
                   help="probability that a derivation step is reworded (more unique texts)")
    p.add_argument("--unique-steps", action="store_true", help="make every step text unique (no dedup gain)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    import torch
    from rewardkit_reasonflux.embed import default_encoder_path
    from rewardkit_reasonflux.sample import SampleParser
    from sentence_transformers import SentenceTransformer

    if args.threads:
        torch.set_num_threads(args.threads)
    prompts, completions = make_batch(args.questions, args.per_question, args.steps, args.unique_steps, args.seed,
                                     args.paraphrase)
    parser = SampleParser()
    samples = [parser.parse(c, q) for q, c in zip(prompts, completions)]
    all_steps = [t for s in samples for t in s.thinking_texts]
    print(f"{len(samples)} trajectories x {args.steps} steps = {len(all_steps)} steps; "
          f"unique step texts {len(set(all_steps))} ({len(set(all_steps)) / len(all_steps):.1%})")
    model = SentenceTransformer(default_encoder_path(), device="cpu")
    model.encode(["warm up"], show_progress_bar=False)

    # CPU time of this process is the headline: on a shared machine wall time swings with other
    # people's load (seen: the same baseline took 101 s and 322 s); with one torch thread it is stable
    t0, c0 = time.perf_counter(), time.process_time()
    coh_b, ali_b, stats = batched(samples, model, args.tau, args.negatives, args.seed, args.batch_size)
    t_batched, c_batched = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    coh_p, ali_p = per_trajectory(samples, model, args.tau, args.negatives, args.seed, args.batch_size)
    t_base, c_base = time.perf_counter() - t0, time.process_time() - c0

    diff = max(max(abs(a - b) for a, b in zip(ra, rb)) for ra, rb in zip(coh_b + ali_b, coh_p + ali_p))
    calls_base = len(samples)
    texts_base = sum(len(s.thinking_texts) + args.negatives + 1 + len(s.response_texts) for s in samples)
    print(f"per_trajectory (baseline): CPU {c_base:8.2f} s  wall {t_base:8.2f} s   {calls_base} encode calls, "
          f"{texts_base} texts encoded")
    print(f"batched+dedup (plugin):    CPU {c_batched:8.2f} s  wall {t_batched:8.2f} s   {stats['model_calls']} "
          f"encode call(s), {stats['encoded']} texts encoded")
    print(f"max |score difference| = {diff:.2e}")
    assert diff < 1e-4 or math.isnan(diff), "the two paths disagree"
    print(f"wall-time ratio (noisy on a shared machine): {t_base / t_batched:.2f}x")
    print(f"speed-up batched+dedup vs per_trajectory (CPU time): {c_base / c_batched:.2f}x (target >= 5x)")


if __name__ == "__main__":
    main()
