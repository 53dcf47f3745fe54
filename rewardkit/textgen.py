"""One text-model interface: a local transformers model, an OpenAI-compatible server, or a Python function.

Judges, teachers, policies sampled offline and frozen agent modules in the method plugins all
turn prompts into text through a :class:`TextModel`:

    model = text_model("hf:HuggingFaceTB/SmolLM2-135M-Instruct", max_tokens=64)
    model = text_model("openai:http://127.0.0.1:8000/v1#qwen-7b", api_key_env="OPENAI_API_KEY")
    model = text_model(lambda prompt: "Score: 7")
    model.generate(["2 + 2?", [{"role": "user", "content": "3 + 3?"}]], n=2, temperature=0.7)  # [[a, b], [c, d]]
    model("2 + 2?")                                                                             # one answer

A *prompt* is a string (one user turn) or a list of chat messages. :meth:`TextModel.generate`
returns ``n`` answers per prompt. Sampling options (``max_tokens``, ``temperature``, ``top_p``,
``seed``) are the model's defaults, set when it is built, and can be overridden per call;
``choices`` constrains each answer to one of a closed set (log-likelihood scoring for a local
model, the server's ``guided_choice``-style field for an HTTP one).

Spec (:func:`text_model`):

=======================================  ==========================================================
``TextModel`` instance                   itself
``"hf:<path or hub id>"`` or a bare path  :class:`HFTextModel` (also a loaded ``PreTrainedModel``)
``"openai:<base_url>[#<model>]"``        :class:`OpenAITextModel` (a bare ``http(s)://`` URL too);
                                         the model name defaults to ``"default"``
``{"type": "hf" | "openai", ...}``       the class with those keyword arguments
                                         (``"transformers"`` / ``"http"`` are accepted synonyms)
a callable                               :class:`CallableTextModel`
=======================================  ==========================================================

Everything heavy (torch, transformers) is imported only when a local model first generates; a
model pickles without its loaded weights (``_lazy_*`` attributes are dropped).
"""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rewardkit.serve.openai_compat import (
    ChatCompletionsError,
    ChatCompletionsServer,
    ChatCompletionsTimeout,
    choice_texts,
    post_chat_completions,
)

Prompt = str | list[dict[str, Any]]
"""A string (one user turn) or a list of chat messages."""

SAMPLING = ("max_tokens", "temperature", "top_p", "seed")


class TextModelError(RuntimeError):
    """A text model failed: HTTP error, malformed reply, a function returning the wrong thing."""


class TextModelTimeout(TextModelError, TimeoutError):
    """An HTTP text model did not answer in time (after its retries)."""


def as_messages(prompt: Prompt, system: str | None = None) -> list[dict[str, Any]]:
    """Chat messages for a prompt; ``system`` is prepended unless the prompt has a system turn."""
    msgs = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    if system and not any(m.get("role") == "system" for m in msgs):
        msgs = [{"role": "system", "content": system}, *msgs]
    return msgs


class TextModel:
    """Base class. Subclasses implement :meth:`_generate` (or, for a deterministic model, just
    :meth:`complete`), and :meth:`identity` when answers depend on more than the class name.

    Args:
        max_tokens / temperature / top_p / seed: the default sampling options of every call.
            Temperature 0 is greedy decoding; ``seed=None`` leaves the random state alone.
    """

    def __init__(self, *, max_tokens: int = 256, temperature: float = 0.0, top_p: float = 1.0,
                 seed: int | None = None) -> None:
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed

    def identity(self) -> str:
        """A string that changes whenever the model would answer differently (a cache key)."""
        return type(self).__name__

    def generate(self, prompts: Sequence[Prompt], *, n: int = 1, max_tokens: int | None = None,
                 temperature: float | None = None, top_p: float | None = None, seed: int | None = None,
                 choices: Sequence[str] | None = None) -> list[list[str]]:
        """``n`` answers for each prompt; unset options take the model's defaults."""
        opts = {"max_tokens": max_tokens, "temperature": temperature, "top_p": top_p, "seed": seed}
        opts = {k: getattr(self, k) if v is None else v for k, v in opts.items()}
        out = self._generate(list(prompts), n=n, choices=None if choices is None else list(choices), **opts)
        if len(out) != len(prompts) or any(len(a) != n for a in out):
            raise TextModelError(f"{self.identity()} returned {[len(a) for a in out]} answers for "
                                 f"{len(prompts)} prompts, n={n}")
        return out

    def _generate(self, prompts: list[Prompt], *, n: int, max_tokens: int, temperature: float, top_p: float,
                  seed: int | None, choices: list[str] | None) -> list[list[str]]:
        if type(self).complete is TextModel.complete:
            raise NotImplementedError(f"{type(self).__name__} implements neither _generate nor complete")
        # a subclass that only implements complete(prompt) -> str: a deterministic model
        return [[self.complete(p)] * n for p in prompts]

    def complete(self, prompt: Prompt, **options: Any) -> str:
        """The first answer for one prompt."""
        return self.generate([prompt], **options)[0][0]

    def __call__(self, prompt: Prompt, **options: Any) -> str:
        return self.complete(prompt, **options)

    def __getstate__(self) -> dict[str, Any]:
        return {k: (None if k.startswith("_lazy_") else v) for k, v in self.__dict__.items()}


