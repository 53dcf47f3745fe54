"""Reward base classes that follow TRL's reward-function protocol exactly.

TRL calls every reward function once per generation batch as::

    f(prompts=[...], completions=[...], completion_ids=[[...]], <dataset columns>=[...],
      trainer_state=..., log_extra=..., log_metric=..., environments=...) -> list[float | None]

``trainer_state``, ``log_extra``, ``log_metric`` and ``environments`` are optional: TRL's
AsyncGRPOTrainer passes none of them. ``None`` means "does not apply to this sample".

A subclass implements :meth:`Reward.score` (one sample) or :meth:`Reward.score_batch` (a whole
batch, for models). The base class turns plain and conversational completions into text, checks
column lengths, gives empty, oversize and non-UTF-8 completions a defined value, applies the
``on_error`` policy and counts everything it did through ``log_metric``.
"""

from __future__ import annotations

import asyncio
import math
import operator
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter, methodcaller
from typing import Any, ClassVar, Literal

from rewardkit.reducers import Reducer, get_reducer, reduce_steps

ErrorPolicy = Literal["raise", "none"]
TRL_CONTEXT_KWARGS = ("trainer_state", "log_extra", "log_metric", "environments")
DEFAULT_MAX_CHARS = 262_144
# counters logged on every call, always the same keys so ranks gather the same metric names;
# "timeouts": rows whose check ran past its deadline (their value is None, so also in "none")
COUNTERS = ("errors", "empty", "oversize", "decode_errors", "none", "timeouts")
STEP_SCORES = "step_scores"  # the detail every ProcessReward shares: its rows' StepScores


class RewardInputError(ValueError):
    """The trainer handed a reward inputs that do not fit the protocol (lengths, types)."""


@dataclass
class CallContext:
    """The optional side channels TRL passes with each reward call."""

    trainer_state: Any = None
    log_extra: Callable[[str, list[Any]], None] | None = None
    log_metric: Callable[[str, float], None] | None = None
    environments: list[Any] | None = None

    @property
    def global_step(self) -> int | None:
        return getattr(self.trainer_state, "global_step", None)


@dataclass
class Sample:
    """One row of a reward call: the completion as text plus everything that came with it."""

    index: int
    prompt: Any
    text: str
    completion: Any
    completion_ids: list[int] | None
    row: dict[str, Any]


@dataclass
class Batch:
    prompts: list[Any]
    completions: list[Any]
    texts: list[str]
    completion_ids: list[list[int]] | None
    columns: dict[str, list[Any]]
    context: CallContext
    skip: list[bool] = field(default_factory=list)  # rows that already have their defined value
    # per-call counts live on the batch, not the reward, so concurrent calls (AsyncGRPO runs sync
    # rewards in threads) never mix their numbers
    counts: Counter[str] = field(default_factory=Counter)
    # every completion is one assistant message whose content is texts[i] (TRL without tools)
    single_messages: bool = False
    # a reward's own per-call data, handed between its stages (score_batch -> log_components);
    # never read by other code, so plugins keep their state off the reward and off Batch attributes
    extras: dict[str, Any] = field(default_factory=dict)
    # row-aligned data a reward shares with hooks (see share()); ends up in Reward.last_call
    details: dict[str, list[Any]] = field(default_factory=dict)
    # per-call statistics the reward logged (see log_metric()); ends up in Reward.last_call
    metrics: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)

    def share(self, key: str, values: Sequence[Any]) -> None:
        """Publish one value per row under ``key`` for trainer hooks (``reward.last_call.details``)."""
        if len(values) != len(self):
            raise RewardInputError(f"detail {key!r} has {len(values)} rows for a batch of {len(self)}")
        self.details[key] = list(values)

    def log_metric(self, key: str, value: float) -> None:
        """Log a per-call statistic to the trainer (when it passed ``log_metric``) and keep it in
        ``reward.last_call.metrics``, so it is seen whether or not a trainer is listening."""
        self.metrics[key] = float(value)
        if self.context.log_metric is not None:
            self.context.log_metric(key, float(value))

    def sample(self, i: int) -> Sample:
        return Sample(
            index=i,
            prompt=self.prompts[i],
            text=self.texts[i],
            completion=self.completions[i],
            completion_ids=None if self.completion_ids is None else self.completion_ids[i],
            row={k: v[i] for k, v in self.columns.items()},
        )


