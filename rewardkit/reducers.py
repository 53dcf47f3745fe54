"""Reducers: turn a trajectory's per-step scores into the one scalar a TRL reward returns."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

Reducer = Callable[[Sequence[float]], float]

# probabilities are clamped away from 0 and 1 before log-odds so a confident PRM gives a large,
# finite value instead of inf/NaN
LOGODDS_EPS = 1e-6


def _min(xs: Sequence[float]) -> float:
    return float(min(xs))


def _mean(xs: Sequence[float]) -> float:
    return float(sum(xs) / len(xs))


def _last(xs: Sequence[float]) -> float:
    return float(xs[-1])


def _prod(xs: Sequence[float]) -> float:
    out = 1.0
    for x in xs:
        out *= x
    return float(out)


def logodds(p: float, eps: float = LOGODDS_EPS) -> float:
    p = min(max(float(p), eps), 1.0 - eps)
    return math.log(p / (1.0 - p))


def _mean_logodds(xs: Sequence[float]) -> float:
    return float(sum(logodds(x) for x in xs) / len(xs))


def _softmax_weighted(xs: Sequence[float]) -> float:
    # low scores get the most weight: a soft minimum that still credits good steps
    m = min(xs)
    ws = [math.exp(-(x - m)) for x in xs]
    return float(sum(w * x for w, x in zip(ws, xs)) / sum(ws))


REDUCERS: dict[str, Reducer] = {
    "min": _min,
    "mean": _mean,
    "last": _last,
    "prod": _prod,
    "mean_logodds": _mean_logodds,
    "softmax_weighted": _softmax_weighted,
}


def get_reducer(reducer: str | Reducer) -> Reducer:
    if callable(reducer):
        return reducer
    try:
        return REDUCERS[reducer]
    except KeyError:
        raise ValueError(f"unknown reducer {reducer!r}; choose one of {sorted(REDUCERS)} or pass a callable") from None


def reduce_steps(scores: Sequence[float], reducer: str | Reducer) -> float | None:
    """Reduce step scores to a scalar; a trajectory without steps has no process score (None)."""
    if len(scores) == 0:
        return None
    return get_reducer(reducer)(scores)
