"""What a script launched with ``accelerate launch`` needs around its trainer: defaults that fit the
machine, the process group, and a clean end."""

from __future__ import annotations

from typing import Any


def machine_defaults() -> dict[str, Any]:
    """``TrainingArguments`` defaults that fit this machine: on a machine without a GPU, ``use_cpu``
    (accelerate joins the launched processes into one gloo group only when told) and no bf16.

    Give them to the parser before it reads the config, so a YAML file or a flag still wins:
    ``parser.set_defaults(**machine_defaults())``.
    """
    import torch

    if torch.cuda.is_available():
        return {"use_cpu": False, "bf16": torch.cuda.is_bf16_supported()}
    return {"use_cpu": True, "bf16": False}


def launch_state(use_cpu: bool | None = None) -> Any:
    """The accelerate ``PartialState`` of a launched script (created on the CPU when ``use_cpu``;
    None: when no GPU is present). Pass the same ``use_cpu`` to every TrainingArguments of the run."""
    import torch
    from accelerate import PartialState

    if use_cpu is None:
        use_cpu = not torch.cuda.is_available()
    return PartialState(cpu=use_cpu)


def release_trainer(trainer: Any) -> None:
    """Let go of a finished trainer's Accelerator so that another trainer can start in this process
    (a warm start before GRPO, a PRM trained before the policy): under DeepSpeed accelerate allows
    one configured Accelerator per process, and the next trainer's arguments may have been built
    (and their devices set up) before this one ran. The process group stays up."""
    from accelerate.state import AcceleratorState

    trainer.accelerator.free_memory()
    AcceleratorState._reset_state(reset_partial_state=False)


def end_run(state: Any) -> None:
    """Wait for every rank, then close the process group: the clean end of a launched run.

    ``state`` is the ``PartialState`` or the trainer's ``Accelerator``. It makes a rank's exit
    independent of its peers' progress, but it does not rule out the rare gloo DDP teardown abort
    ("terminate called without an active exception") described in docs/distributed.md.
    """
    state = getattr(state, "state", state)  # an Accelerator keeps its AcceleratorState there
    state.wait_for_everyone()
    state.destroy_process_group()
