"""Attach rewardkit trainer hooks to a TRL trainer with the fewest private overrides.

Overridden TRL/transformers internals (each checked by :func:`check_trl_compat`, which
``build_trainer`` runs and a test runs on every TRL upgrade):

* ``_generate_and_score_completions(inputs) -> dict`` — hooks see the scored batch and may
  replace ``advantages`` (TRL's ``_compute_loss`` accepts ``(B, T)`` advantages from subclasses);
* ``_get_train_sampler(dataset)`` — hooks may reorder prompts (curricula).

Called (not overridden), checked with ``check_trl_compat(cls, generation=True)``:

* ``GRPOTrainer._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations, ...)``
  — :func:`rewardkit.trl.generate_completions` samples through it (see :mod:`rewardkit.trl.generation`).

Hook state goes into ``<checkpoint>/rewardkit_hooks.json`` (+ ``rewardkit_hooks.tensors.pt``, read
with ``weights_only=True``; see :mod:`rewardkit.trl.hook_state`) through a public
``TrainerCallback`` (``on_save``) and is read back in ``train(resume_from_checkpoint=...)``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from transformers import TrainerCallback

from rewardkit.trl.compat import TRLCompatError, check_trl_compat
from rewardkit.trl.hook_state import HOOK_STATE_FILE, HookStateError, read_hook_state, save_hook_state
from rewardkit.trl.hooks import TrainerHook

__all__ = ["HOOK_STATE_FILE", "HookStateError", "TRLCompatError", "build_trainer", "check_trl_compat",
           "hooked_class", "load_hook_state", "read_hook_state", "resolve_hooks"]


class _HookStateCallback(TrainerCallback):
    def __init__(self, hooks: Sequence[TrainerHook]) -> None:
        self.hooks = hooks

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            ckpt = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            save_hook_state({h.name: h.state_dict() for h in self.hooks}, ckpt)
        return control


def load_hook_state(hooks: Sequence[TrainerHook], checkpoint: str) -> bool:
    """Restore hook state from a checkpoint directory; False when it holds none.

    Nothing in the checkpoint is unpickled beyond tensors: a crafted file raises
    :class:`HookStateError` instead of running code."""
    saved = read_hook_state(checkpoint)
    if saved is None:
        return False
    missing = [h.name for h in hooks if h.name not in saved]
    if missing:
        raise KeyError(f"checkpoint {checkpoint} holds no state for hooks {missing} (saved: {sorted(saved)})")
    for h in hooks:
        h.load_state_dict(saved[h.name])
    return True


class _HookedTrainerMixin:
    rewardkit_hooks: list[TrainerHook]

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        for hook in self.rewardkit_hooks:
            output = hook.after_rollout(self, inputs, output)
        return output

    def _get_train_sampler(self, dataset=None):
        sampler = super()._get_train_sampler(dataset)
        for hook in self.rewardkit_hooks:
            replacement = hook.train_sampler(self, dataset if dataset is not None else self.train_dataset, sampler)
            if replacement is not None:
                sampler = replacement
        return sampler

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        if resume_from_checkpoint:
            checkpoint = resume_from_checkpoint
            if checkpoint is True:
                from transformers.trainer_utils import get_last_checkpoint

                checkpoint = get_last_checkpoint(self.args.output_dir)
                if checkpoint is None:
                    raise ValueError(f"no checkpoint found in {self.args.output_dir} to resume from")
            load_hook_state(self.rewardkit_hooks, checkpoint)
        return super().train(resume_from_checkpoint, *args, **kwargs)


_SUBCLASSES: dict[type, type] = {}


def hooked_class(trainer_cls: type) -> type:
    """The subclass of ``trainer_cls`` that runs rewardkit hooks (one per TRL class, picklable)."""
    if trainer_cls not in _SUBCLASSES:
        check_trl_compat(trainer_cls)
        _SUBCLASSES[trainer_cls] = type(f"Hooked{trainer_cls.__name__}", (_HookedTrainerMixin, trainer_cls),
                                        {"__module__": __name__})
    return _SUBCLASSES[trainer_cls]


def resolve_hooks(hooks: Sequence[TrainerHook | str | dict[str, Any]]) -> list[TrainerHook]:
    """Hooks given as objects, registered names, or ``{"name": ..., **params}`` dicts."""
    from rewardkit.plugins import get_hook

    out: list[TrainerHook] = []
    for h in hooks:
        if isinstance(h, TrainerHook):
            out.append(h)
        elif isinstance(h, str):
            out.append(get_hook(h))
        elif isinstance(h, dict):
            params = dict(h)
            out.append(get_hook(params.pop("name"), **params))
        else:
            raise TypeError(f"a hook is a TrainerHook, a registered name or a dict with 'name'; got {h!r}")
    names = [h.name for h in out]
    if len(set(names)) != len(names):
        raise ValueError(f"hook names must be unique (their checkpoint state is keyed by name): {names}")
    return out


def build_trainer(trainer_cls: type, hooks: Sequence[TrainerHook | str | dict[str, Any]] = (), **trainer_kwargs: Any):
    """Build ``trainer_cls(**trainer_kwargs)`` with rewardkit ``hooks`` attached.

    ``trainer_cls`` is ``trl.GRPOTrainer`` or ``trl.RLOOTrainer`` (or a subclass). With no hooks the
    plain class is returned unchanged, so composing rewards costs nothing. Either way a launch whose
    processes would each train alone (``use_cpu`` unset on a CPU-only machine) raises ``LaunchError``.
    """
    from rewardkit.trl.placement import check_world_size

    resolved = resolve_hooks(hooks)
    if not resolved:
        trainer = trainer_cls(**trainer_kwargs)
        check_world_size(trainer)  # N launched processes that each train alone fail here, loudly
        return trainer
    dataset = trainer_kwargs.get("train_dataset")
    for hook in resolved:
        dataset = hook.prepare_dataset(dataset)
    trainer_kwargs["train_dataset"] = dataset
    callbacks = list(trainer_kwargs.pop("callbacks", None) or [])
    for hook in resolved:
        callbacks.extend(hook.callbacks())
    callbacks.append(_HookStateCallback(resolved))
    cls = hooked_class(trainer_cls)
    # hooks must exist before TRL's __init__ builds anything that may call back into them
    trainer = cls.__new__(cls)
    trainer.rewardkit_hooks = resolved
    cls.__init__(trainer, callbacks=callbacks, **trainer_kwargs)
    check_world_size(trainer)
    for hook in resolved:
        hook.setup(trainer)
    return trainer
