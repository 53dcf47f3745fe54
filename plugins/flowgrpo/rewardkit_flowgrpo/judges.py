"""The judges of a Flow-GRPO trajectory's final answer (AgentFlow paper Eq. 4, App. E.3).

A judge is ``judge(question, answer, gold) -> float`` (1.0 correct, 0.0 wrong) and raises when it
cannot decide; :class:`~rewardkit_flowgrpo.rewards.FlowOutcomeReward` turns a raise into a counted 0.

* :func:`exact_judge` — normalised string match (case, whitespace, punctuation, thousands separators,
  numerically equal numbers). A cheaper substitute for the LLM judge: a recorded deviation.
* :class:`MathJudge` — math-verify equivalence (rewardkit's ``math.accuracy``).
* :class:`LLMJudge` — an LLM judge through a :class:`~rewardkit_flowgrpo.modules.Module`, AgentFlow's
  prompt shape (question, extracted answer, ground truth); its verdict is read as free text
  (:func:`parse_text_verdict`) or as the released structured output (:func:`parse_json_verdict`).

:func:`make_judge` builds one from a name (``"exact" | "math" | "llm"``) or takes a callable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any


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
