"""TrainerHook: the interface a plugin implements to change how a TRL trainer learns."""

from __future__ import annotations

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

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
