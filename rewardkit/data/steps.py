"""Readers for step-labelled (PRM) data, all normalised to TRL's stepwise format.

Every reader returns records ``{"prompt": str, "completions": [step, ...], "labels": [float, ...]}``
with labels in ``[0, 1]`` (1 = good step; soft Monte-Carlo labels stay fractional), plus any
metadata under ``"meta"``. Formats:

``math_shepherd``  ``{"input": "<question> Step 1: ... ки\\nStep 2: ... ки", "label": "... +\\n... -"}``:
                   the step tag ``ки`` in ``input`` is replaced by ``+``/``-`` in ``label``.
``prm800k``        ``{"question": {"problem": ...}, "label": {"steps": [{"completions": [{"text", "rating"}],
                   "chosen_completion": i | None, "human_completion": {...} | None}, ...]}}`` with ratings
                   -1/0/1; ``neutral`` picks the label of a 0 rating (default 1.0, or None to skip the step).
``trl``            ``{"prompt": str, "completions": [str], "labels": [bool | float]}`` (TRL's stepwise format).

:func:`load_steps` reads a file (jsonl/json/parquet/datasets dir) and detects the format per record.
:func:`load_toy_steps` returns the bundled toy set (arithmetic chains with injected errors).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rewardkit.data import DATA_DIR, load_arithmetic, load_records, read_jsonl

MATH_SHEPHERD_TAG = "ки"
FORMATS = ("math_shepherd", "prm800k", "trl")
_FIRST_STEP = re.compile(r"(?i)\bstep\s*1\s*[:.]")


class StepFormatError(ValueError):
    """A record does not fit the step-labelled format it claims (or any known one)."""


def _label_value(x: Any) -> float:
    if isinstance(x, bool):
        return 1.0 if x else 0.0
    if isinstance(x, (int, float)):
        v = float(x)
        if not 0.0 <= v <= 1.0:
            raise StepFormatError(f"step label {x!r} is outside [0, 1]")
        return v
    if isinstance(x, str) and x.strip() in ("+", "-"):
        return 1.0 if x.strip() == "+" else 0.0
    raise StepFormatError(f"cannot read step label {x!r}")


def read_math_shepherd(record: dict[str, Any], *, tag: str = MATH_SHEPHERD_TAG,
                       good: str = "+", bad: str = "-") -> dict[str, Any]:
    """One Math-Shepherd record -> stepwise record.

    The question is the text before "Step 1:" (the whole first segment when there is none).
    """
    text, label = record.get("input"), record.get("label")
    if not isinstance(text, str) or not isinstance(label, str):
        raise StepFormatError("a Math-Shepherd record needs string fields 'input' and 'label'")
    pieces = text.split(tag)
    if len(pieces) < 2:
        raise StepFormatError(f"Math-Shepherd input has no step tag {tag!r}")
    labels: list[float] = []
    pos = 0
    for k, piece in enumerate(pieces[:-1]):
        if not label.startswith(piece, pos):
            raise StepFormatError(f"Math-Shepherd 'label' does not match 'input' before step tag {k + 1}")
        pos += len(piece)
        mark = label[pos:pos + 1]
        if mark not in (good, bad):
            raise StepFormatError(f"Math-Shepherd label at step {k + 1} is {mark!r}, expected {good!r} or {bad!r}")
        labels.append(1.0 if mark == good else 0.0)
        pos += 1
    first = pieces[0]
    m = _FIRST_STEP.search(first)
    prompt = first[:m.start()].strip() if m else ""
    steps = [first[m.start():] if m else first] + pieces[1:-1]
    steps = [s.strip() for s in steps]
    if not prompt and not m:
        prompt, steps = steps[0], steps[1:]
        labels = labels[1:]
    out = {"prompt": prompt, "completions": steps, "labels": labels}
    if "task" in record:
        out["meta"] = {"task": record["task"]}
    return out


def read_prm800k(record: dict[str, Any], *, neutral: float | None = 1.0) -> dict[str, Any]:
    """One PRM800K record -> stepwise record (the chosen or human completion of each step).

    Ratings map 1 -> 1.0, -1 -> 0.0, 0 -> ``neutral`` (None drops the step). Reading stops after
    the first step with no rated completion (the labeller stopped there).
    """
    q = record.get("question")
    lab = record.get("label")
    if not isinstance(q, dict) or not isinstance(lab, dict) or not isinstance(lab.get("steps"), list):
        raise StepFormatError("a PRM800K record needs 'question' (with 'problem') and 'label' (with 'steps')")
    steps, labels = [], []
    for k, step in enumerate(lab["steps"]):
        chosen = None
        if step.get("human_completion"):
            chosen = step["human_completion"]
        elif step.get("chosen_completion") is not None:
            chosen = step["completions"][step["chosen_completion"]]
        elif step.get("completions"):
            chosen = step["completions"][0]
        if chosen is None or chosen.get("rating") is None:
            break
        rating = chosen["rating"]
        if rating not in (-1, 0, 1):
            raise StepFormatError(f"PRM800K step {k} has rating {rating!r}; expected -1, 0 or 1")
        value = {1: 1.0, -1: 0.0}.get(rating, neutral)
        if value is None:
            continue
        steps.append(str(chosen.get("text", "")).strip())
        labels.append(float(value))
    meta = {k: q[k] for k in ("ground_truth_answer", "ground_truth_solution") if k in q}
    out = {"prompt": str(q.get("problem", "")), "completions": steps, "labels": labels}
    if meta:
        out["meta"] = meta
    return out


def read_trl_stepwise(record: dict[str, Any]) -> dict[str, Any]:
    """One TRL stepwise record (``prompt``, ``completions``, ``labels``) with labels as floats."""
    prompt, steps, labels = record.get("prompt"), record.get("completions"), record.get("labels")
    if isinstance(prompt, list):  # conversational prompt: the question is the last user message
        from rewardkit.prm.reward import prompt_text

        prompt = prompt_text(prompt)
    if not isinstance(prompt, str) or not isinstance(steps, list) or not isinstance(labels, list):
        raise StepFormatError("a stepwise record needs 'prompt' (str), 'completions' (list) and 'labels' (list)")
    if len(steps) != len(labels):
        raise StepFormatError(f"{len(steps)} completions but {len(labels)} labels")
    out = {"prompt": prompt, "completions": [str(s) for s in steps], "labels": [_label_value(x) for x in labels]}
    for key in ("meta", "split", "id"):
        if key in record:
            out[key] = record[key]
    return out


def detect_format(record: dict[str, Any]) -> str:
    if "input" in record and "label" in record and isinstance(record.get("label"), str):
        return "math_shepherd"
    if isinstance(record.get("question"), dict) and isinstance(record.get("label"), dict):
        return "prm800k"
    if "completions" in record and "labels" in record:
        return "trl"
    raise StepFormatError(f"unknown step-labelled format with keys {sorted(record)}; expected one of {FORMATS}")


READERS = {"math_shepherd": read_math_shepherd, "prm800k": read_prm800k, "trl": read_trl_stepwise}


def read_steps(records: Iterable[dict[str, Any]], format: str = "auto", **kwargs: Any) -> list[dict[str, Any]]:
    """Normalise records of ``format`` (or detected per record) to stepwise records."""
    out = []
    for i, rec in enumerate(records):
        if format != "auto" and format not in READERS:
            raise ValueError(f"unknown format {format!r}; choose 'auto' or one of {FORMATS}")
        try:
            fmt = detect_format(rec) if format == "auto" else format
            out.append(READERS[fmt](rec, **kwargs) if fmt != "trl" else READERS[fmt](rec))
        except StepFormatError as exc:
            raise StepFormatError(f"record {i}: {exc}") from None
    return out


def load_steps(path: str | Path, format: str = "auto", **kwargs: Any) -> list[dict[str, Any]]:
    """Read a step-labelled file and normalise it (see the module docstring)."""
    return read_steps(load_records(path), format, **kwargs)


# -- bundled toy set ------------------------------------------------------------------------------

TOY_STEPS_FILE = DATA_DIR / "toy_steps.jsonl"


def load_toy_steps(split: str | None = None) -> list[dict[str, Any]]:
    """The bundled toy step-labelled set (stepwise format): ``split`` is "train", "test" or None (all)."""
    rows = read_steps(read_jsonl(TOY_STEPS_FILE), "trl")
    return [r for r in rows if split is None or r.get("split") == split]


def _wrong(value: int, rng: random.Random) -> int:
    delta = rng.choice([-3, -2, -1, 1, 2, 3, 10])
    out = value + delta
    return out if out >= 0 and out != value else value + 1


def make_toy_steps(seed: int = 0, n_test: int = 128) -> list[dict[str, Any]]:
    """Build the toy set from the bundled arithmetic problems (how ``toy_steps.jsonl`` was made).

    Each problem becomes a chain of arithmetic steps "a + b = c." with a final answer step. Half
    of the chains get one wrong result at a random step; that step and every later step are
    labelled 0 (a later step built on a wrong value is not a correct step of a solution), the
    earlier ones 1.
    """
    rng = random.Random(seed)
    rows = []
    for r in load_arithmetic():
        nums = [int(x) for x in re.findall(r"\d+", r["question"])]
        ops = {"add": "+", "add2": "+", "sub": "-", "mul": "*"}[r["kind"]]
        if len(nums) < 2:
            continue
        acc = nums[0]
        steps = []
        for b in nums[1:]:
            res = {"+": acc + b, "-": acc - b, "*": acc * b}[ops]
            steps.append([acc, ops, b, res])
            acc = res
        corrupt = rng.random() < 0.5
        bad_at = rng.randrange(len(steps)) if corrupt else None
        texts, labels = [], []
        cur = steps[0][0]
        ok = True
        for k, (_, op, b, _) in enumerate(steps):
            true = {"+": cur + b, "-": cur - b, "*": cur * b}[op]
            shown = _wrong(true, rng) if k == bad_at else true
            if k == bad_at:
                ok = False
            texts.append(f"{cur} {op} {b} = {shown}.")
            labels.append(1.0 if ok else 0.0)
            cur = shown
        texts.append(f"The answer is \\boxed{{{cur}}}.")
        labels.append(1.0 if ok else 0.0)
        rows.append({"id": r["id"], "prompt": r["question"], "completions": texts, "labels": labels})
    rng.shuffle(rows)
    for i, row in enumerate(rows):
        row["split"] = "test" if i < n_test else "train"
    return rows
