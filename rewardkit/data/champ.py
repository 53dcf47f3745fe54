"""CHAMP first-wrong-step annotations as step-labelled records (a ProcessBench-style test set).

CHAMP (Mao et al., 2024, "CHAMP: A Competition-level Dataset for Fine-Grained Analyses of LLMs'
Mathematical Reasoning Capabilities"; MIT licence; PyPI ``champ-dataset``) has 270 competition
problems. For a subset, solutions written by GPT-3.5, GPT-4, GPT-4 Turbo and PaLM 2 Medium carry a
human annotation of the first wrong step as a character span ``[start_idx, end_idx)`` of the
solution text (``None`` when the solution has no mistake).

:func:`load_champ` splits every annotated solution into steps with
:func:`rewardkit.trajectory.split_steps` (blank lines by default, as ProcessBench) and maps the
annotated span onto a step: the first wrong step is the first step that ends after the span's
start (the step holding its first character), ``-1`` when the solution has no mistake.
"""

from __future__ import annotations

import importlib.util
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from rewardkit.trajectory import Splitter, Step, split_steps

CHAMP_INSTALL = "pip install champ-dataset"


def champ_file() -> Path:
    """The dataset file shipped in the ``champ-dataset`` wheel (``champ_dataset/dataset_files/v0.json``)."""
    spec = importlib.util.find_spec("champ_dataset")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the CHAMP data is missing: {CHAMP_INSTALL}")
    path = Path(list(spec.submodule_search_locations)[0]) / "dataset_files" / "v0.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {CHAMP_INSTALL} --force-reinstall")
    return path


@lru_cache(maxsize=1)
def _problems() -> dict[str, Any]:
    return json.loads(champ_file().read_text(encoding="utf-8"))["problems"]


def first_wrong_step(steps: list[Step], start_idx: int | None) -> int:
    """Index of the step holding character ``start_idx`` (or the first step after it, when it falls in
    the whitespace between steps); ``-1`` for ``None`` (no mistake)."""
    if start_idx is None:
        return -1
    for k, step in enumerate(steps):
        if step.end > start_idx:
            return k
    raise ValueError(f"annotated span starts at {start_idx}, after the last step (ends at "
                     f"{steps[-1].end if steps else 0})")


def load_champ(split: Splitter = "blank_line", *, generators: list[str] | None = None) -> list[dict[str, Any]]:
    """Every CHAMP solution with a first-wrong-step annotation, as a step-labelled record.

    Record keys: ``id`` (``"<problem>|<generator>|<setting>"``), ``prompt`` (the problem),
    ``completions`` (the steps), ``spans`` (their character spans in ``text``), ``text`` (the whole
    solution), ``first_wrong`` (step index, or -1), ``labels`` (1.0 before the first wrong step, 0.0
    from it on: the usual convention for steps built on a wrong one; CHAMP itself only annotates up
    to the first wrong step) and ``meta`` (problem id, generator, prompting setting, the problem's
    answer, the annotated span and its text). ``generators`` keeps only those models' solutions.
    """
    records = []
    for pid, prob in _problems().items():
        for key, ann in sorted((prob.get("fws_annotations") or {}).items()):
            generator, _, setting = key.partition("|")
            if generators is not None and generator not in generators:
                continue
            text = ann["text"]
            steps = split_steps(text, split)
            if not steps:
                raise ValueError(f"CHAMP {pid} {key}: the solution has no steps")
            start, end = ann.get("start_idx"), ann.get("end_idx")
            if start is not None and not (0 <= start < end <= len(text)):
                raise ValueError(f"CHAMP {pid} {key}: span {(start, end)} outside a text of {len(text)} characters")
            fw = first_wrong_step(steps, start)
            labels = [1.0 if fw < 0 or k < fw else 0.0 for k in range(len(steps))]
            records.append({
                "id": f"{pid}|{key}", "prompt": prob["_text"], "completions": [s.text for s in steps],
                "spans": [s.span for s in steps], "text": text, "first_wrong": fw, "labels": labels,
                "meta": {"problem": pid, "generator": generator, "setting": setting, "answer": prob.get("_answer"),
                         "span": None if start is None else (start, end),
                         "wrong_text": None if start is None else text[start:end]},
            })
    return records