@dataclass
class CallRecord:
    """What the last call of a reward leaves behind for trainer hooks, servers and tests.

    ``values`` are the rewards returned; ``details[key]`` holds one entry per row, as the reward
    shared it with :meth:`Batch.share` (``"step_scores"`` for every :class:`ProcessReward`);
    ``metrics`` are the statistics it logged with :meth:`Batch.log_metric`; ``texts`` are the
    completion texts it scored (after decoding fixes), which step spans index into. A reward
    replaces its record as a whole at the end of each call, so a reader never sees half of one call.
    """

    values: list[float | None] = field(default_factory=list)
    details: dict[str, list[Any]] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.values)

    def detail(self, key: str) -> list[Any]:
        """The row-aligned detail ``key``; one None per row when the call did not share it."""
        return list(self.details.get(key, [None] * len(self.values)))


@dataclass
class StepScores:
    """Per-step scores of one completion; ``spans[i]`` is step i's ``(start, end)`` in the text."""

    scores: list[float]
    spans: list[tuple[int, int]]

    def __post_init__(self) -> None:
        if len(self.scores) != len(self.spans):
            raise ValueError(f"{len(self.scores)} step scores but {len(self.spans)} spans")


def message_text(content: Any) -> str:
    """Text of a chat message's content: a string or a list of typed parts (VLM style)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content
                       if not isinstance(p, dict) or p.get("type", "text") == "text")
    raise TypeError(f"message content of type {type(content).__name__} is not text")


def completion_text(completion: Any) -> str:
    """Text of a plain (``str``) or conversational (list of messages) completion.

    For conversational completions the assistant messages are joined: with tools one completion
    holds several messages (assistant, tool, assistant, ...), and only the model's words are scored.
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, bytes):
        return completion.decode("utf-8", errors="replace")
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, list):
        parts = [message_text(m.get("content")) for m in completion
                 if isinstance(m, dict) and m.get("role", "assistant") == "assistant"]
        return "\n\n".join(parts)
    raise TypeError(f"completion of type {type(completion).__name__} is neither text nor a list of messages")


# TRL hands every reward function of a step the same completions list: its texts are extracted
# once and reused while that very list (and every element in it) is what the next reward gets
_text_cache: tuple[list[Any], tuple[Any, ...], TextBatch] | None = None


@dataclass(frozen=True)
class TextBatch:
    """The texts of one completions list, with what every reward checks about them."""

    texts: list[str]
    plain: bool  # nothing empty, blank or non-ASCII: no row needs a defined value or a decode fix
    max_len: int
    single_messages: bool  # every completion is one assistant message whose content is texts[i]


def _texts_of(completions: Sequence[Any]) -> TextBatch:
    global _text_cache
    cached = _text_cache
    if (cached is not None and cached[0] is completions and len(cached[1]) == len(completions)
            and all(map(operator.is_, completions, cached[1]))):
        return cached[2]
    texts, single = _fast_texts(completions)
    if texts is None:
        texts = [completion_text(c) for c in completions]
    plain = all(texts) and not any(map(str.isspace, texts)) and all(map(str.isascii, texts))
    batch = TextBatch(texts, plain, max(map(len, texts), default=0), single)
    if isinstance(completions, list):
        _text_cache = (completions, tuple(completions), batch)
    return batch


