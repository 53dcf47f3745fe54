"""The step-level signals of ReasonFlux-PRM (paper §3, spec §1), on a batch of parsed samples.

* coherence  r_t^coh = log  exp(cos(Φ(s_{t-1}), Φ(s_t))/τ) / Σ_{s'∈N} exp(cos(Φ(s_{t-1}), Φ(s'))/τ)
  with negatives N drawn from other trajectories (the positive s_t is in the denominator by
  default, InfoNCE style, so r ≤ 0); for t = 1 the question stands in for s_0.
* alignment  r_t^align = max_j cos(Φ(s_t), Φ(a_j)) over the response steps (default) or
  cos(Φ(s_t), Φ(a)) with the whole response.
* quality    r_t^qual = J(s_t | x, s_<t, a): an expert judge's grade of each step in [0, 1].

Every text of the batch is embedded in one deduplicated, cached call of the :class:`Embedder`;
every judge prompt of the batch goes to the judge in one call.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import deque
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from rewardkit_reasonflux.embed import Embedder
from rewardkit_reasonflux.judge import Judge
from rewardkit_reasonflux.sample import ReasonSample

StepValues = list[float | None]
AlignTarget = Literal["best_step", "whole"]
FirstStep = Literal["question", "skip"]
OnMalformed = Literal["none", "skip_step", "raise"]


class JudgeAnswerError(ValueError):
    """The judge answered something that is not a score (raised with ``on_malformed="raise"``)."""


def _stable_seed(seed: int, *parts: str) -> int:
    h = hashlib.sha256("\x00".join(parts).encode("utf-8", "replace")).hexdigest()
    return (int(h[:15], 16) + seed) % (2**63)


def _logsumexp(xs: Sequence[float]) -> float:
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


class NegativeBank:
    """Steps of earlier batches, used as coherence negatives when a batch has too few unrelated ones."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: deque[tuple[str, str]] = deque(maxlen=max(size, 0) or None)

    def add(self, samples: Sequence[ReasonSample | None]) -> None:
        if self.size <= 0:
            return
        for s in samples:
            if s is None:
                continue
            for t in s.thinking_texts:
                self.items.append((t, s.question))


def select_negatives(i: int, samples: Sequence[ReasonSample | None], k: int, seed: int,
                     bank: Sequence[tuple[str, str]] = ()) -> list[str]:
    """Up to ``k`` negative steps for row ``i``, most unrelated first.

    Tiers: steps of other rows with a different question; then steps of earlier batches (the bank)
    with a different question; then steps of other rows with the same question (in a GRPO batch a
    group shares its prompt). Within a tier the pick is a seeded sample, stable for the same content.
    """
    me = samples[i]
    assert me is not None
    own = set(me.thinking_texts)
    seen: set[str] = set(own)
    tiers: list[list[str]] = [[], [], []]
    for j, other in enumerate(samples):
        if j == i or other is None:
            continue
        tier = 0 if other.question != me.question else 2
        for t in other.thinking_texts:
            if t not in seen:
                seen.add(t)
                tiers[tier].append(t)
    for t, q in bank:
        if q != me.question and t not in seen:
            seen.add(t)
            tiers[1].append(t)
    rng = random.Random(_stable_seed(seed, me.question, *me.thinking_texts))
    out: list[str] = []
    for tier in tiers:
        need = k - len(out)
        if need <= 0:
            break
        out.extend(tier if len(tier) <= need else rng.sample(tier, need))
    return out


def coherence_values(samples: Sequence[ReasonSample | None], embedder: Embedder, *, tau: float = 0.1,
                     num_negatives: int = 8, include_positive: bool = True, first_step: FirstStep = "question",
                     seed: int = 0, bank: NegativeBank | None = None,
                     stats: dict[str, Any] | None = None) -> list[StepValues | None]:
    """Per-step coherence for each sample (None for a row without negatives or without steps)."""
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    bank_items = list(bank.items) if bank is not None else []
    negatives: list[list[str] | None] = []
    texts: list[str] = []
    for i, s in enumerate(samples):
        if s is None or not s.thinking:
            negatives.append(None)
            continue
        neg = select_negatives(i, samples, num_negatives, seed, bank_items)
        negatives.append(neg)
        texts.extend(s.thinking_texts)
        texts.extend(neg)
        if first_step == "question" and s.question:
            texts.append(s.question)
    emb = embedder.lookup(texts)
    out: list[StepValues | None] = []
    no_neg = 0
    for s, neg in zip(samples, negatives):
        if s is None or neg is None:
            out.append(None)
            continue
        if not neg:
            no_neg += 1
            out.append(None)
            continue
        neg_mat = np.stack([emb[t] for t in neg])
        vals: StepValues = []
        for t, step in enumerate(s.thinking_texts):
            if t == 0:
                if first_step != "question" or not s.question:
                    vals.append(None)
                    continue
                prev = emb[s.question]
            else:
                prev = emb[s.thinking_texts[t - 1]]
            pos = float(prev @ emb[step]) / tau
            negs = (neg_mat @ prev / tau).tolist()
            denom = _logsumexp([pos, *negs] if include_positive else negs)
            vals.append(pos - denom)
        out.append(vals)
    if bank is not None:
        bank.add(samples)
    if stats is not None:
        stats["no_negatives"] = stats.get("no_negatives", 0) + no_neg
    return out


