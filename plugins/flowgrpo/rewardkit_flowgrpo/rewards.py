"""``flowgrpo.outcome``: the final-answer judge of a Flow-GRPO trajectory, broadcast to its turns.

AgentFlow's reward (paper Eq. 4, App. E.3) is a binary GPT-4o judgement of the generator's final
answer against the ground truth; every planner turn of the trajectory receives it. Judges here:

* ``"exact"`` — normalised string match (case, whitespace, punctuation, thousands separators,
  numerically equal numbers). A cheaper substitute for the LLM judge: record it as a deviation.
* ``"math"`` — math-verify equivalence (rewardkit's ``math.accuracy``).
* ``"llm"`` — an LLM judge through a :class:`~rewardkit_flowgrpo.modules.Module` (OpenAI-compatible
  endpoint, transformers model or Python), AgentFlow's prompt shape: question, extracted answer,
  ground truth; it must end with ``true_false: True|False``.
* any callable ``judge(question, answer, gold) -> bool | float``.

A judge that raises or answers unparseably gives 0.0 and is counted (``rewardkit/<name>/judge_errors``),
as AgentFlow fills missing rewards with 0. A trajectory that ended on a tool/module error or a timeout
gets 0.0 and is counted (``tool_errors``, ``timeouts``). The judge runs once per trajectory; its value
is returned on every row (turn slot) of that trajectory.

Columns read: ``flowgrpo_answer`` and the gold column (``answer`` by default); optional
``flowgrpo_traj_id``, ``flowgrpo_error``, ``flowgrpo_timed_out``, ``flowgrpo_is_pad``,
``flowgrpo_num_turns`` (all written by :class:`~rewardkit_flowgrpo.rollout.FlowRollout`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from rewardkit import Batch, Reward
from rewardkit.reward import RewardInputError


def normalise_answer(text: Any) -> str:
    s = str(text).strip().lower()
    s = re.sub(r"^(the answer is|answer:)\s*", "", s)
    s = s.replace(",", "") if re.fullmatch(r"[-+]?[\d,]*\.?\d+", s.replace(" ", "")) else s
    s = re.sub(r"[\s]+", " ", s).strip(" .!?;:\"'`$")
    try:
        x = float(s)
    except ValueError:
        return s
    return repr(int(x)) if x.is_integer() else repr(x)


def exact_judge(question: str, answer: str, gold: Any) -> float:
    return float(normalise_answer(answer) == normalise_answer(gold))


JUDGE_TEMPLATE = (
    "Decide whether the response answers the question correctly, comparing it with the ground truth. "
    "Normalise before comparing: mathematically equivalent expressions match; numbers and text ignore "
    "formatting, case and units; for multiple choice, map the option's content or ordinal to its letter.\n"
    "Question: {question}\nResponse: {answer}\nGround truth: {gold}\n"
    "Give a short analysis, then end with 'true_false: True' or 'true_false: False'.")


JSON_JUDGE_TEMPLATE = (
    "Decide whether the model response is equivalent to the ground truth. Normalise before comparing: "
    "mathematically identical expressions match; numbers and text ignore formatting, case and currency or "
    "units; for multiple choice, match the option's content or number to its letter.\n"
    "Question: {question}\nModel Response: {answer}\nGround Truth: {gold}\n"
    'Reply with only a JSON object: {{"analysis": "<brief analysis>", "true_false": true or false}}.')

_TRUE_STRINGS = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE_STRINGS = frozenset({"0", "off", "f", "false", "n", "no"})


class JudgeError(RuntimeError):
    """The judge's output could not be read as a verdict."""


def parse_text_verdict(output: str) -> float:
    """The last ``true_false: True|False`` in free text (default mode)."""
    verdicts = re.findall(r"true_false\W*(true|false)", output, re.I)
    if not verdicts:
        raise JudgeError(f"no 'true_false: True|False' verdict in judge output {output[:120]!r}")
    return float(verdicts[-1].lower() == "true")