class CallableTextModel(TextModel):
    """Wrap ``fn(prompt, **options) -> str | list[str]``: rules, lookups, test doubles.

    ``fn`` receives the options it names among ``n``, ``max_tokens``, ``temperature``, ``top_p``,
    ``seed``, ``choices`` (all of them if it takes ``**kwargs``; none if it takes only the prompt).
    It returns one string (``n`` must be 1) or ``n`` strings. ``messages=True`` hands it the prompt
    as chat messages even when a string was given.
    """

    def __init__(self, fn: Callable[..., str | list[str]], name: str | None = None, *, messages: bool = False,
                 **sampling: Any) -> None:
        super().__init__(**sampling)
        self.fn = fn
        self.name = name or getattr(fn, "__qualname__", repr(fn))
        self.messages = messages

    def identity(self) -> str:
        return f"callable:{self.name}"

    def _accepted(self) -> set[str] | None:
        try:
            params = inspect.signature(self.fn).parameters.values()
        except (TypeError, ValueError):  # builtins without a signature: prompt only
            return set()
        if any(p.kind is p.VAR_KEYWORD for p in params):
            return None
        return {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}

    def _generate(self, prompts, *, n, choices, **sampling):
        accepted = self._accepted()
        options = {"n": n, "choices": choices, **sampling}
        if accepted is not None:
            options = {k: v for k, v in options.items() if k in accepted}
        out = []
        for p in prompts:
            r = self.fn(as_messages(p) if self.messages else p, **options)
            r = [r] if isinstance(r, str) else r
            if not isinstance(r, list) or len(r) != n or not all(isinstance(t, str) for t in r):
                raise TextModelError(f"text function {self.name!r} returned {type(r).__name__} "
                                     f"{str(r)[:80]!r}, expected {'a str' if n == 1 else f'{n} strs'}")
            out.append(r)
        return out


