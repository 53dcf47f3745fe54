"""Text generation backends for stage 0: a local transformers model or an OpenAI-compatible server.

Both implement ``generate(prompts, n=1, temperature=..., top_p=..., max_new_tokens=...)`` and
return ``n`` completions per prompt. A prompt is a string or a list of chat messages.
:func:`serve` exposes any backend (or function) as an OpenAI-compatible ``/v1/chat/completions``
endpoint on a local port (used for the loopback tests and the offline pipeline's judge).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Prompt = str | list[dict[str, Any]]


def as_messages(prompt: Prompt) -> list[dict[str, Any]]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


class TransformersBackend:
    """Sample from a local causal LM (path or ``PreTrainedModel``) with ``model.generate``."""

    def __init__(self, model: Any, tokenizer: Any = None, *, device: str = "cpu", batch_size: int = 16,
                 seed: int | None = 0) -> None:
        self.model_ref = model
        self.tokenizer_ref = tokenizer
        self.device = device
        self.batch_size = batch_size
        self.seed = seed
        self._lazy_model: Any = None
        self._lazy_tok: Any = None

    def _load(self) -> tuple[Any, Any]:
        if self._lazy_model is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            model = self.model_ref
            if isinstance(model, str) or hasattr(model, "__fspath__"):
                model = AutoModelForCausalLM.from_pretrained(str(model))
            tok = self.tokenizer_ref or AutoTokenizer.from_pretrained(str(self.model_ref))
            tok.padding_side = "left"
            if tok.pad_token_id is None:
                tok.pad_token = tok.eos_token
            self._lazy_model = model.to(self.device).eval()
            self._lazy_tok = tok
        return self._lazy_model, self._lazy_tok

    def _encode(self, tok: Any, prompt: Prompt) -> str:
        if isinstance(prompt, str) and not getattr(tok, "chat_template", None):
            return prompt
        return tok.apply_chat_template(as_messages(prompt), tokenize=False, add_generation_prompt=True)

    def generate(self, prompts: Sequence[Prompt], n: int = 1, *, temperature: float = 0.7, top_p: float = 1.0,
                 max_new_tokens: int = 256) -> list[list[str]]:
        import torch

        model, tok = self._load()
        if self.seed is not None:
            torch.manual_seed(self.seed)
        out: list[list[str]] = []
        eos = model.generation_config.eos_token_id
        for start in range(0, len(prompts), self.batch_size):
            chunk = [self._encode(tok, p) for p in prompts[start:start + self.batch_size]]
            enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            kwargs: dict[str, Any] = dict(max_new_tokens=max_new_tokens, num_return_sequences=n,
                                          pad_token_id=tok.pad_token_id, eos_token_id=eos)
            if temperature > 0:
                kwargs.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
            else:
                kwargs.update(do_sample=False)
            with torch.no_grad():
                gen = model.generate(**enc, **kwargs)
            new = gen[:, enc["input_ids"].shape[1]:]
            texts = tok.batch_decode(new, skip_special_tokens=True)
            for i in range(len(chunk)):
                out.append(texts[i * n:(i + 1) * n])
        return out


class OpenAIBackend:
    """Any OpenAI-compatible ``/chat/completions`` server (vLLM, SGLang, the OpenAI API, ...)."""

    def __init__(self, base_url: str, model: str = "default", *, api_key: str | None = None,
                 timeout: float = 120.0, max_retries: int = 2) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        url = f"{self.base_url}/chat/completions"
        last: Exception | None = None
        for attempt in range(self.max_retries + 1):
            req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return json.loads(resp.read().decode("utf-8"))
            except urllib.error.HTTPError as exc:
                body = exc.read().decode("utf-8", "replace")[:500]
                if exc.code < 500:
                    raise RuntimeError(f"{url} answered HTTP {exc.code}: {body}") from None
                last = RuntimeError(f"{url} answered HTTP {exc.code}: {body}")
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                last = exc
            time.sleep(0.2 * (attempt + 1))
        raise RuntimeError(f"{url} failed after {self.max_retries + 1} tries: {last}")

    def generate(self, prompts: Sequence[Prompt], n: int = 1, *, temperature: float = 0.7, top_p: float = 1.0,
                 max_new_tokens: int = 256) -> list[list[str]]:
        out = []
        for p in prompts:
            texts: list[str] = []
            while len(texts) < n:  # servers may ignore n: ask again for the rest
                data = self._post({"model": self.model, "messages": as_messages(p), "n": n - len(texts),
                                   "temperature": temperature, "top_p": top_p, "max_tokens": max_new_tokens})
                choices = data.get("choices") or []
                if not choices:
                    raise RuntimeError(f"{self.base_url}: response without choices: {str(data)[:300]}")
                texts.extend((c.get("message") or {}).get("content") or "" for c in choices)
            out.append(texts[:n])
        return out


def get_backend(spec: Any, *, model: str = "default", api_key: str | None = None, **kwargs: Any) -> Any:
    """``http(s)://...`` → :class:`OpenAIBackend`; a path or model → :class:`TransformersBackend`;
    an object with ``generate`` is returned as is."""
    if hasattr(spec, "generate") and not isinstance(spec, str):
        return spec
    if isinstance(spec, str) and spec.startswith(("http://", "https://")):
        return OpenAIBackend(spec, model, api_key=api_key)
    return TransformersBackend(spec, **kwargs)


# -- a minimal OpenAI-compatible server --------------------------------------------------------

GenerateFn = Callable[[list[dict[str, Any]], int, float, float, int], list[str]]


def _as_generate_fn(backend: Any) -> GenerateFn:
    if hasattr(backend, "generate"):
        def fn(messages, n, temperature, top_p, max_tokens):
            return backend.generate([messages], n, temperature=temperature, top_p=top_p,
                                    max_new_tokens=max_tokens)[0]
        return fn
    return backend


def serve(backend: Any, host: str = "127.0.0.1", port: int = 0, model_name: str = "rewardkit-local"):
    """Serve ``backend`` (a backend or ``fn(messages, n, temperature, top_p, max_tokens) -> [str]``)
    at ``http://host:port/v1``. Returns ``(server, base_url)``; stop it with ``server.shutdown()``."""
    fn = _as_generate_fn(backend)
    lock = threading.Lock()  # one generation at a time: local models are not thread-safe

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _send(self, code: int, obj: dict[str, Any]) -> None:
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                self._send(200, {"object": "list", "data": [{"id": model_name, "object": "model"}]})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            try:
                req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                messages = req["messages"]
                if not isinstance(messages, list):
                    raise ValueError("messages must be a list")
            except (ValueError, KeyError) as exc:
                self._send(400, {"error": {"message": f"bad request: {exc}"}})
                return
            try:
                with lock:
                    texts = fn(messages, int(req.get("n", 1)), float(req.get("temperature", 1.0)),
                               float(req.get("top_p", 1.0)), int(req.get("max_tokens") or 256))
            except Exception as exc:  # report, don't kill the server
                self._send(500, {"error": {"message": f"{type(exc).__name__}: {exc}"}})
                return
            self._send(200, {"id": "chatcmpl-rk", "object": "chat.completion", "created": int(time.time()),
                             "model": req.get("model", model_name),
                             "choices": [{"index": i, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": t}}
                                         for i, t in enumerate(texts)]})

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, f"http://{host}:{server.server_address[1]}/v1"
