"""TrainerHook: the interface a plugin implements to change how a TRL trainer learns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch.utils.data import Sampler
    from transformers import TrainerCallback


class TrainerHook:
    """Base class for trainer hooks; override only what the method needs.

    Call order, for a trainer built with :func:`rewardkit.trl.build_trainer`:

    1. :meth:`prepare_dataset` on the train dataset, before the trainer exists;
    2. :meth:`setup` once the trainer exists (find its rewards, remember the world size, ...);
    3. :meth:`callbacks` are added to the trainer (TRL's public ``TrainerCallback`` surface);
    4. :meth:`train_sampler` may replace the prompt sampler (curricula);
    5. :meth:`after_rollout` sees every generation batch after TRL scored it and may replace
       ``output["advantages"]`` with a ``(B,)`` or ``(B, T)`` tensor aligned with
       ``output["completion_ids"]`` (rows are this process's local rows);
    6. :meth:`state_dict` is saved into each checkpoint and :meth:`load_state_dict` restores it when
       training resumes from that checkpoint.
    """

    name: str = ""

    def prepare_dataset(self, dataset: Any) -> Any:
        return dataset

    def setup(self, trainer: Any) -> None:
        """Called once after the trainer is constructed."""

    def callbacks(self) -> list[TrainerCallback]:
        return []

    def train_sampler(self, trainer: Any, dataset: Any, default: Sampler) -> Sampler | None:
        """Return a sampler to use instead of TRL's ``default`` one, or None to keep it."""
        return None

    def after_rollout(self, trainer: Any, inputs: list[dict[str, Any]], output: dict[str, Any]) -> dict[str, Any]:
        return output

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    # -- helpers every hook shares ----------------------------------------------------------------
    def find_rewards(self, trainer: Any, kind: type | tuple[type, ...] = object, *,
                     names: Sequence[str] | None = None, count: int | None = None) -> list[Any]:
        """The trainer's reward functions that are instances of ``kind``, in ``reward_funcs`` order.

        ``names`` keeps only those rewards, in that order (a name not found is an error listing the
        candidates); ``count`` demands exactly that many. Errors name this hook, so a user sees
        which hook wanted which reward.
        """
        funcs = list(getattr(trainer, "reward_funcs", None) or [])
        found = [f for f in funcs if isinstance(f, kind)]
        what = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        if names is not None:
            by_name = {getattr(f, "__name__", ""): f for f in found}
            missing = [n for n in names if n not in by_name]
            if missing:
                raise ValueError(f"{self.name or type(self).__name__}: no {what} reward named {missing} among the "
                                 f"trainer's reward_funcs (candidates: {sorted(by_name)})")
            found = [by_name[n] for n in names]
        if count is not None and len(found) != count:
            listed = [getattr(f, "__name__", type(f).__name__) for f in funcs]
            raise ValueError(f"{self.name or type(self).__name__} needs exactly {count} {what} reward(s) among the "
                             f"trainer's reward_funcs, found {len(found)} in {listed}")
        return found

    @staticmethod
    def reward_weight(trainer: Any, reward: Any) -> float:
        """The weight the trainer gives ``reward`` (1.0 when it keeps no weights)."""
        funcs = list(getattr(trainer, "reward_funcs", None) or [])
        weights = getattr(trainer, "reward_weights", None)
        index = next(i for i, f in enumerate(funcs) if f is reward)
        return 1.0 if weights is None else float(weights[index])

    @staticmethod
    def log_metrics(trainer: Any, values: dict[str, float]) -> None:
        """Log this step's statistics with the trainer's own metrics: averaged over the logging
        interval and written with ``loss`` and ``reward`` (``trainer.state.log_history``, every
        ``report_to`` logger), under the train or eval mode the model is in."""
        from rewardkit.trl.compat import trainer_metric_store

        store = trainer_metric_store(trainer)
        for key, value in values.items():
            store[key].append(float(value))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