class HFTextModel(TextModel):
    """A local causal LM: greedy at temperature 0, sampling (seeded) above it.

    Args:
        model: a path / Hub id (loaded on first use, to this process's device, never handed to
            DeepSpeed) or a loaded ``PreTrainedModel`` (stays on its device unless ``device`` is set).
        tokenizer: default: loaded from the model's path.
        device / dtype: where and in which torch dtype (``"bfloat16"``, ...) a path is loaded.
        batch_size: prompts per ``model.generate`` call (left-padded).
        system: a system turn prepended to every prompt that has none.
        max_prompt_tokens: keep only the last this many prompt tokens.
        top_k: 0 samples from the full (temperature-scaled, ``top_p``-cut) distribution.

    A string prompt is rendered with the chat template; without one, the messages' contents are
    joined by blank lines. ``choices`` is answered by scoring each choice's log-likelihood after
    the prompt and taking the best: exact constrained decoding for a closed set. With a seed,
    batch ``k`` (starting at prompt ``start``) is sampled after ``torch.manual_seed(seed + start)``.
    """

    def __init__(self, model: Any, tokenizer: Any = None, *, device: str | None = None, dtype: str | None = None,
                 batch_size: int = 8, system: str | None = None, max_prompt_tokens: int | None = None,
                 top_k: int = 0, **sampling: Any) -> None:
        super().__init__(**sampling)
        by_path = isinstance(model, (str, os.PathLike))
        self.model = str(model) if by_path else None
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.system = system
        self.max_prompt_tokens = max_prompt_tokens
        self.top_k = top_k
        self._lazy_model = None if by_path else model
        self._lazy_tokenizer = tokenizer
        self._lazy_lock: threading.Lock | None = None

    def identity(self) -> str:
        name = self.model or getattr(getattr(self._lazy_model, "config", None), "_name_or_path", "in-memory")
        return f"transformers:{os.path.abspath(name) if os.path.exists(name) else name}"

    def _lock(self) -> threading.Lock:
        if self._lazy_lock is None:
            self._lazy_lock = threading.Lock()
        return self._lazy_lock

    def load(self) -> tuple[Any, Any]:
        """(model, tokenizer), loaded on first use."""
        with self._lock():
            return self._load()

    def _load(self) -> tuple[Any, Any]:
        if self._lazy_model is None:
            if self.model is None:
                raise TextModelError("HFTextModel was pickled with an in-memory model; give it a path instead")
            import torch
            from transformers import AutoModelForCausalLM

            from rewardkit.trl.placement import process_device, whole_model_loading

            kwargs = {"dtype": getattr(torch, self.dtype)} if self.dtype else {}
            with whole_model_loading():  # generate() on a ZeRO-3-partitioned model would fail
                model = AutoModelForCausalLM.from_pretrained(self.model, **kwargs)
            self.device = self.device or process_device()
            self._lazy_model = model.to(self.device).eval()
        elif self.device is not None:
            self._lazy_model.to(self.device)
        if self._lazy_tokenizer is None:
            from transformers import AutoTokenizer

            self._lazy_tokenizer = AutoTokenizer.from_pretrained(
                self.model or self._lazy_model.config._name_or_path)
        self._lazy_model.eval()
        return self._lazy_model, self._lazy_tokenizer

    def render(self, prompt: Prompt) -> str:
        """The prompt as the model reads it (chat template with the generation prompt)."""
        _, tok = self.load()
        msgs = as_messages(prompt, self.system)
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return "\n\n".join(str(m.get("content", "")) for m in msgs)

    def _prompt_ids(self, tok: Any, text: str) -> list[int]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        return ids[-self.max_prompt_tokens:] if self.max_prompt_tokens else ids

    @staticmethod
    def _pad_id(tok: Any) -> int:
        return tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)

    def _generate(self, prompts, *, n, max_tokens, temperature, top_p, seed, choices):
        texts = [self.render(p) for p in prompts]
        if choices:
            return [[c] * n for c in self._choose(texts, choices)]
        import torch

        with self._lock():
            model, tok = self._load()
            device = next(model.parameters()).device
            pad = self._pad_id(tok)
            out: list[list[str]] = []
            for start in range(0, len(texts), self.batch_size):
                rows = [self._prompt_ids(tok, t) for t in texts[start:start + self.batch_size]]
                width = max(len(r) for r in rows)  # left padding: every prompt ends where generation starts
                ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
                mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
                kwargs: dict[str, Any] = {"max_new_tokens": max_tokens, "num_return_sequences": n,
                                          "pad_token_id": pad}
                if temperature and temperature > 0:
                    kwargs.update(do_sample=True, temperature=float(temperature), top_p=float(top_p),
                                  top_k=self.top_k)
                    if seed is not None:
                        torch.manual_seed(seed + start)
                else:
                    kwargs.update(do_sample=False)
                with torch.inference_mode():
                    gen = model.generate(input_ids=ids, attention_mask=mask, **kwargs)
                decoded = tok.batch_decode(gen[:, width:], skip_special_tokens=True)
                out += [decoded[k * n:(k + 1) * n] for k in range(len(rows))]
        return out

    def choice_logprobs(self, texts: list[str], choices: list[str]) -> list[list[float]]:
        """Sum of token log-probabilities of each choice after each rendered prompt."""
        import torch

        with self._lock():
            model, tok = self._load()
            device = next(model.parameters()).device
            result: list[list[float]] = []
            for text in texts:
                p_ids = self._prompt_ids(tok, text)
                scores = []
                for c in choices:
                    c_ids = tok(c, add_special_tokens=False)["input_ids"]
                    with torch.inference_mode():
                        logits = model(input_ids=torch.tensor([p_ids + c_ids], device=device)).logits[0].float()
                    logp = torch.log_softmax(logits[len(p_ids) - 1:-1], dim=-1)
                    scores.append(float(logp.gather(1, torch.tensor(c_ids, device=device)[:, None]).sum()))
                result.append(scores)
        return result

    def _choose(self, texts: list[str], choices: list[str]) -> list[str]:
        return [choices[max(range(len(choices)), key=lambda i: s[i])] for s in self.choice_logprobs(texts, choices)]


