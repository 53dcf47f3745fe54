"""Expert-judge backends for the quality score and the template-guided trajectory reward.

ReasonFlux-PRM uses an expert LLM (GPT-4o in the paper) twice: to grade each thinking step
(``r_t^qual``) and to write a reasoning template for the trajectory reward. Here that LLM is any
:class:`rewardkit.TextModel` (a spec string such as ``"openai:http://host/v1#gpt-4o"`` works too);
the ReasonFlux names are the core classes with 64 answer tokens by default:

* :class:`TransformersBackend` — a local ``transformers`` causal LM (chat template applied);
* :class:`OpenAIBackend` — any OpenAI-compatible ``/chat/completions`` endpoint (OpenAI, vLLM,
  SGLang, llama.cpp, or :mod:`rewardkit_reasonflux.server`), key from ``$OPENAI_API_KEY``;
* :class:`CallableBackend` — a Python function, for rule-based or custom judges.

:class:`CachedGenerator` caches every generation by a content hash of (backend, prompt, decoding
parameters), in memory and optionally in a SQLite file, and deduplicates a batch's prompts.
:class:`Judge` renders the prompt template, asks the backend, and parses the answer strictly
into [0, 1]; an answer that does not parse is ``None`` (counted), never 0.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rewardkit import (
    CallableTextModel,
    HFTextModel,
    OpenAITextModel,
    TextModel,
    TextModelError,
    TextModelTimeout,
    text_model,
)

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
FIELD = re.compile(r"\{\{(\w+)\}\}")

Prompt = str | list[dict[str, Any]]


# -- templates ----------------------------------------------------------------------------------

def load_template(template: str | os.PathLike[str]) -> str:
    """A prompt template: a bundled name (``quality``, ``template_writer``, ``solve_with_template``),
    a file path, or the template text itself (anything containing ``{{field}}``)."""
    t = str(template)
    bundled = TEMPLATE_DIR / f"{t}.txt"
    if "{{" not in t and bundled.exists():
        return bundled.read_text(encoding="utf-8")
    if "{{" not in t and os.path.exists(t):
        return Path(t).read_text(encoding="utf-8")
    if "{{" in t:
        return t
    raise FileNotFoundError(f"judge template {t!r} is neither a bundled template "
                            f"({', '.join(sorted(p.stem for p in TEMPLATE_DIR.glob('*.txt')))}), a file, "
                            "nor template text with {{fields}}")


def template_fields(template: str) -> set[str]:
    return set(FIELD.findall(template))


def render(template: str, /, **fields: str) -> str:
    """Fill ``{{name}}`` placeholders in one pass (values are never re-scanned, so LaTeX braces and
    ``{{`` inside a question are safe)."""
    missing = template_fields(template) - set(fields)
    if missing:
        raise KeyError(f"template needs fields {sorted(missing)}; given {sorted(fields)}")
    return FIELD.sub(lambda m: str(fields[m.group(1)]), template)


# -- answer parsing -----------------------------------------------------------------------------

_NUM = r"([-+]?\d+(?:\.\d+)?)"
SCORE_RE = re.compile(r"(?i)\b(?:score|rating)\b\s*(?:is|of|:|=)?\s*[*_]*\s*" + _NUM + r"\s*(?:/\s*" + _NUM + r")?")
BARE_RE = re.compile(r"^\s*[*_]*\s*" + _NUM + r"\s*(?:/\s*" + _NUM + r")?\s*[*_]*\s*\.?\s*$")


def parse_score(text: str | None, scale: float = 10.0) -> float | None:
    """Parse a judge's answer into [0, 1], strictly.

    Accepted: ``"Score: 7"`` (the last such phrase wins), ``"Score: 7/10"``, ``"rating = 0.5/1"``, or
    an answer that is only a number (``"7"``, ``"7/10"``). A bare number is divided by ``scale``, a
    fraction by its denominator. Anything else, or a value outside [0, 1] after scaling, is ``None``.
    """
    if text is None:
        return None
    matches = list(SCORE_RE.finditer(text))
    m = matches[-1] if matches else BARE_RE.match(text)
    if m is None:
        return None
    value = float(m.group(1))
    denom = float(m.group(2)) if m.group(2) is not None else float(scale)
    if denom <= 0:
        return None
    v = value / denom
    if not 0.0 <= v <= 1.0:
        return None
    return v


# -- backends: the core rewardkit text models under ReasonFlux's names ---------------------------

JudgeError = TextModelError
JudgeTimeoutError = TextModelTimeout


class JudgeBackend(TextModel):
    """A :class:`rewardkit.TextModel` whose ``complete(prompts, ...)`` is the batch
    :meth:`~rewardkit.TextModel.generate` (ReasonFlux's name for it; 64 answer tokens by default)."""

    def complete(self, prompts: Sequence[Prompt], **options: Any) -> list[list[str]]:  # type: ignore[override]
        return self.generate(prompts, **options)


class CallableBackend(JudgeBackend, CallableTextModel):
    """Wrap ``fn(prompt, *, n, max_tokens, temperature, choices, seed) -> str | list[str]``."""

    def __init__(self, fn: Callable[..., str | list[str]], name: str | None = None) -> None:
        super().__init__(fn, name, max_tokens=64)


class TransformersBackend(JudgeBackend, HFTextModel):
    """A local causal LM (see :class:`rewardkit.HFTextModel`): greedy at temperature 0, choices by
    log-likelihood."""

    def __init__(self, model: str | os.PathLike[str], *, device: str | None = None, dtype: str | None = None,
                 batch_size: int = 8, system: str | None = None, max_prompt_tokens: int | None = None) -> None:
        super().__init__(model, device=device, dtype=dtype, batch_size=batch_size, system=system,
                         max_prompt_tokens=max_prompt_tokens, max_tokens=64)


class OpenAIBackend(JudgeBackend, OpenAITextModel):
    """An OpenAI-compatible endpoint (see :class:`rewardkit.OpenAITextModel`); the key defaults to
    ``$OPENAI_API_KEY``."""

    def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY", **kwargs: Any) -> None:
        super().__init__(base_url, model, api_key_env=api_key_env, **{"max_tokens": 64, **kwargs})


def make_backend(spec: Any) -> TextModel:
    """A judge from a text model, a callable, a spec string or a dict ``{"type": "transformers"|"openai",
    ...}`` (:func:`rewardkit.text_model`), with 64 answer tokens and the key in ``$OPENAI_API_KEY`` by default."""
    if callable(spec) and not isinstance(spec, TextModel):
        return CallableBackend(spec)
    if isinstance(spec, dict):
        defaults = {"api_key_env": "OPENAI_API_KEY"} if spec.get("type") in ("openai", "http") else {}
        return text_model({"max_tokens": 64, **defaults, **spec})
    return text_model(spec, max_tokens=64)


# -- cache --------------------------------------------------------------------------------------

class CachedGenerator:
    """Deduplicated, content-hash-cached generation on top of a backend.

    The key is SHA-256 of (backend identity, prompt, max_tokens, temperature, n, choices, seed). Hits
    come from memory, then from the optional SQLite file ``cache_path`` (shared across runs and
    processes). Failures are never cached.
    """

    def __init__(self, backend: Any, *, cache_path: str | os.PathLike[str] | None = None) -> None:
        self.backend = make_backend(backend)
        self.cache_path = None if cache_path is None else str(cache_path)
        self._lazy_mem: dict[str, list[str]] | None = None
        self._lazy_db: sqlite3.Connection | None = None
        self._lazy_lock: threading.Lock | None = None
        self.stats = {"requests": 0, "hits": 0, "generated": 0}

    def __getstate__(self) -> dict[str, Any]:
        return {k: (None if k.startswith("_lazy_") else v) for k, v in self.__dict__.items()}

    def key(self, prompt: Prompt, **params: Any) -> str:
        payload = json.dumps({"backend": self.backend.identity(), "prompt": prompt, **params},
                             sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def _state(self) -> tuple[dict[str, list[str]], threading.Lock]:
        if self._lazy_lock is None:
            self._lazy_lock = threading.Lock()
        if self._lazy_mem is None:
            self._lazy_mem = {}
        return self._lazy_mem, self._lazy_lock

    def _db(self) -> sqlite3.Connection | None:
        if self.cache_path is None:
            return None
        if self._lazy_db is None:
            Path(self.cache_path).parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.cache_path, check_same_thread=False, timeout=30)
            db.execute("CREATE TABLE IF NOT EXISTS generations (key TEXT PRIMARY KEY, answers TEXT NOT NULL)")
            db.commit()
            self._lazy_db = db
        return self._lazy_db

    def generate(self, prompts: Sequence[Prompt], *, max_tokens: int = 64, temperature: float = 0.0, n: int = 1,
                 choices: Sequence[str] | None = None, seed: int | None = None) -> list[list[str]]:
        params = {"max_tokens": max_tokens, "temperature": temperature, "n": n,
                  "choices": None if choices is None else list(choices), "seed": seed}
        mem, lock = self._state()
        keys = [self.key(p, **params) for p in prompts]
        self.stats["requests"] += len(keys)
        found: dict[str, list[str]] = {}
        db = self._db()
        with lock:
            for k in keys:
                if k in mem:
                    found[k] = mem[k]
            todo_keys = [k for k in dict.fromkeys(keys) if k not in found]
            if db is not None and todo_keys:
                for k in todo_keys:
                    row = db.execute("SELECT answers FROM generations WHERE key = ?", (k,)).fetchone()
                    if row is not None:
                        found[k] = mem[k] = json.loads(row[0])
        todo: dict[str, Prompt] = {}
        for k, p in zip(keys, prompts):
            if k not in found and k not in todo:
                todo[k] = p
        self.stats["hits"] += len(keys) - len(todo)
        if todo:
            answers = self.backend.generate(list(todo.values()), max_tokens=max_tokens, temperature=temperature,
                                            n=n, choices=choices, seed=seed)
            if len(answers) != len(todo):
                raise JudgeError(f"backend returned {len(answers)} answer lists for {len(todo)} prompts")
            self.stats["generated"] += len(todo)
            with lock:
                for k, a in zip(todo, answers):
                    found[k] = mem[k] = list(a)
                if db is not None:
                    db.executemany("INSERT OR REPLACE INTO generations (key, answers) VALUES (?, ?)",
                                   [(k, json.dumps(found[k])) for k in todo])
                    db.commit()
        return [list(found[k]) for k in keys]


class Judge:
    """Renders a template, asks the backend, parses the answer into [0, 1].

    Args:
        backend: a :class:`JudgeBackend`, a callable, or a dict spec (see :func:`make_backend`).
        template: bundled name, file path or template text; default the bundled ``quality`` prompt.
        scale: a bare number in the answer is divided by this (the bundled prompt asks for 0–10).
        max_tokens: answer length budget.
        choices: ``True`` constrains the answer to ``"Score: 0"`` … ``"Score: <scale>"`` where the
            backend supports it (local models; vLLM via ``guided_choice_field``); or an explicit list.
        cache_path: SQLite file for the answer cache (memory cache always on).
    """

    def __init__(self, backend: Any, *, template: str = "quality", scale: float = 10.0, max_tokens: int = 16,
                 choices: bool | Sequence[str] = False, cache_path: str | None = None) -> None:
        self.generator = backend if isinstance(backend, CachedGenerator) else CachedGenerator(backend,
                                                                                                cache_path=cache_path)
        self.template = load_template(template)
        self.scale = scale
        self.max_tokens = max_tokens
        if choices is True:
            choices = [f"Score: {i}" for i in range(int(scale) + 1)]
        self.choices = list(choices) if choices else None
        self.last_answers: list[str] = []

    @property
    def fields(self) -> set[str]:
        return template_fields(self.template)

    def prompts(self, rows: Sequence[dict[str, str]]) -> list[str]:
        return [render(self.template, **r) for r in rows]

    def score(self, rows: Sequence[dict[str, str]]) -> list[float | None]:
        """One score in [0, 1] (or None for an answer that does not parse) per row of template fields."""
        prompts = self.prompts(rows)
        answers = self.generator.generate(prompts, max_tokens=self.max_tokens, temperature=0.0, n=1,
                                          choices=self.choices)
        self.last_answers = [a[0] for a in answers]
        return [parse_score(a, self.scale) for a in self.last_answers]
