"""Put plugin-held reward models (PRMs, judges, encoders) where TRL puts its own reward models.

TRL prepares the reward models it is given (``reward_funcs`` entries that are ``PreTrainedModel``)
in ``GRPOTrainer.__init__``: under DeepSpeed with ``trl.models.prepare_deepspeed`` (ZeRO-3 shards
the parameters over the ranks, so a reward model larger than one GPU works; other stages run it
unsharded on the process's device), under FSDP with ``prepare_fsdp``, otherwise with
``accelerator.prepare_model(..., evaluation_mode=True)``. Models that a rewardkit plugin loads
itself, lazily inside a reward, never pass through that code: TRL does not see them. Call
:func:`prepare_reward_model` on them when they are loaded::

    from rewardkit.trl import prepare_reward_model

    def _load(self):
        model = AutoModelForTokenClassification.from_pretrained(self.path)
        self._lazy_model = prepare_reward_model(model)      # finds the running accelerator

ZeRO-3 rule: a sharded model's forward pass gathers parameters with collectives, so **every rank
must run the same number of forward passes per reward call**, even a rank whose rows are all
empty. Agree on the count first, then pad with :func:`idle_forward`::

    n = lockstep_forwards(len(my_batches))          # the max over ranks (a collective)
    for batch in my_batches: model(**batch)
    for _ in range(n - len(my_batches)): idle_forward(model, pad_id)

TRL calls every reward function once per generation batch on every rank, so a reward that does
this in each call stays in step. :func:`lockstep_forwards` is a no-op without ZeRO-3.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any


def _state_of(accelerator: Any = None, trainer: Any = None):
    if trainer is not None:
        return trainer.accelerator.state, trainer.accelerator
    if accelerator is not None:
        return accelerator.state, accelerator
    from accelerate.state import AcceleratorState, PartialState

    # process-wide singletons: the trainer's Accelerator initialised AcceleratorState; a script
    # that only asked for the process layout has a PartialState
    if AcceleratorState._shared_state:
        return AcceleratorState(), None
    if PartialState._shared_state:
        return PartialState(), None
    return None, None


def zero_stage(accelerator: Any = None, *, trainer: Any = None) -> int | None:
    """The running DeepSpeed ZeRO stage, or None when DeepSpeed is not in use."""
    state, _ = _state_of(accelerator, trainer)
    if state is None or getattr(state, "deepspeed_plugin", None) is None:
        return None
    from accelerate.utils import DistributedType

    if state.distributed_type != DistributedType.DEEPSPEED:
        return None
    return int(state.deepspeed_plugin.deepspeed_config["zero_optimization"]["stage"])


def process_device() -> str:
    """This process's device: the running accelerate state's, else the current CUDA device, else CPU.

    A model a plugin holds goes here rather than to ``"cuda"``, which is GPU 0 on every rank.
    """
    state, _ = _state_of()
    if state is not None:
        return str(state.device)
    import torch

    return f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu"


def prepare_reward_model(model: Any, accelerator: Any = None, *, trainer: Any = None):
    """Prepare a reward model held by a plugin the way TRL prepares its own reward models.

    Args:
        model: a ``PreTrainedModel`` (or any ``nn.Module``).
        accelerator / trainer: where to take the distributed setup from; by default the
            process's running accelerate state (set up by the trainer), so a reward that loads
            its model lazily needs no trainer reference.

    Returns the model to call: a DeepSpeed engine under DeepSpeed (ZeRO-3: parameters sharded;
    other stages: replicated on the process's device), an FSDP module under FSDP, otherwise the
    model itself moved to the process's device. Always in eval mode with gradients off. Without
    a running accelerator (plain scripts, the reward server) the model is returned in eval mode
    where it is.
    """
    from accelerate.utils import DistributedType

    model.eval()
    model.requires_grad_(False)
    state, acc = _state_of(accelerator, trainer)
    if state is None:
        return model
    if state.distributed_type == DistributedType.DEEPSPEED and hasattr(model, "config"):
        from trl.models import prepare_deepspeed

        # prepare_deepspeed reads only accelerator.state.deepspeed_plugin
        return prepare_deepspeed(model, acc if acc is not None else SimpleNamespace(state=state))
    if state.distributed_type == DistributedType.FSDP:
        if acc is None:
            raise ValueError("under FSDP pass the trainer or its accelerator: prepare_reward_model(model, trainer=...)")
        from trl.models import prepare_fsdp

        return prepare_fsdp(model, acc)
    return model.to(state.device)


def sharded_run() -> bool:
    """True in a ZeRO-3 run of more than one process: a sharded model's forward is a collective."""
    import torch.distributed as dist

    return zero_stage() == 3 and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_sharded(model: Any) -> bool:
    """True when ``model``'s parameters are ZeRO-3 partitioned over the ranks of this run: its
    forward passes are collectives (keep them in step with :func:`lockstep_forwards`). A model
    loaded whole (:func:`whole_model_loading`, ``prepare=False``) is not, even in a ZeRO-3 run,
    and may run in one process alone."""
    if not sharded_run():
        return False
    first = next(iter(model.parameters()), None)
    return first is not None and hasattr(first, "ds_id")


@contextmanager
def whole_model_loading() -> Iterator[None]:
    """Load models whole inside this block, even in a ZeRO-3 run.

    Once a ZeRO-3 run's training arguments exist, transformers builds every model under
    ``deepspeed.zero.Init``: a model a reward loads lazily arrives with empty, partitioned weights
    and fails in its first forward ("'weight' must be 2-D"). Models that are never handed to
    DeepSpeed (sentence encoders, small judges, frozen agent modules) are loaded in this block, and
    every rank holds a full copy. A model too large for that is loaded normally and passed through
    :func:`prepare_reward_model` (sharded, with :func:`lockstep_forwards`). A no-op outside ZeRO-3.
    """
    try:
        from transformers.integrations import deepspeed as hf_deepspeed
    except ImportError:  # pragma: no cover - transformers is a dependency
        yield
        return
    # transformers keeps the run's DeepSpeed config behind a private weak reference; the public
    # set/unset pair needs the object back (tests/test_trl_placement.py fails if this changes)
    ref = getattr(hf_deepspeed, "_hf_deepspeed_config_weak_ref", None)
    config = ref() if ref is not None else None
    if config is None or not config.is_zero3():
        yield
        return
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed.set_hf_deepspeed_config(config)


def lockstep_forwards(n_local: int) -> int:
    """The largest ``n_local`` over all ranks when a ZeRO-3 model is in use, else ``n_local``.

    A collective under ZeRO-3: every rank must call it at the same point of each reward call.
    """
    import torch
    import torch.distributed as dist

    if not sharded_run():
        return int(n_local)
    device = torch.device("cpu")
    if dist.get_backend() == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    t = torch.tensor([int(n_local)], dtype=torch.long, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def idle_forward(model: Any, pad_token_id: int = 0) -> None:
    """One throw-away forward pass on a single token (keeps a ZeRO-3 rank in step with its peers)."""
    import torch

    device = getattr(model, "device", None) or next(model.parameters()).device
    ids = torch.full((1, 1), int(pad_token_id), dtype=torch.long, device=device)
    with torch.inference_mode():
        model(input_ids=ids, attention_mask=torch.ones_like(ids))


class LaunchError(RuntimeError):
    """The processes a launcher started do not form one distributed run."""


def check_world_size(trainer_or_args: Any = None) -> int:
    """Fail loudly when a launcher started N processes but each one trains alone.

    On a machine without GPUs, ``accelerate launch`` (multi-GPU/DDP configs) and ``torchrun``
    start N processes with ``WORLD_SIZE=N``, but accelerate only joins them into one gloo group
    when the training arguments say ``use_cpu=True``; otherwise each process silently runs a
    complete single-process training of its own. Pass the trainer or its args (or nothing, to
    check the running accelerate state); returns the world size.
    """
    import os

    expected = int(os.environ.get("WORLD_SIZE", "1") or 1)
    args = getattr(trainer_or_args, "args", trainer_or_args)
    if trainer_or_args is not None and hasattr(trainer_or_args, "accelerator"):
        world = trainer_or_args.accelerator.num_processes
    elif args is not None and hasattr(args, "world_size"):
        world = int(args.world_size)
    else:
        state, _ = _state_of()
        world = 1 if state is None else state.num_processes
    if expected > 1 and world != expected:
        import torch

        hint = (" On a machine without GPUs set use_cpu=True in the GRPOConfig/RLOOConfig "
                "(TrainingArguments) so accelerate joins the processes on gloo."
                if not torch.cuda.is_available() else "")
        raise LaunchError(f"the launcher started {expected} processes (WORLD_SIZE={expected}) but this one runs "
                          f"with world size {world}: every process would train alone.{hint}")
    return world