class OpenAITextModel(TextModel):
    """Any OpenAI-compatible ``/chat/completions`` endpoint (OpenAI, vLLM, SGLang, llama.cpp, or
    :class:`TextModelServer`), over :func:`rewardkit.serve.openai_compat.post_chat_completions`.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000/v1``.
        model: the model name the server expects.
        api_key / api_key_env: the bearer token, or the environment variable holding it (read at
            request time, so it is never pickled); neither sends no header.
        timeout / max_retries / backoff: per request; timeouts, connection errors and 5xx retried.
        concurrency: parallel requests for a batch of prompts.
        guided_choice_field: request field carrying ``choices`` (``"guided_choice"`` for vLLM and
            :class:`TextModelServer`); None sends no constraint (plain OpenAI).
        system: a system turn prepended to every prompt that has none.
        extra_body: extra JSON fields for every request.

    A server that returns fewer than ``n`` choices is asked again for the rest.
    """

    def __init__(self, base_url: str, model: str = "default", *, api_key: str | None = None,
                 api_key_env: str | None = None, timeout: float = 60.0, max_retries: int = 2,
                 backoff: float = 0.5, concurrency: int = 8, guided_choice_field: str | None = None,
                 system: str | None = None, extra_body: dict[str, Any] | None = None, **sampling: Any) -> None:
        super().__init__(**sampling)
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

    def _post(self, body: dict[str, Any]) -> list[str]:
        key = self.api_key or (os.environ.get(self.api_key_env) if self.api_key_env else None)
        try:
            return choice_texts(post_chat_completions(self.base_url, body, api_key=key, timeout=self.timeout,
                                                      max_retries=self.max_retries, backoff=self.backoff))
        except ChatCompletionsTimeout as exc:
            raise TextModelTimeout(f"text model endpoint {exc}") from None
        except ChatCompletionsError as exc:
            raise TextModelError(f"text model endpoint {exc}") from None

    def _one(self, prompt: Prompt, n: int, max_tokens: int, temperature: float, top_p: float, seed: int | None,
             choices: list[str] | None) -> list[str]:
        body: dict[str, Any] = {"model": self.model, "messages": as_messages(prompt, self.system),
                                "max_tokens": max_tokens, "temperature": temperature, **self.extra_body}
        if top_p != 1.0:
            body["top_p"] = top_p
        if seed is not None:
            body["seed"] = seed
        if choices and self.guided_choice_field:
            body[self.guided_choice_field] = choices
        texts: list[str] = []
        while len(texts) < n:  # some servers ignore n: ask again for the rest
            got = self._post({**body, "n": n - len(texts)})
            if not got or len(got) > n - len(texts):
                raise TextModelError(f"{self.base_url} returned {len(got)} choices, asked for n={n - len(texts)}")
            texts += got
        return texts

    def _generate(self, prompts, *, n, max_tokens, temperature, top_p, seed, choices):
        def one(p: Prompt) -> list[str]:
            return self._one(p, n, max_tokens, temperature, top_p, seed, choices)

        if len(prompts) <= 1 or self.concurrency <= 1:
            return [one(p) for p in prompts]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(prompts))) as pool:
            return list(pool.map(one, prompts))


KINDS: dict[str, type[TextModel]] = {"hf": HFTextModel, "transformers": HFTextModel, "openai": OpenAITextModel,
                                     "http": OpenAITextModel, "callable": CallableTextModel}


def text_model(spec: Any, **options: Any) -> TextModel:
    """A :class:`TextModel` from a spec (see the module docstring); ``options`` go to its constructor."""
    if isinstance(spec, TextModel):
        return spec
    if isinstance(spec, dict):
        params = {**spec, **options}
        kind = params.pop("type", None)
        if kind not in KINDS:
            raise ValueError(f"text model type must be one of {sorted(KINDS)}, got {kind!r}")
        return KINDS[kind](**params)
    if isinstance(spec, (str, os.PathLike)):
        s = str(spec)
        if s.startswith("hf:"):
            return HFTextModel(s[3:], **options)
        if s.startswith("openai:") or s.startswith(("http://", "https://")):
            url, _, model = s.removeprefix("openai:").partition("#")
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"an openai: text model needs an http(s) URL, got {s!r}")
            return OpenAITextModel(url, model or options.pop("model", "default"), **options)
        return HFTextModel(s, **options)
    if callable(spec):
        return CallableTextModel(spec, **options)
    # a loaded transformers model
    if hasattr(spec, "generate") and hasattr(spec, "config"):
        return HFTextModel(spec, **options)
    raise TypeError(f"cannot build a text model from {spec!r}")


class TextModelServer(ChatCompletionsServer):
    """Serve a :class:`TextModel` (or anything :func:`text_model` accepts) at
    ``http://host:port/v1/chat/completions``: a request's ``n``, ``max_tokens``, ``temperature``,
    ``top_p``, ``seed`` and vLLM's ``guided_choice`` become :meth:`TextModel.generate` options.
    For loopback tests and offline pipelines; use vLLM or SGLang in production.

        with TextModelServer("hf:path/to/model") as server:
            remote = text_model(f"openai:{server.base_url}")
    """

    def __init__(self, model: Any, *, host: str = "127.0.0.1", port: int = 0, model_name: str = "local") -> None:
        super().__init__(self._answer, host=host, port=port, model_name=model_name)
        self.text_model = text_model(model)

    def _answer(self, messages: list[dict[str, Any]], request: dict[str, Any]) -> list[str]:
        options = {k: request[k] for k in SAMPLING if request.get(k) is not None}
        return self.text_model.generate([messages], n=int(request.get("n") or 1),
                                        choices=request.get("guided_choice"), **options)[0]
