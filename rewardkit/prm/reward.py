"""PRMReward: any step scorer + a reducer as a TRL process reward."""

from __future__ import annotations

from collections import Counter
from typing import Any

from rewardkit.prm.scorers import StepScorer, make_scorer
from rewardkit.reducers import Reducer
from rewardkit.reward import STEP_SCORES, Batch, ProcessReward, StepScores, message_text
from rewardkit.trajectory import Splitter, parse_trajectory, split_steps

SCORER_STATS = ("truncated", "too_long", "unparsed", "idle_forwards")


def prompt_text(prompt: Any) -> str:
    """The question a PRM sees: a plain prompt as is; for chat prompts, the last user message."""
    if prompt is None:
        return ""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        users = [m for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        msgs = users or [m for m in prompt if isinstance(m, dict)]
        return message_text(msgs[-1].get("content")) if msgs else ""
    raise TypeError(f"prompt of type {type(prompt).__name__} is neither text nor a list of messages")


class PRMReward(ProcessReward):
    """A process reward (kind ``"process"``) scoring every step of a completion with a PRM.

    The completion is split into steps by ``splitter`` (see :func:`rewardkit.trajectory.split_steps`;
    with ``think=True`` only the ``<think>`` part is split when there is one), the scorer gives
    one score per step, and ``reducer`` turns them into TRL's scalar. Per-step scores and the
    character span of each step stay in :attr:`last_step_scores` for trainer hooks such as
    ``prm.process_advantage``; the texts they index into are ``last_call.texts``.

    Args:
        scorer: a :class:`StepScorer`, or a dict ``{"backend": "tagged", "model": path, ...}``.
        reducer: ``min`` (default), ``mean``, ``last``, ``prod``, ``mean_logodds``,
            ``softmax_weighted`` or a callable.
        splitter: how the completion is split into steps.
        max_steps: completions with more steps have their trailing steps merged into the last
            one (counted as ``merged``), bounding the PRM's work; None: no limit.

    A completion with no steps has no process score (``None``, counted). Rows the scorer could
    not fit (``too_long``) are ``None`` too, and every such row is counted and logged as
    ``rewardkit/<name>/{truncated,too_long,merged}``, plus ``steps_mean`` and ``step_score_mean``.
    """

    def __init__(self, scorer: StepScorer | dict[str, Any], *, reducer: str | Reducer = "min",
                 splitter: Splitter = "blank_line", think: bool = False, max_steps: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(reducer=reducer, **kwargs)
        if isinstance(scorer, dict):
            params = dict(scorer)
            scorer = make_scorer(params.pop("backend", "tagged"), **params)
        if not isinstance(scorer, StepScorer):
            raise TypeError(f"scorer must be a StepScorer or a dict of its params, got {type(scorer).__name__}")
        if max_steps is not None and max_steps < 1:
            raise ValueError("max_steps must be >= 1 or None")
        self.scorer = scorer
        self.splitter = splitter
        self.think = think
        self.max_steps = max_steps

    @property
    def image_columns(self) -> tuple[str, ...]:
        """The image columns this reward reads (``rewardkit serve`` decodes them): a vision scorer's."""
        return ("image", "images") if getattr(self.scorer, "takes_images", False) else ()

    def split(self, text: str) -> list[tuple[int, int]]:
        """Character spans of the steps of ``text``."""
        if self.think:
            steps = parse_trajectory(text, self.splitter).steps
        else:
            steps = split_steps(text, self.splitter)
        return [s.span for s in steps]

    def step_scores_batch(self, batch: Batch) -> list[StepScores | None]:
        out: list[StepScores | None] = [None] * len(batch)
        rows, prompts, step_texts, spans_of = [], [], [], []
        for i in range(len(batch)):
            if batch.skip[i]:
                continue
            text = batch.texts[i]
            spans = self.split(text)
            if self.max_steps is not None and len(spans) > self.max_steps:
                batch.counts["merged"] += 1
                spans = spans[: self.max_steps - 1] + [(spans[self.max_steps - 1][0], spans[-1][1])]
            if not spans:
                out[i] = StepScores([], [])
                continue
            rows.append(i)
            text_prompt = prompt_text(batch.prompts[i])
            if getattr(self.scorer, "takes_images", False):  # a VLM scorer: the row's images go with it
                from rewardkit.prm.multimodal import scorer_prompt

                text_prompt = scorer_prompt(text_prompt, batch.prompts[i], {k: v[i] for k, v in batch.columns.items()})
            prompts.append(text_prompt)
            step_texts.append([text[a:b] for a, b in spans])
            spans_of.append(spans)
        stats: Counter[str] = Counter()
        if rows:
            scores = self.scorer.score(prompts, step_texts, stats=stats)
        else:
            self.scorer.keep_in_step(stats)
            scores = []
        batch.counts.update({k: v for k, v in stats.items() if k in SCORER_STATS})
        for i, spans, sc in zip(rows, spans_of, scores):
            out[i] = None if sc is None else StepScores([float(x) for x in sc], list(spans))
        return out

    def log_components(self, batch: Batch) -> None:
        log = batch.context.log_metric
        if log is None:
            return
        for key in (*SCORER_STATS, "merged"):
            log(f"rewardkit/{self.name}/{key}", float(batch.counts.get(key, 0)))
        rows = [s for s in batch.details.get(STEP_SCORES, []) if s is not None and s.scores]
        n_steps = sum(len(s.scores) for s in rows)
        log(f"rewardkit/{self.name}/steps_mean", n_steps / len(rows) if rows else 0.0)
        log(f"rewardkit/{self.name}/step_score_mean",
            sum(sum(s.scores) for s in rows) / n_steps if n_steps else 0.0)


def prm_reward(model: str | None = None, *, backend: str = "tagged", reducer: str = "min",
               splitter: Splitter = "blank_line", think: bool = False, max_steps: int | None = None,
               name: str | None = None, on_error: str = "raise", **scorer_params: Any) -> PRMReward:
    """Factory of the registered ``prm.score`` reward: scorer params go to the backend."""
    if backend != "remote":
        if model is None:
            raise ValueError("prm.score needs model= (a path or id) for the tagged/prefix backends")
        scorer_params["model"] = model
    scorer = make_scorer(backend, **scorer_params)
    return PRMReward(scorer, reducer=reducer, splitter=splitter, think=think, max_steps=max_steps,
                     name=name, on_error=on_error)
