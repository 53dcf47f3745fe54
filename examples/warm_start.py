"""A short supervised warm start with TRL's SFTTrainer: a tiny random model writes nothing a reward
can tell apart until it has seen a few answers in the expected format."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def sft_warm_start(model: str, dataset: Any, output_dir: str | Path, *, steps: int = 40, learning_rate: float = 3e-3,
                   batch_size: int = 16, seed: int = 0, use_cpu: bool = False, state: Any = None) -> str:
    """Fine-tune ``model`` for ``steps`` steps on a prompt/completion ``dataset`` and save it to
    ``output_dir``; returns that path. ``state`` is the accelerate ``PartialState`` of a launched run."""
    from trl import SFTConfig, SFTTrainer

    from rewardkit.trl import release_trainer

    is_main = state is None or state.is_main_process
    args = SFTConfig(output_dir=str(output_dir), use_cpu=use_cpu, max_steps=steps, learning_rate=learning_rate,
                     per_device_train_batch_size=batch_size, logging_steps=10, save_strategy="no", report_to="none",
                     bf16=False, seed=seed, gradient_checkpointing=False, disable_tqdm=not is_main)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset)
    trainer.train()
    trainer.save_model(str(output_dir))
    release_trainer(trainer)
    if state is not None:
        state.wait_for_everyone()
    return str(output_dir)
