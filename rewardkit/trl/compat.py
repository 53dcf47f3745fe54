"""The TRL internals rewardkit relies on, in one place: what each private method must look like, and
the metric store hooks log into. A TRL upgrade that changes any of them fails here, loudly, instead
of letting hooks misbehave silently (``tests/test_trl_build.py`` runs the check on every upgrade)."""

from __future__ import annotations

import inspect
from typing import Any


class TRLCompatError(RuntimeError):
    """The installed TRL changed a method rewardkit overrides; the hooks would silently misbehave."""


# leading parameters of the private sampler behind rewardkit.trl.generate_completions
GENERATION_PARAMS = ["self", "prompt_ids", "images", "multimodal_fields", "num_generations"]


def check_trl_compat(trainer_cls: type, *, generation: bool = False) -> None:
    """Fail loudly when the private methods rewardkit overrides changed their signature;
    ``generation=True`` also checks the sampler :func:`rewardkit.trl.generate_completions` calls."""
    expected = {
        "_generate_and_score_completions": ["self", "inputs"],
        "_get_train_sampler": ["self", "dataset"],
        "_compute_loss": ["self", "model", "inputs"],
    }
    for method, params in expected.items():
        fn = getattr(trainer_cls, method, None)
        if fn is None:
            raise TRLCompatError(f"{trainer_cls.__name__}.{method} no longer exists; rewardkit's trainer hooks "
                                 "need updating for this TRL version")
        got = list(inspect.signature(fn).parameters)
        if got != params:
            raise TRLCompatError(f"{trainer_cls.__name__}.{method} now takes {got}, rewardkit expects {params}; "
                                 "update rewardkit/trl/ for this TRL version")
    if generation:
        fn = getattr(trainer_cls, "_generate_single_turn", None)
        got = [] if fn is None else list(inspect.signature(fn).parameters)
        if got[:len(GENERATION_PARAMS)] != GENERATION_PARAMS:
            raise TRLCompatError(f"{trainer_cls.__name__}._generate_single_turn is missing or now takes {got}, "
                                 f"rewardkit expects {GENERATION_PARAMS} first; update rewardkit/trl/generation.py")


def trainer_metric_store(trainer: Any) -> Any:
    """The per-mode metric lists TRL averages into each log line (``trainer._metrics[mode]``): the
    one place rewardkit touches them, so a TRL change breaks here with a clear message."""
    metrics = getattr(trainer, "_metrics", None)
    if not isinstance(metrics, dict) or not {"train", "eval"} <= set(metrics):
        raise TRLCompatError(f"{type(trainer).__name__}._metrics is no longer a {{'train': ..., 'eval': ...}} dict; "
                             "update rewardkit/trl/compat.py (trainer_metric_store) for this TRL version")
    return metrics["train" if getattr(trainer.model, "training", True) else "eval"]
