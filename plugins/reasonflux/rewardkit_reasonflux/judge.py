"""Expert-judge backends for the quality score and the template-guided trajectory reward.

ReasonFlux-PRM uses an expert LLM (GPT-4o in the paper) twice: to grade each thinking step
(``r_t^qual``) and to write a reasoning template for the trajectory reward. Here that LLM is a
pluggable :class:`JudgeBackend`:

* :class:`TransformersBackend` — a local ``transformers`` causal LM (chat template applied);
* :class:`OpenAIBackend` — any OpenAI-compatible ``/chat/completions`` endpoint (OpenAI, vLLM,
  SGLang, llama.cpp, or :mod:`rewardkit_reasonflux.server`), standard library HTTP only;
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rewardkit.serve.openai_compat import (
    ChatCompletionsError,
    ChatCompletionsTimeout,
    choice_texts,
    post_chat_completions,
)

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
FIELD = re.compile(r"\{\{(\w+)\}\}")

Prompt = str | list[dict[str, Any]]


class JudgeError(RuntimeError):
    """The judge backend failed (HTTP error, malformed JSON, wrong shape)."""


class JudgeTimeoutError(JudgeError, TimeoutError):
    """The judge backend did not answer in time (after its retries)."""


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


# -- backends -----------------------------------------------------------------------------------

def as_messages(prompt: Prompt, system: str | None = None) -> list[dict[str, Any]]:
    msgs = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    if system and not any(m.get("role") == "system" for m in msgs):
        msgs = [{"role": "system", "content": system}, *msgs]
    return msgs


class JudgeBackend:
    """Generates text for prompts. Subclasses implement :meth:`complete`.

    ``complete(prompts, max_tokens, temperature, n, choices, seed)`` returns, for each prompt, ``n``
    answers. With ``choices`` the backend answers with one of them (constrained decoding where the
    backend supports it).
    """

    def identity(self) -> str:
        """A string that changes whenever the backend would answer differently (the cache key)."""
        raise NotImplementedError

    def complete(self, prompts: Sequence[Prompt], *, max_tokens: int = 64, temperature: float = 0.0, n: int = 1,
                 choices: Sequence[str] | None = None, seed: int | None = None) -> list[list[str]]:
        raise NotImplementedError

    def __getstate__(self) -> dict[str, Any]:
        return {k: (None if k.startswith("_lazy_") else v) for k, v in self.__dict__.items()}


class CallableBackend(JudgeBackend):
    """Wrap ``fn(prompt, *, n, max_tokens, temperature, choices, seed) -> str | list[str]``."""

    def __init__(self, fn: Callable[..., str | list[str]], name: str | None = None) -> None:
        self.fn = fn
        self.name = name or getattr(fn, "__qualname__", repr(fn))

    def identity(self) -> str:
        return f"callable:{self.name}"

    def complete(self, prompts, *, max_tokens=64, temperature=0.0, n=1, choices=None, seed=None):
        out = []
        for p in prompts:
            r = self.fn(p, n=n, max_tokens=max_tokens, temperature=temperature, choices=choices, seed=seed)
            r = [r] if isinstance(r, str) else list(r)
            if len(r) != n:
                raise JudgeError(f"judge function {self.name!r} returned {len(r)} answers, expected {n}")
            out.append(r)
        return out


class TransformersBackend(JudgeBackend):
    """A local causal LM. Greedy at temperature 0, sampling (seeded) above it.

    ``choices`` is answered by scoring every choice's log-likelihood after the prompt and taking the
    best, which is exact constrained decoding for a closed set of answers.
    """

    def __init__(self, model: str | os.PathLike[str], *, device: str | None = None, dtype: str | None = None,
                 batch_size: int = 8, system: str | None = None, max_prompt_tokens: int | None = None) -> None:
        self.model = str(model)
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.system = system
        self.max_prompt_tokens = max_prompt_tokens
        self._lazy_model: Any = None
        self._lazy_tokenizer: Any = None
        self._lazy_lock = threading.Lock()

    def identity(self) -> str:
        return f"transformers:{os.path.abspath(self.model) if os.path.exists(self.model) else self.model}"

    def load(self) -> tuple[Any, Any]:
        if self._lazy_lock is None:
            self._lazy_lock = threading.Lock()
        with self._lazy_lock:
            if self._lazy_model is None:
                import torch
                from transformers import AutoModelForCausalLM, AutoTokenizer

                tok = AutoTokenizer.from_pretrained(self.model)
                tok.padding_side = "left"
                if tok.pad_token is None:
                    tok.pad_token = tok.eos_token
                from rewardkit.trl.placement import process_device, whole_model_loading

                if self.device is None:
                    self.device = process_device()
                kwargs = {"dtype": getattr(torch, self.dtype)} if self.dtype else {}
                with whole_model_loading():  # generate() on a ZeRO-3-partitioned model would fail
                    model = AutoModelForCausalLM.from_pretrained(self.model, **kwargs).to(self.device)
                model.eval()
                self._lazy_tokenizer, self._lazy_model = tok, model
        return self._lazy_model, self._lazy_tokenizer

    def render_prompt(self, prompt: Prompt) -> str:
        _, tok = self.load()
        msgs = as_messages(prompt, self.system)
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return "\n\n".join(str(m.get("content", "")) for m in msgs)

    def _encode(self, texts: list[str]):
        _, tok = self.load()
        kw: dict[str, Any] = {"return_tensors": "pt", "padding": True, "add_special_tokens": False}
        if self.max_prompt_tokens:
            tok.truncation_side = "left"
            kw.update(truncation=True, max_length=self.max_prompt_tokens)
        return tok(texts, **kw).to(self.device)

    def complete(self, prompts, *, max_tokens=64, temperature=0.0, n=1, choices=None, seed=None):
        import torch

        model, tok = self.load()
        texts = [self.render_prompt(p) for p in prompts]
        if choices:
            return [[c] * n for c in self._choose(texts, list(choices))]
        out: list[list[str]] = []
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start:start + self.batch_size]
            enc = self._encode(chunk)
            gen_kwargs: dict[str, Any] = {"max_new_tokens": max_tokens, "num_return_sequences": n,
                                          "pad_token_id": tok.pad_token_id}
            if temperature and temperature > 0:
                gen_kwargs.update(do_sample=True, temperature=float(temperature), top_k=0, top_p=1.0)
                if seed is not None:
                    torch.manual_seed(seed + start)
            else:
                gen_kwargs.update(do_sample=False)
            with torch.inference_mode():
                ids = model.generate(**enc, **gen_kwargs)
            new = ids[:, enc["input_ids"].shape[1]:]
            decoded = tok.batch_decode(new, skip_special_tokens=True)
            for k in range(len(chunk)):
                out.append(decoded[k * n:(k + 1) * n])
        return out

    def choice_logprobs(self, texts: list[str], choices: list[str]) -> list[list[float]]:
        """Sum of token log-probabilities of each choice after each (rendered) prompt."""
        import torch

        model, tok = self.load()
        result: list[list[float]] = []
        for text in texts:
            p_ids = tok(text, add_special_tokens=False)["input_ids"]
            scores = []
            for c in choices:
                c_ids = tok(c, add_special_tokens=False)["input_ids"]
                ids = torch.tensor([p_ids + c_ids], device=self.device)
                with torch.inference_mode():
                    logits = model(input_ids=ids).logits[0].float()
                logp = torch.log_softmax(logits[len(p_ids) - 1:-1], dim=-1)
                tgt = torch.tensor(c_ids, device=self.device)
                scores.append(float(logp.gather(1, tgt[:, None]).sum()))
            result.append(scores)
        return result

    def _choose(self, texts: list[str], choices: list[str]) -> list[str]:
        out = []
        for scores in self.choice_logprobs(texts, choices):
            out.append(choices[max(range(len(choices)), key=lambda i: scores[i])])
        return out


class OpenAIBackend(JudgeBackend):
    """Any OpenAI-compatible chat-completions endpoint.

    Args:
        base_url: e.g. ``https://api.openai.com/v1`` or ``http://127.0.0.1:8000/v1``.
        model: the model name the server expects.
        api_key / api_key_env: the bearer token, or the environment variable holding it (read at
            request time, never pickled or cached).
        timeout: seconds per request; max_retries: retries on timeouts, connection errors and 5xx.
        concurrency: parallel requests for a batch of prompts.
        guided_choice_field: request field for constrained choices (``"guided_choice"`` for vLLM and
            :mod:`rewardkit_reasonflux.server`); ``None`` sends no constraint (plain OpenAI).
        extra_body: extra JSON fields for every request.
    """

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", timeout: float = 60.0, max_retries: int = 2,
                 backoff: float = 0.5, concurrency: int = 8, guided_choice_field: str | None = None,
                 system: str | None = None, extra_body: dict[str, Any] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.concurrency = concurrency
        self.guided_choice_field = guided_choice_field
        self.system = system
        self.extra_body = dict(extra_body or {})

    def identity(self) -> str:
        return f"openai:{self.base_url}:{self.model}:{self.system or ''}"

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return post_chat_completions(self.base_url, body, api_key=self.api_key or os.environ.get(self.api_key_env),
                                         timeout=self.timeout, max_retries=self.max_retries, backoff=self.backoff)
        except ChatCompletionsTimeout as exc:
            raise JudgeTimeoutError(f"judge endpoint {exc}") from None
        except ChatCompletionsError as exc:
            raise JudgeError(f"judge endpoint {exc}") from None

    def _one(self, prompt: Prompt, max_tokens: int, temperature: float, n: int,
             choices: Sequence[str] | None, seed: int | None) -> list[str]:
        body: dict[str, Any] = {"model": self.model, "messages": as_messages(prompt, self.system),
                                "max_tokens": max_tokens, "temperature": temperature, "n": n, **self.extra_body}
        if seed is not None:
            body["seed"] = seed
        if choices and self.guided_choice_field:
            body[self.guided_choice_field] = list(choices)
        try:
            answers = choice_texts(self._post(body))
        except ChatCompletionsError as exc:
            raise JudgeError(f"judge endpoint returned an {exc}") from None
        if len(answers) != n:
            raise JudgeError(f"judge endpoint returned {len(answers)} choices, asked for n={n}")
        return answers

    def complete(self, prompts, *, max_tokens=64, temperature=0.0, n=1, choices=None, seed=None):
        prompts = list(prompts)
        if len(prompts) <= 1 or self.concurrency <= 1:
            return [self._one(p, max_tokens, temperature, n, choices, seed) for p in prompts]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(prompts))) as pool:
            return list(pool.map(lambda p: self._one(p, max_tokens, temperature, n, choices, seed), prompts))


def make_backend(spec: Any) -> JudgeBackend:
    """A backend from an instance, a callable, or a dict ``{"type": "transformers"|"openai", ...}``."""
    if isinstance(spec, JudgeBackend):
        return spec
    if isinstance(spec, dict):
        params = dict(spec)
        kind = params.pop("type", None)
        if kind == "transformers":
            return TransformersBackend(**params)
        if kind in ("openai", "http"):
            return OpenAIBackend(**params)
        raise ValueError(f"judge backend type must be 'transformers' or 'openai', got {kind!r}")
    if isinstance(spec, (str, os.PathLike)):
        s = str(spec)
        if s.startswith(("http://", "https://")):
            raise ValueError("an HTTP judge needs a model name: pass {'type': 'openai', 'base_url': ..., 'model': ...}")
        return TransformersBackend(s)
    if callable(spec):
        return CallableBackend(spec)
    raise TypeError(f"cannot build a judge backend from {spec!r}")


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
            answers = self.backend.complete(list(todo.values()), max_tokens=max_tokens, temperature=temperature,
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