def parse_json_verdict(output: str) -> float:
    """The released judge's verdict (official mode): AgentFlow asks GPT-4o for the structured output
    ``{analysis: str, true_false: bool}``; the OpenAI SDK validates the message with pydantic, whose lax
    bool accepts JSON true/false, 0/1, 0.0/1.0 and the strings 0/1/off/on/f/t/false/true/n/y/no/yes in any
    case. Anything else fails validation; in the released pipeline that rollout then gets the fill value 0."""
    try:
        data = json.loads(output)
    except (TypeError, ValueError) as exc:
        raise JudgeError(f"judge output is not a JSON object: {output[:120]!r}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("analysis"), str) or "true_false" not in data:
        raise JudgeError(f"judge output lacks a string 'analysis' and a 'true_false': {output[:120]!r}")
    value = data["true_false"]
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return float(value == 1)
    if isinstance(value, str) and value.lower() in _TRUE_STRINGS | _FALSE_STRINGS:
        return float(value.lower() in _TRUE_STRINGS)
    raise JudgeError(f"judge verdict {value!r} is not a boolean")


VERDICTS = {"text": (JUDGE_TEMPLATE, parse_text_verdict), "json": (JSON_JUDGE_TEMPLATE, parse_json_verdict)}


class LLMJudge:
    """An LLM judge through a Module; raises :class:`JudgeError` on an unparseable verdict.

    ``verdict="text"`` (default) reads the last ``true_false: True|False`` of free text; ``"json"`` asks
    for AgentFlow's structured output and reads it as the released code does (:func:`parse_json_verdict`).
    """

    def __init__(self, module: Any, template: str | None = None, verdict: str = "text") -> None:
        from rewardkit_flowgrpo.modules import as_module

        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {sorted(VERDICTS)}, got {verdict!r}")
        self.module = as_module(module)
        self.template = template or VERDICTS[verdict][0]
        self.parse = VERDICTS[verdict][1]

    def __call__(self, question: str, answer: str, gold: Any) -> float:
        out = self.module([{"role": "user", "content": self.template.format(question=question, answer=answer,
                                                                            gold=gold)}])
        return self.parse(out)


class MathJudge:
    def __init__(self) -> None:
        self._lazy_acc = None

    def __getstate__(self) -> dict[str, Any]:
        return {"_lazy_acc": None}

    def __call__(self, question: str, answer: str, gold: Any) -> float:
        if self._lazy_acc is None:
            from rewardkit import get_reward

            self._lazy_acc = get_reward("math.accuracy", gold_column="gold", on_error="raise")
        value = self._lazy_acc([question], [str(answer)], gold=[str(gold)])[0]
        if value is None:
            raise JudgeError(f"math-verify could not read the gold answer {gold!r}")
        return float(value)


def make_judge(judge: str | Callable[..., Any], judge_model: Any = None,
               verdict: str = "text") -> Callable[[str, str, Any], float]:
    if callable(judge):
        return judge
    if judge == "exact":
        return exact_judge
    if judge == "math":
        return MathJudge()
    if judge == "llm":
        if judge_model is None:
            raise ValueError("judge='llm' needs judge_model: a Module, an OpenAI-compatible "
                             "{'base_url':..., 'model':...} dict, a model path or a callable")
        if isinstance(judge_model, dict):
            from rewardkit_flowgrpo.modules import OpenAIModule

            judge_model = OpenAIModule(**judge_model)
        return LLMJudge(judge_model, verdict=verdict)
    raise ValueError(f"judge must be 'exact', 'math', 'llm' or a callable, got {judge!r}")


class FlowOutcome(Reward):
    """Binary trajectory outcome, judged once per trajectory and broadcast to its turn rows.

    Args:
        judge: ``"exact"`` (default), ``"math"``, ``"llm"`` or ``judge(question, answer, gold)``.
        judge_model: the LLM judge's module (``judge="llm"``).
        gold_column: the dataset column holding the ground truth.
        answer_column: the column holding the generator's final answer (the rollout writes it).
        verdict: how the LLM judge's reply is read, ``"text"`` or ``"json"`` (AgentFlow's structured output).
    """

    kind = "multi_turn"

    def __init__(self, *, judge: str | Callable[..., Any] = "exact", judge_model: Any = None,
                 gold_column: str = "answer", answer_column: str = "flowgrpo_answer", verdict: str = "text",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.judge_name = judge if isinstance(judge, str) else getattr(judge, "__name__", type(judge).__name__)
        self.judge = make_judge(judge, judge_model, verdict)
        self.gold_column = gold_column
        self.answer_column = answer_column
        self.last_values: list[float | None] = []
        self.last_columns: dict[str, list[Any]] = {}

    def judge_one(self, question: str, answer: str, gold: Any) -> tuple[float, bool]:
        """(reward, judge_failed): a failed judge gives 0.0."""
        try:
            value = float(self.judge(question, answer, gold))
        except Exception:
            return 0.0, True
        if value != value:  # NaN
            return 0.0, True
        return value, False

    def _prepare(self, prompts, completions, completion_ids, kwargs):
        batch, preset = super()._prepare(prompts, completions, completion_ids, kwargs)
        # padding rows carry an empty completion by construction: they are not "empty" planner outputs
        pads = batch.columns.get("flowgrpo_is_pad")
        if pads is not None:
            for i, pad in enumerate(pads):
                if pad and not batch.texts[i].strip():
                    batch.counts["empty"] -= 1
        return batch, preset

    def score_batch(self, batch: Batch) -> list[float | None]:
        cols = batch.columns
        for need in (self.answer_column, self.gold_column):
            if need not in cols:
                raise RewardInputError(
                    f"reward {self.name!r} needs column {need!r} (columns passed: {sorted(cols) or 'none'}); "
                    "use it with rewardkit_flowgrpo.FlowRollout, or pass the columns yourself")
        n = len(batch)
        traj_ids = cols.get("flowgrpo_traj_id", list(range(n)))
        errors = cols.get("flowgrpo_error", [""] * n)
        timeouts = cols.get("flowgrpo_timed_out", [False] * n)
        cache: dict[Any, float] = {}
        stats = {"trajectories": 0, "judge_errors": 0, "tool_errors": 0, "timeouts": 0, "success": 0.0}
        values: list[float | None] = []
        for i in range(n):
            t = traj_ids[i]
            if t not in cache:
                stats["trajectories"] += 1
                if errors[i]:
                    cache[t] = 0.0
                    stats["tool_errors"] += 1
                    stats["timeouts"] += int(bool(timeouts[i]))
                else:
                    question = batch.prompts[i] if isinstance(batch.prompts[i], str) else str(batch.prompts[i])
                    value, failed = self.judge_one(question, cols[self.answer_column][i], cols[self.gold_column][i])
                    stats["judge_errors"] += int(failed)
                    cache[t] = value
                stats["success"] += cache[t]
            values.append(cache[t])
        self.last_values = values
        self.last_columns = cols
        self._last_stats = stats
        batch.counts.update({k: int(v) for k, v in stats.items() if k in ("judge_errors", "tool_errors", "timeouts")})
        return values

    def log_components(self, batch: Batch) -> None:
        log = batch.context.log_metric
        stats = getattr(self, "_last_stats", None)
        if log is None or not stats:
            return
        n = max(stats["trajectories"], 1)
        # "timeouts" is one of the base class's counters: it is logged from batch.counts already
        for key in ("judge_errors", "tool_errors"):
            log(f"rewardkit/{self.name}/{key}", float(stats[key]))
        log(f"rewardkit/{self.name}/success", stats["success"] / n)
        cols = batch.columns
        if "flowgrpo_num_turns" in cols and "flowgrpo_traj_id" in cols:
            turns = {t: k for t, k in zip(cols["flowgrpo_traj_id"], cols["flowgrpo_num_turns"])}
            log(f"rewardkit/{self.name}/turns_mean", sum(turns.values()) / max(len(turns), 1))