def _fast_texts(completions: Sequence[Any]) -> tuple[list[str] | None, bool]:
    """The texts of all-plain or all-single-assistant-message completions, with C-level loops only
    (the shapes TRL produces without tools), and whether they are single messages; (None, False)
    for anything else."""
    types = set(map(type, completions))
    if types <= {str}:
        return list(completions), False
    if types != {list} or set(map(len, completions)) != {1}:
        return None, False
    messages = list(map(itemgetter(0), completions))
    if set(map(type, messages)) != {dict}:
        return None, False
    try:
        texts = list(map(itemgetter("content"), messages))
    except KeyError:
        return None, False
    roles = set(map(methodcaller("get", "role", "assistant"), messages))
    if roles != {"assistant"} or not set(map(type, texts)) <= {str}:
        return None, False
    return texts, True


def _all_finite_numbers(values: Sequence[Any]) -> bool:
    """One C-level pass: a None or non-number makes sum() raise, a NaN/inf makes it non-finite."""
    try:
        return math.isfinite(sum(values))
    except TypeError:
        return False


def _is_utf8_clean(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Reward:
    """Base class for rewardkit rewards: a picklable callable following TRL's protocol.

    Args:
        name: the metric name TRL logs under (``rewards/<name>/mean``); the registry sets the
            registered name.
        on_error: ``"raise"`` re-raises an exception inside the reward; ``"none"`` turns the
            affected rows into ``None`` and counts them in ``rewardkit/<name>/errors``.
        max_chars: completions longer than this get ``oversize_value`` and are counted.
        oversize_value: the defined value of an oversize completion (``None``: does not apply).
    """

    kind: ClassVar[str] = "outcome"
    # the value of an empty completion; None defers to score(), which sees the empty text
    empty_value: ClassVar[float | None] = None
    # columns whose values are file paths the reward opens; `rewardkit serve` resolves them under
    # --data-root and refuses them otherwise, so a client cannot make the server read any file
    path_columns: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        *,
        name: str | None = None,
        on_error: ErrorPolicy = "raise",
        max_chars: int | None = DEFAULT_MAX_CHARS,
        oversize_value: float | None = None,
    ) -> None:
        if on_error not in ("raise", "none"):
            raise ValueError(f"on_error must be 'raise' or 'none', got {on_error!r}")
        self.__name__ = name or ""
        self.on_error = on_error
        self.max_chars = max_chars
        self.oversize_value = oversize_value
        self.counters: Counter[str] = Counter()
        self.last_call = CallRecord()

    # -- identity -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.__name__

    @name.setter
    def name(self, value: str) -> None:
        self.__name__ = value

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, kind={self.kind!r})"

    # -- heavy state ------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        # lazily loaded models/encoders live in attributes starting with "_lazy_" and never pickle:
        # the copy in TRL's rollout process loads its own on first call
        return {k: (None if k.startswith("_lazy_") else v) for k, v in self.__dict__.items()}

    # -- to override ------------------------------------------------------------------------
    def score(self, sample: Sample) -> float | None:
        """Score one sample. Override this, or :meth:`score_batch` for batched models."""
        raise NotImplementedError(f"{type(self).__name__} must implement score() or score_batch()")

    def score_batch(self, batch: Batch) -> list[float | None]:
        return self.each_row(batch, lambda i: self.score(batch.sample(i)))

    def each_row(self, batch: Batch, fn: Callable[[int], Any]) -> list[Any]:
        """``fn(i)`` for every row of the batch: None for a skipped row (empty, oversize, ...), and
        for a row where ``fn`` raises, the ``on_error`` policy's answer (raise, or a counted None)."""
        out: list[Any] = []
        for i in range(len(batch)):
            if batch.skip[i]:
                out.append(None)
                continue
            try:
                out.append(fn(i))
            except Exception as exc:
                out.append(self._swallow(exc, 1, batch))
        return out

    # -- protocol ---------------------------------------------------------------------------
    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any],
                 completion_ids: Sequence[Sequence[int]] | None = None, **kwargs: Any) -> list[float | None]:
        batch, preset = self._prepare(prompts, completions, completion_ids, kwargs)
        try:
            values = self.score_batch(batch)
        except Exception as exc:
            values = [self._swallow(exc, len(batch), batch)] * len(batch)
        return self._finish(batch, preset, values)

    def _prepare(self, prompts, completions, completion_ids, kwargs) -> tuple[Batch, dict[int, float | None]]:
        context = CallContext(**{k: kwargs.pop(k) for k in TRL_CONTEXT_KWARGS if k in kwargs})
        n = len(completions)
        if len(prompts) != n:
            raise RewardInputError(f"reward {self.name!r}: {len(prompts)} prompts but {n} completions")
        if completion_ids is not None and len(completion_ids) != n:
            raise RewardInputError(f"reward {self.name!r}: {len(completion_ids)} completion_ids rows "
                                   f"but {n} completions")
        columns: dict[str, list[Any]] = {}
        for key, values in kwargs.items():
            if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or len(values) != n:
                raise RewardInputError(
                    f"reward {self.name!r}: column {key!r} must be a list with one value per completion "
                    f"({n}); got {type(values).__name__}"
                    + (f" of length {len(values)}" if hasattr(values, "__len__") else ""))
            columns[key] = values if isinstance(values, list) else list(values)
        batch_counts: Counter[str] = Counter()
        extracted = _texts_of(completions)
        texts = extracted.texts
        preset: dict[int, float | None] = {}
        if extracted.plain and (self.max_chars is None or extracted.max_len <= self.max_chars):
            skip = [False] * n  # the common case, decided once per batch for every reward
        else:
            texts, skip = self._clean(completions, texts, batch_counts, preset)
        batch = Batch(prompts if isinstance(prompts, list) else list(prompts),
                      completions if isinstance(completions, list) else list(completions), texts,
                      None if completion_ids is None else list(completion_ids),
                      columns, context, skip, batch_counts, extracted.single_messages and texts is extracted.texts)
        return batch, preset

    def _clean(self, completions, texts, counts, preset) -> tuple[list[str], list[bool]]:
        out: list[str] = []
        skip: list[bool] = []
        for i, text in enumerate(texts):
            if isinstance(completions[i], bytes) and "\ufffd" in text:
                counts["decode_errors"] += 1
            if not text.isascii() and not _is_utf8_clean(text):
                # lone surrogates from a bad decode: keep every valid character, mark the rest
                text = text.encode("utf-8", errors="replace").decode("utf-8")
                counts["decode_errors"] += 1
            if self.max_chars is not None and len(text) > self.max_chars:
                counts["oversize"] += 1
                preset[i] = self.oversize_value
                skip.append(True)
                out.append("")
                continue
            empty = not text or text.isspace()
            if empty:
                counts["empty"] += 1
            if empty and self.empty_value is not None:
                preset[i] = self.empty_value
                skip.append(True)
            else:
                skip.append(False)
            out.append(text)
        return out, skip

    def _swallow(self, exc: Exception, rows: int, batch: Batch) -> None:
        if self.on_error == "raise":
            raise exc
        batch.counts["errors"] += rows
        return None

    def _finish(self, batch: Batch, preset: dict[int, float | None], values: Sequence[Any]) -> list[float | None]:
        if len(values) != len(batch):
            raise RewardInputError(f"reward {self.name!r} returned {len(values)} values for {len(batch)} completions")
        if not preset and _all_finite_numbers(values):
            out = list(values)  # the common case: every value a finite number
        else:
            out = self._check_values(batch, preset, values)
        self._report(batch)
        # a batch that failed as a whole (on_error="none") shared nothing or half: keep rows aligned
        details = {k: (v if len(v) == len(out) else [None] * len(out)) for k, v in batch.details.items()}
        self.last_call = CallRecord(list(out), details, dict(batch.metrics), batch.texts)
        return out

    def _check_values(self, batch: Batch, preset: dict[int, float | None], values: Sequence[Any]) -> list[float | None]:
        out: list[float | None] = []
        for i, v in enumerate(values):
            if i in preset:
                v = preset[i]
            if v is not None:
                v = float(v)
                if not math.isfinite(v):
                    # a NaN/inf would poison the group's normalisation: make it an error, not a reward
                    self._swallow(FloatingPointError(f"reward {self.name!r} produced {v} for row {i}"), 1, batch)
                    v = None
            if v is None:
                batch.counts["none"] += 1
            out.append(v)
        return out

    def _report(self, batch: Batch) -> None:
        self.counters.update(batch.counts)
        self.counters["calls"] += 1
        log_metric = batch.context.log_metric
        if log_metric is not None:
            for key in COUNTERS:
                log_metric(f"rewardkit/{self.name}/{key}", float(batch.counts.get(key, 0)))
        self.log_components(batch)

    def log_components(self, batch: Batch) -> None:
        """Hook for subclasses: log sub-scores of a finished call with :meth:`Batch.log_metric`
        (per-row data they kept in ``batch.extras`` or ``batch.details``)."""