def alignment_values(samples: Sequence[ReasonSample | None], embedder: Embedder, *,
                     target: AlignTarget = "best_step",
                     stats: dict[str, Any] | None = None) -> list[StepValues | None]:
    """Per-step cosine with the response (None for a row with no response or no thinking)."""
    if target not in ("best_step", "whole"):
        raise ValueError(f"alignment target must be 'best_step' or 'whole', got {target!r}")
    texts: list[str] = []
    for s in samples:
        if s is None or not s.thinking or not s.response:
            continue
        texts.extend(s.thinking_texts)
        texts.extend(s.response_texts if target == "best_step" else [s.response])
    emb = embedder.lookup(texts)
    out: list[StepValues | None] = []
    empty = 0
    for s in samples:
        if s is None or not s.thinking:
            out.append(None)
            continue
        if not s.response or (target == "best_step" and not s.response_texts):
            empty += 1
            out.append(None)
            continue
        targets = s.response_texts if target == "best_step" else [s.response]
        resp = np.stack([emb[t] for t in targets])
        steps = np.stack([emb[t] for t in s.thinking_texts])
        sims = steps @ resp.T
        out.append([float(v) for v in sims.max(axis=1)])
    if stats is not None:
        stats["empty_response"] = stats.get("empty_response", 0) + empty
    return out


def softmax_combine(values: dict[str, float | None], *, weighting: str = "softmax",
                    weights: dict[str, float] | None = None) -> tuple[float | None, dict[str, float]]:
    """r_t^step = Σ_k w_k r_t^k over the components that have a value.

    ``softmax``: w = softmax of the raw component values themselves (the paper's rule; the scales
    differ, see the docs); ``fixed``: the given weights, renormalised over the present components.
    Returns the combined value and the weights used.
    """
    present = {k: v for k, v in values.items() if v is not None}
    if not present:
        return None, {}
    if weighting == "softmax":
        m = max(present.values())
        ex = {k: math.exp(v - m) for k, v in present.items()}
        z = sum(ex.values())
        w = {k: e / z for k, e in ex.items()}
    elif weighting == "fixed":
        if weights is None:
            raise ValueError("weighting='fixed' needs weights={component: weight}")
        raw = {k: float(weights.get(k, 0.0)) for k in present}
        z = sum(raw.values())
        if z <= 0:
            return None, {}
        w = {k: v / z for k, v in raw.items()}
    else:
        raise ValueError(f"weighting must be 'softmax' or 'fixed', got {weighting!r}")
    return sum(w[k] * present[k] for k in present), w


def _previous(steps: Sequence[str], t: int, max_chars: int | None) -> str:
    if t == 0:
        return "(none: this is the first step)"
    text = "\n\n".join(steps[:t])
    if max_chars is not None and len(text) > max_chars:
        text = "[... earlier steps omitted ...]\n\n" + text[-max_chars:]
    return text


def build_judge(judge: Any, *, template: str, scale: float, max_tokens: int, choices: Any,
                cache_path: str | None, what: str) -> Judge:
    if judge is None:
        raise ValueError(f"{what} needs an expert judge: judge=<a JudgeBackend, a local model path, "
                         "a dict {'type': 'openai', 'base_url': ..., 'model': ...}, or a callable>")
    if isinstance(judge, Judge):
        return judge
    return Judge(judge, template=template, scale=scale, max_tokens=max_tokens, choices=choices,
                 cache_path=cache_path)


def quality_values(samples: Sequence[ReasonSample | None], judge: Judge, *, max_context_chars: int | None,
                   on_malformed: OnMalformed, stats: dict[str, Any]) -> list[StepValues | None]:
    """Per-step judge grades in [0, 1]; all prompts of the batch go to the judge at once (deduplicated)."""
    rows: list[dict[str, str]] = []
    where: list[tuple[int, int]] = []
    for i, s in enumerate(samples):
        if s is None:
            continue
        steps = s.thinking_texts
        for t, step in enumerate(steps):
            rows.append({"question": s.question, "previous_steps": _previous(steps, t, max_context_chars),
                         "step": step, "response": s.response or "(empty)"})
            where.append((i, t))
    scores = judge.score(rows) if rows else []
    out: list[StepValues | None] = [None if s is None else [None] * len(s.thinking) for s in samples]
    malformed = 0
    for (i, t), v, answer in zip(where, scores, judge.last_answers if rows else []):
        if v is None:
            malformed += 1
            if on_malformed == "raise":
                raise JudgeAnswerError(f"judge answer is not a score in [0, 1] (scale {judge.scale:g}): "
                                       f"{answer[:200]!r}")
        row = out[i]
        assert row is not None
        row[t] = v
    if on_malformed == "none":
        out = [None if row is not None and any(v is None for v in row) else row for row in out]
    stats["judge_malformed"] = stats.get("judge_malformed", 0) + malformed
    stats["judge_calls"] = stats.get("judge_calls", 0) + len(rows)
    return out
