"""Test helpers: a deterministic keyword encoder whose cosines are easy to compute by hand."""

from __future__ import annotations

import re

import numpy as np


class KeywordEncoder:
    """Embeds a text as counts of the vocabulary words it contains (vector before normalisation)."""

    def __init__(self, vocab=("x", "y", "z")):
        self.vocab = list(vocab)
        self.calls: list[list[str]] = []

    def encode(self, texts):
        self.calls.append(list(texts))
        out = np.zeros((len(texts), len(self.vocab)), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"\w+", t.lower()):
                if w in self.vocab:
                    out[i, self.vocab.index(w)] += 1
        return out