class AsyncReward(Reward):
    """A reward whose scoring is a coroutine; TRL gathers async rewards concurrently."""

    async def ascore_batch(self, batch: Batch) -> list[float | None]:
        raise NotImplementedError

    async def __call__(self, prompts, completions, completion_ids=None, **kwargs):  # type: ignore[override]
        batch, preset = self._prepare(prompts, completions, completion_ids, kwargs)
        try:
            values = await self.ascore_batch(batch)
        except Exception as exc:
            values = [self._swallow(exc, len(batch), batch)] * len(batch)
        return self._finish(batch, preset, values)

    def score_batch(self, batch: Batch) -> list[float | None]:
        return asyncio.run(self.ascore_batch(batch))


class ProcessReward(Reward):
    """A reward that scores each step; a reducer turns the steps into TRL's scalar.

    Subclasses implement :meth:`step_scores` (one sample) or :meth:`step_scores_batch`. The step
    scores of the last call are shared as ``last_call.details["step_scores"]`` (also
    :attr:`last_step_scores`), in the order of the call's rows, for trainer hooks that place them on
    tokens. A subclass that overrides :meth:`score_batch` shares them itself with
    ``batch.share(STEP_SCORES, steps)``.
    """

    kind: ClassVar[str] = "process"

    def __init__(self, *, reducer: str | Reducer = "min", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reducer = reducer
        get_reducer(reducer)  # fail at construction, not at the first training step

    @property
    def last_step_scores(self) -> list[StepScores | None]:
        """The step scores of the last call, one entry per row (None: no steps for that row)."""
        return self.last_call.detail(STEP_SCORES)

    def step_scores(self, sample: Sample) -> StepScores | None:
        raise NotImplementedError(f"{type(self).__name__} must implement step_scores() or step_scores_batch()")

    def step_scores_batch(self, batch: Batch) -> list[StepScores | None]:
        return self.each_row(batch, lambda i: self.step_scores(batch.sample(i)))

    def score_batch(self, batch: Batch) -> list[float | None]:
        steps = self.step_scores_batch(batch)
        if len(steps) != len(batch):
            raise RewardInputError(f"reward {self.name!r} returned {len(steps)} step lists for {len(batch)} rows")
        batch.share(STEP_SCORES, steps)
        return [None if s is None else reduce_steps(s.scores, self.reducer) for s in steps]

    def score_steps(self, prompts: Sequence[Any], completions: Sequence[Any],
                    completion_ids: Sequence[Sequence[int]] | None = None, **kwargs: Any) -> list[StepScores | None]:
        """Per-step scores and character spans for every completion (same inputs as ``__call__``)."""
        self(prompts, completions, completion_ids, **kwargs)
        return self.last_step_scores


class FunctionReward(Reward):
    """Wrap a per-sample function ``fn(text, **row) -> float | None`` as a Reward."""

    def __init__(self, fn: Callable[..., float | None], *, kind: str = "outcome", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fn = fn
        if kind != "outcome":
            raise ValueError("FunctionReward wraps outcome rewards; subclass ProcessReward for steps")

    def score(self, sample: Sample) -> float | None:
        return self.fn(sample.text, **sample.row)
