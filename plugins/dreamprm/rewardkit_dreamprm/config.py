"""Configuration of a DreamPRM run: :class:`DreamPRMConfig`, every knob of the bi-level trainer.

Presets are built one way, :func:`bilevel_kwargs` (``"v1"``: the dataclass defaults, DreamPRM's
official values; ``"1.5"``: DreamPRM-1.5's), as the other plugins build their ``GRPOConfig`` kwargs.
DreamPRM trains no policy, so there is no ``grpo_kwargs`` preset. Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

ADAM_IMPLS = ("transformers", "torch")
SCHEDULES = ("step", "cosine", "constant")

PRESETS: dict[str, dict[str, Any]] = {
    "v1": {},  # the DreamPRMConfig defaults are v1's official values
    # DreamPRM-1.5 (main_table.py + run_table.sh): transformers' AdamW (eps 1e-6) at both levels,
    # cosine with 5% warm-up at both levels, grad-clip 1.0 at both levels
    "1.5": dict(variant="1.5", weighting="instance_table", lr=5e-5, weight_decay=0.01, adam_eps=1e-6,
                adam_impl="transformers", lr_scheduler="cosine", meta_lr_scheduler="cosine", max_grad_norm=1.0,
                meta_lr=5e-3, meta_weight_decay=1e-3, meta_max_grad_norm=1.0, unroll_steps=1, max_steps=100_000),
}


def bilevel_kwargs(preset: str = "v1", **overrides: Any) -> dict[str, Any]:
    """:class:`DreamPRMConfig` keyword arguments of ``preset`` (``"v1"`` or ``"1.5"``), ``overrides`` on top."""
    if preset not in PRESETS:
        raise ValueError(f"unknown DreamPRM preset {preset!r}; known: {sorted(PRESETS)}")
    return {**PRESETS[preset], **overrides}


@dataclass
class DreamPRMConfig:
    """Every knob of the bi-level run. Defaults are DreamPRM v1's official values; :meth:`v15` (or
    :meth:`from_dict` with ``variant="1.5"``) gives DreamPRM-1.5's."""

    variant: str = "v1"                   # "v1" (value head, MSE) | "1.5" (generative +/-, CE)
    weighting: str = "domain"             # "domain" | "instance_table" | "instance_net" | "none" (baseline)
    instance_activation: str = "clip"     # instance table: clip[-1,3] | leaky_relu | relu | identity
    instance_net_hidden: int = 10
    instance_net_detach: bool = False     # official: the net's features keep their graph into φ
    lr: float = 5e-7
    weight_decay: float = 0.0             # v1 passes no weight decay to the lower AdamW
    adam_eps: float = 1e-6                # transformers.AdamW's default eps, used by both official trainers
    adam_impl: str = "transformers"       # "transformers" (official: optim.LegacyAdamW) | "torch" (torch.optim.AdamW)
    lr_scheduler: str = "step"            # "step" (v1: StepLR 5000, 0.5) | "cosine" (1.5, warm-up) | "constant"
    meta_lr_scheduler: str = "constant"   # v1: none; 1.5: "cosine" (same warm-up/horizon, stepped per upper step)
    step_size: int = 5000
    gamma: float = 0.5
    warmup_ratio: float = 0.05
    max_grad_norm: float | None = None    # 1.5: 1.0
    meta_lr: float = 0.01
    meta_weight_decay: float = 1e-3       # v1 takes it from --weight_decay (1e-3)
    meta_max_grad_norm: float | None = None
    unroll_steps: int = 5                 # lower steps per upper step (v1 5, 1.5 1)
    batch_size: int = 1
    meta_batch_size: int = 1
    max_steps: int = 10_000               # lower steps
    hypergradient: str = "darts"          # "darts" | "exact"
    darts_alpha: float = 0.01
    exact_step_size: float | None = None
    meta_target: str = "both"             # 1.5 meta loss: "both" | "+"
    logodds_eps: float = 1e-6
    perturb_eval_mode: bool = True        # run the two perturbed forwards without dropout
    seed: int = 0
    logging_steps: int = 10
    save_steps: int = 0
    output_dir: str | None = None

    @classmethod
    def v15(cls, **overrides: Any) -> DreamPRMConfig:
        """DreamPRM-1.5's official values (the ``"1.5"`` preset), ``overrides`` on top."""
        return cls(**bilevel_kwargs("1.5", **overrides))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DreamPRMConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown DreamPRM config keys {unknown}")
        return cls(**bilevel_kwargs("1.5" if str(d.get("variant", "v1")) == "1.5" else "v1", **d))

    def validate(self) -> None:
        if self.variant not in ("v1", "1.5"):
            raise ValueError(f"variant must be 'v1' or '1.5', got {self.variant!r}")
        if self.weighting not in ("domain", "instance_table", "instance_net", "none"):
            raise ValueError(f"unknown weighting {self.weighting!r}")
        if self.hypergradient not in ("darts", "exact"):
            raise ValueError(f"hypergradient must be 'darts' or 'exact', got {self.hypergradient!r}")
        if self.batch_size < 1 or self.meta_batch_size < 1 or self.unroll_steps < 1:
            raise ValueError("batch sizes and unroll_steps must be >= 1")
        if self.adam_impl not in ADAM_IMPLS:
            raise ValueError(f"adam_impl must be one of {ADAM_IMPLS}, got {self.adam_impl!r}")
        for kind in (self.lr_scheduler, self.meta_lr_scheduler):
            if kind not in SCHEDULES:
                raise ValueError(f"lr scheduler must be one of {SCHEDULES}, got {kind!r}")

