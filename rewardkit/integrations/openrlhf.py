"""rewardkit rewards for OpenRLHF: the ``reward_func`` file and the shared request/response logic.

OpenRLHF (checked at OpenRLHF/OpenRLHF@3c3be6234e0cb353e76bb8019947db9dfe99fca7,
``openrlhf/utils/agent.py`` ``SingleTurnAgentExecutor``) scores each rollout either over HTTP,
``POST {"query": [...], "prompts": [...], "labels": [...]}`` to every ``--reward.remote_url``
(``rewardkit serve`` answers it at ``/get_reward``, :mod:`rewardkit.serve.openrlhf`), or, when the
URL ends in ``.py``, by calling that file's ``reward_func(queries, prompts, labels)`` in a thread,
one rollout per call. Either way the answer is ``{"rewards", "scores", "extra_logs"}``: ``rewards``
feed the advantage, ``scores`` the dynamic filtering, ``extra_logs`` the logs (each value becomes a
tensor, so every value is a number).

``query`` is ``tokenizer.decode(prompt_ids + response_ids, skip_special_tokens=False)``: the prompt
text, then the response with its special tokens (the EOS, e.g. ``<|im_end|>``). The response is cut
from the query after the prompt; ``labels`` are the gold column (``solution`` by default, the
column ``math.accuracy`` reads; a label that is a JSON object is spread into columns).

For the file route, point ``--reward.remote_url`` at this file with ``REWARDKIT_SPEC`` (a rewards
YAML) in the environment of OpenRLHF's rollout workers, or write a two-line file::

    from rewardkit.integrations.openrlhf import make_reward_func
    reward_func = make_reward_func("/abs/path/rewards.yaml", label_column="solution")
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["NONE_KEY", "PROMPT_MISSING_KEY", "answer", "cut_response", "label_columns", "make_reward_func",
           "reward_func"]

NONE_KEY = "rewardkit/none"                      # 1.0 where no reward applied (the reward is none_score)
PROMPT_MISSING_KEY = "rewardkit/prompt_missing"  # 1.0 where the prompt was not found in the query


def cut_response(query: str, prompt: str) -> str | None:
    """The response part of an OpenRLHF query: the text after the prompt (None if the prompt is not
    in the query, which is counted rather than scored on the whole query)."""
    if query.startswith(prompt):
        return query[len(prompt):]
    at = query.find(prompt) if prompt else -1
    return None if at < 0 else query[at + len(prompt):]


def label_columns(labels: Sequence[Any], label_column: str) -> dict[str, list[Any]]:
    """Reward columns from OpenRLHF labels: the label under ``label_column``, or a mapping's items."""
    n = len(labels)
    rows = [dict(x) if isinstance(x, Mapping) else {label_column: x} for x in labels]
    keys: dict[str, None] = {}
    for r in rows:
        keys.update(dict.fromkeys(r))
    return {k: [r.get(k) for r in rows] for k in keys} if n else {label_column: []}


def answer(values: Mapping[str, Sequence[float | None]], weights: Mapping[str, float], missing: Sequence[bool],
           none_score: float = 0.0) -> dict[str, Any]:
    """OpenRLHF's answer from each reward's values (None = does not apply).

    ``rewards`` and ``scores`` are the weighted total (``none_score`` where no reward applied or the
    prompt was missing, counted under :data:`NONE_KEY` / :data:`PROMPT_MISSING_KEY`); ``extra_logs``
    has every reward's values with 0.0 where it did not apply (OpenRLHF turns each into a tensor, so
    no nulls) and ``<name>/none`` flags marking those rows.
    """
    n = len(missing)
    totals: list[float] = []
    none_flags: list[float] = []
    for i in range(n):
        applicable = [(weights[k], v[i]) for k, v in values.items() if v[i] is not None]
        if missing[i] or not applicable:
            totals.append(float(none_score))
            none_flags.append(1.0)
        else:
            totals.append(float(sum(w * float(v) for w, v in applicable)))
            none_flags.append(0.0)
    logs: dict[str, list[float]] = {}
    for k, v in values.items():
        logs[k] = [0.0 if x is None else float(x) for x in v]
        logs[f"{k}/none"] = [1.0 if x is None else 0.0 for x in v]
    logs[NONE_KEY] = none_flags
    logs[PROMPT_MISSING_KEY] = [1.0 if m else 0.0 for m in missing]
    return {"rewards": totals, "scores": list(totals), "extra_logs": logs}


def make_reward_func(spec: Any, *, label_column: str = "solution", none_score: float = 0.0,
                     on_error: str | None = None):
    """A ``reward_func(queries, prompts, labels, **kwargs)`` for OpenRLHF over a rewards spec (YAML path or
    mapping), composed on first call; returns ``{"rewards", "scores", "extra_logs"}`` as torch tensors
    (lists where torch is absent), the types OpenRLHF's own examples return."""
    if not math.isfinite(float(none_score)):
        raise ValueError(f"none_score must be finite, got {none_score!r}")
    state: dict[str, Any] = {}
    lock = threading.Lock()  # OpenRLHF calls from many threads; a process reward keeps per-call state

    def reward_func(queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any], **kwargs: Any):
        if not (len(queries) == len(prompts) == len(labels)):
            raise ValueError(f"{len(queries)} queries, {len(prompts)} prompts and {len(labels)} labels")
        with lock:
            if "rewards" not in state:
                from rewardkit.compose import compose, load_spec

                mapping = load_spec(spec) if isinstance(spec, (str, os.PathLike)) else spec
                state["rewards"] = compose(mapping, on_error=on_error)
            rs = state["rewards"]
            responses = [cut_response(q, p) for q, p in zip(queries, prompts)]
            missing = [r is None for r in responses]
            keep = [i for i, r in enumerate(responses) if r is not None]
            columns = label_columns([labels[i] for i in keep], label_column)
            values: dict[str, list[float | None]] = {}
            for reward in rs:
                got = reward([prompts[i] for i in keep], [responses[i] for i in keep], None, **columns) if keep else []
                row: list[float | None] = [None] * len(queries)
                for i, v in zip(keep, got):
                    row[i] = v
                values[reward.name] = row
        out = answer(values, dict(zip(rs.names, rs.weights)), missing, none_score)
        return _as_tensors(out)

    return reward_func


def _as_tensors(out: dict[str, Any]) -> dict[str, Any]:
    try:
        import torch
    except ImportError:  # pragma: no cover - OpenRLHF always has torch
        return out
    return {"rewards": torch.tensor(out["rewards"], dtype=torch.float32),
            "scores": torch.tensor(out["scores"], dtype=torch.float32),
            "extra_logs": {k: torch.tensor(v, dtype=torch.float32) for k, v in out["extra_logs"].items()}}


_default: Any = None


def reward_func(queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any], **kwargs: Any):
    """OpenRLHF's ``--reward.remote_url /path/to/rewardkit/integrations/openrlhf.py``: the spec comes
    from ``$REWARDKIT_SPEC``, the label column from ``$REWARDKIT_LABEL_COLUMN`` (default ``solution``)."""
    global _default
    if _default is None:
        spec = os.environ.get("REWARDKIT_SPEC")
        if not spec:
            raise RuntimeError("set REWARDKIT_SPEC to a rewards YAML for rewardkit's OpenRLHF reward_func "
                               "(or write a file with reward_func = make_reward_func('rewards.yaml'))")
        _default = make_reward_func(spec, label_column=os.environ.get("REWARDKIT_LABEL_COLUMN", "solution"))
    return _default(queries, prompts, labels, **kwargs)
