"""Built-in generic rewards, registered through the same hook as any plugin.

``math.accuracy``  math-verify equivalence of the completion's answer with a gold column.
``format.boxed``   1 when the completion has a non-empty, balanced ``\\boxed{...}``.
``format.think``   TRL's ``think_format_reward``: ``<think>...</think>`` then the answer.
``length.overlong`` TRL's soft overlong punishment on ``completion_ids`` (DAPO).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from rewardkit.hookspecs import hookimpl
from rewardkit.reward import Batch, Reward, RewardInputError, Sample

BOXED = "\\boxed{"


def last_boxed(text: str) -> str | None:
    """Content of the last balanced ``\\boxed{...}``, or None when there is none."""
    start = text.rfind(BOXED)
    while start >= 0:
        depth, i = 1, start + len(BOXED)
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            return text[start + len(BOXED): i - 1]
        start = text.rfind(BOXED, 0, start)
    return None


class MathAccuracy(Reward):
    """1.0 when the completion's final answer equals the gold answer under math-verify, else 0.0.

    The prediction is read from the last ``answer_window`` characters (answers come last, and it
    bounds math-verify's work on huge completions); ``\\boxed{}`` is tried first, then plain
    expressions ("the answer is 42"). A missing or unparseable gold answer returns ``None``
    (the row is skipped by TRL and counted under ``rewardkit/<name>/none``).
    """

    def __init__(self, *, gold_column: str = "solution", answer_window: int = 4096,
                 think: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gold_column = gold_column
        self.answer_window = answer_window
        self.think = think

    def _timeouts(self) -> tuple[int | None, int | None]:
        # math-verify times out with signal.alarm, which only works on the main thread
        if threading.current_thread() is threading.main_thread():
            return 10, 5
        logging.getLogger("math_verify").setLevel(logging.ERROR)
        return None, None

    def score_batch(self, batch: Batch) -> list[float | None]:
        if self.gold_column not in batch.columns:
            raise RewardInputError(
                f"reward {self.name!r} needs the gold answers in a dataset column {self.gold_column!r}; "
                f"columns passed: {sorted(batch.columns) or 'none'} (set gold_column=...)")
        values = super().score_batch(batch)
        log_extra = batch.context.log_extra
        if log_extra is not None:
            log_extra(f"{self.name}/gold", [str(g) for g in batch.columns[self.gold_column]])
        return values

    def score(self, sample: Sample) -> float | None:
        from latex2sympy2_extended import NormalizationConfig
        from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

        gold = sample.row[self.gold_column]
        if gold is None or (isinstance(gold, str) and not gold.strip()):
            return None
        parse_timeout, verify_timeout = self._timeouts()
        gold_text = str(gold)
        gold_parsed = parse(gold_text if "$" in gold_text or "\\" in gold_text else f"${gold_text}$",
                            parsing_timeout=parse_timeout)
        if not gold_parsed:
            return None
        text = sample.text
        if self.think and "</think>" in text:
            text = text.rsplit("</think>", 1)[1]
        text = text[-self.answer_window:]
        boxed = last_boxed(text)
        config = [LatexExtractionConfig(normalization_config=NormalizationConfig(units=True),
                                        boxed_match_priority=0, try_extract_without_anchor=False),
                  ExprExtractionConfig()]
        target = f"\\boxed{{{boxed}}}" if boxed is not None else text
        answer = parse(target, extraction_config=config, extraction_mode="first_match",
                       parsing_timeout=parse_timeout)
        if not answer:
            return 0.0
        return float(verify(gold_parsed, answer, timeout_seconds=verify_timeout))


class BoxedFormat(Reward):
    """1.0 when the completion contains a non-empty, balanced ``\\boxed{...}``, else 0.0."""

    empty_value = 0.0

    def score_batch(self, batch: Batch) -> list[float | None]:
        return [has_boxed_answer(t) for t in batch.texts]


def has_boxed_answer(text: str) -> float:
    boxed = last_boxed(text)
    return 1.0 if boxed is not None and boxed.strip() else 0.0


class ThinkFormat(Reward):
    """TRL's ``think_format_reward``: 1.0 for ``<think>…</think>`` followed by the answer."""

    empty_value = 0.0

    def score_batch(self, batch: Batch) -> list[float | None]:
        from trl.rewards import think_format_reward

        # TRL's function reads completion[0]["content"]: hand it the message lists themselves when
        # they are single assistant messages holding our texts, else wrap our extracted texts
        completions = batch.completions
        if not batch.single_messages:
            completions = [[{"content": t}] for t in batch.texts]
        return think_format_reward(completions)


class OverlongPenalty(Reward):
    """TRL's soft overlong punishment (DAPO): 0 up to ``max_completion_len - soft_punish_cache``
    tokens, then linearly down to -1 at ``max_completion_len``, -1 beyond."""

    def __init__(self, *, max_completion_len: int = 512, soft_punish_cache: int = 128, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0 < soft_punish_cache <= max_completion_len:
            raise ValueError("need 0 < soft_punish_cache <= max_completion_len")
        self.max_completion_len = max_completion_len
        self.soft_punish_cache = soft_punish_cache

    def score_batch(self, batch: Batch) -> list[float | None]:
        from trl.rewards import get_soft_overlong_punishment

        if batch.completion_ids is None:
            raise RewardInputError(f"reward {self.name!r} counts tokens and needs completion_ids "
                                   "(TRL passes them; pass them when calling it directly)")
        fn = get_soft_overlong_punishment(self.max_completion_len, self.soft_punish_cache)
        return fn(completion_ids=batch.completion_ids)


@hookimpl
def rewardkit_register_rewards(register) -> None:
    register("math.accuracy", MathAccuracy, kind="outcome",
             description="math-verify equivalence of the final answer with a gold column (default 'solution')")
    register("format.boxed", BoxedFormat, kind="outcome",
             description="1 when the completion has a non-empty \\boxed{...}")
    register("format.think", ThinkFormat, kind="outcome",
             description="TRL's think_format_reward: <think>...</think> followed by an answer")
    register("length.overlong", OverlongPenalty, kind="outcome",
             description="TRL's soft overlong punishment on completion_ids (DAPO)")
