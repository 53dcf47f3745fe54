"""Readers for common RL / PRM data formats and small bundled sample sets."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = [
    "DATA_DIR",
    "INSTRUCTION",
    "load_arithmetic",
    "load_records",
    "read_jsonl",
    "to_prompt",
]

DATA_DIR = Path(__file__).resolve().parent
INSTRUCTION = "Solve the problem. Put the final answer in \\boxed{}."


@lru_cache(maxsize=1)
def _arithmetic() -> tuple[dict[str, Any], ...]:
    return tuple(read_jsonl(DATA_DIR / "arithmetic.jsonl"))


def load_arithmetic() -> list[dict[str, Any]]:
    """The bundled 512 arithmetic word problems: id, kind, question, steps, reasoning, solution."""
    return [dict(r) for r in _arithmetic()]


def to_prompt(row: dict[str, Any], *, conversational: bool = False) -> Any:
    if conversational:
        return [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": row["question"]}]
    return f"{row['question']}\nAnswer:"


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSONL file; a malformed line is an error naming the file and line number."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
    return rows


def load_records(path: str | Path) -> list[dict[str, Any]]:
    """Rows from a ``.jsonl``/``.json`` file, or a ``datasets`` directory saved with ``save_to_disk``."""
    p = Path(path)
    if p.is_dir():
        from datasets import load_from_disk

        return list(load_from_disk(str(p)))
    if p.suffix == ".json":
        data = json.loads(p.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "data" in data:
            data = data["data"]
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON list of records")
        return data
    if p.suffix in (".parquet", ".csv"):
        from datasets import load_dataset

        return list(load_dataset(p.suffix[1:], data_files=str(p), split="train"))
    return read_jsonl(p)
