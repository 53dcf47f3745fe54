"""The upper-level variables: per-domain weights (v1) or per-instance weights (1.5).

Every module maps a batch to one weight per sample, ``forward(domains, ids, features, owners) -> (B,)``,
where ``features`` is the ``(n_slots, 2)`` softmax over [good, bad] at each labelled slot and
``owners`` the sample each slot belongs to (only :class:`InstanceNet` reads them).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class DomainWeights(nn.Module):
    """v1: ``w = softplus(a) / mean(softplus(a))`` with ``a = 0`` at start, so every weight is 1
    and the weights always average to 1 (the normalisation keeps the lower lr's scale)."""

    kind = "domain"

    def __init__(self, domains: Sequence[str], normalize: bool = True) -> None:
        super().__init__()
        self.domains = list(domains)
        self.index = {d: i for i, d in enumerate(self.domains)}
        self.raw = nn.Parameter(torch.zeros(len(self.domains)))
        self.normalize = normalize

    def all_weights(self) -> torch.Tensor:
        s = F.softplus(self.raw)
        return s / s.mean() if self.normalize else s

    def forward(self, domains: Sequence[str], ids: Sequence[object] = (), features=None, owners=None):
        try:
            idx = torch.tensor([self.index[d] for d in domains], device=self.raw.device)
        except KeyError as exc:
            raise KeyError(f"domain {exc.args[0]!r} has no weight (known: {self.domains})") from None
        return self.all_weights()[idx]

    def table(self) -> dict[str, float]:
        with torch.no_grad():
            return {d: float(w) for d, w in zip(self.domains, self.all_weights())}


ACTIVATIONS = {
    "clip": lambda x: torch.clamp(x, -1.0, 3.0),
    "leaky_relu": F.leaky_relu,
    "relu": F.relu,
    "identity": lambda x: x,
}


class InstanceTable(nn.Module):
    """1.5: one raw weight per training instance, initialised at 1.0; an activation (default Clip
    to [-1, 3], as the official run script) and no normalisation, so negative weights can occur."""

    kind = "instance_table"

    def __init__(self, ids: Sequence[object], activation: str = "clip", init: float = 1.0) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}")
        self.ids = [str(i) for i in ids]
        self.index = {i: k for k, i in enumerate(self.ids)}
        if len(self.index) != len(self.ids):
            raise ValueError("instance ids must be unique for the instance table")
        self.raw = nn.Parameter(torch.full((len(self.ids),), float(init)))
        self.activation = activation

    def forward(self, domains=(), ids: Sequence[object] = (), features=None, owners=None):
        try:
            idx = torch.tensor([self.index[str(i)] for i in ids], device=self.raw.device)
        except KeyError as exc:
            raise KeyError(f"instance {exc.args[0]!r} is not in the weight table") from None
        return ACTIVATIONS[self.activation](self.raw[idx])

    def table(self, by_domain: dict[str, list[object]] | None = None) -> dict[str, float]:
        with torch.no_grad():
            w = ACTIVATIONS[self.activation](self.raw)
            if not by_domain:
                return {"mean": float(w.mean())}
            return {d: float(w[[self.index[str(i)] for i in ids]].mean()) for d, ids in by_domain.items()}


class InstanceNet(nn.Module):
    """1.5: ``sigmoid(Linear(hidden->1)(LeakyReLU(Linear(2->hidden)(features))))`` where the
    features are the softmax over [good, bad] averaged over the sample's slots."""

    kind = "instance_net"

    def __init__(self, hidden: int = 10) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.LeakyReLU(), nn.Linear(hidden, 1))

    def forward(self, domains=(), ids=(), features: torch.Tensor | None = None,
                owners: torch.Tensor | None = None):
        if features is None or owners is None:
            raise ValueError("the instance net needs the PRM's slot features and their owners")
        per_slot = self.net(features.float()).squeeze(-1)
        n = len(ids) if len(ids) else len(domains)
        sums = torch.zeros(n, dtype=per_slot.dtype, device=per_slot.device).index_add(0, owners, per_slot)
        counts = torch.bincount(owners, minlength=n).clamp(min=1).to(per_slot.dtype)
        return torch.sigmoid(sums / counts)


class UniformWeights(nn.Module):
    """The "PRM w/o data selection" baseline: every sample weighs 1, nothing to learn."""

    kind = "none"

    def __init__(self, domains: Sequence[str] = ()) -> None:
        super().__init__()
        self.domains = list(domains)

    def forward(self, domains=(), ids=(), features=None, owners=None):
        n = len(domains) if len(domains) else len(ids)
        return torch.ones(n)

    def table(self) -> dict[str, float]:
        return {d: 1.0 for d in self.domains}
