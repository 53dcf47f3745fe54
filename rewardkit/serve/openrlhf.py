"""``POST /get_reward``: OpenRLHF's remote reward protocol on ``rewardkit serve``.

Request ``{"query": [str], "prompts": [str], "labels": [any]}`` (OpenRLHF/OpenRLHF@3c3be6234e0c,
``openrlhf/utils/agent.py``); answer ``{"rewards": [float], "scores": [float], "extra_logs":
{name: [float]}}`` (:func:`rewardkit.integrations.openrlhf.answer`). Each query's response is the
text after its prompt; labels fill the server's ``label_column``. Every served reward scores the
rows through its own batcher (``POST /v1/score``'s path: the same validation, row limit, bounded
queue, request deadline and token), and the values are summed with the spec's weights.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from rewardkit.integrations.openrlhf import answer, cut_response, label_columns
from rewardkit.serve.errors import BadRequest, TooLarge


async def get_reward(server: Any, body: Any) -> dict[str, Any]:
    if not isinstance(body, Mapping):
        raise BadRequest("the request body must be a JSON object")
    queries, prompts = body.get("query"), body.get("prompts")
    if not isinstance(queries, list) or not all(isinstance(q, str) for q in queries):
        raise BadRequest("'query' must be a list of strings (prompt + response, as OpenRLHF decodes them)")
    if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts) or len(prompts) != len(queries):
        raise BadRequest(f"'prompts' must be a list of {len(queries)} strings, one per query")
    labels = body.get("labels")
    labels = [None] * len(queries) if labels is None else labels
    if not isinstance(labels, list) or len(labels) != len(queries):
        raise BadRequest(f"'labels' must be null or a list of {len(queries)} values, one per query")
    if len(queries) > server.config.max_request_rows:
        raise TooLarge(f"{len(queries)} rows in one request; this server takes at most "
                       f"{server.config.max_request_rows}")
    responses = [cut_response(q, p) for q, p in zip(queries, prompts)]
    missing = [r is None for r in responses]
    keep = [i for i, r in enumerate(responses) if r is not None]
    values: dict[str, list[float | None]] = {name: [None] * len(queries) for name in server.rewards}
    if keep:
        columns = label_columns([labels[i] for i in keep], server.config.label_column)
        prompts_kept = [prompts[i] for i in keep]
        responses_kept = [responses[i] for i in keep]
        names = list(server.rewards)
        results = await asyncio.gather(*(server.score({"reward": name, "prompts": prompts_kept,
                                                       "completions": responses_kept, "columns": columns})
                                         for name in names))
        for name, res in zip(names, results):
            for i, v in zip(keep, res["rewards"]):
                values[name][i] = v
    return answer(values, server.weights, missing)
