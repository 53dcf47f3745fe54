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


def warm_start_as_asked(model: str, dataset: Any, args: Any, training_args: Any, *, tiny: bool, tiny_steps: int,
                        state: Any = None) -> str:
    """The warm start an example's arguments ask for: ``args.warmstart_steps`` SFT steps (None:
    ``tiny_steps`` on the tiny model, none on a real one) at ``args.warmstart_learning_rate`` and
    ``args.warmstart_batch_size``, saved under ``<output_dir>/warmstart``. Returns the model to train
    next: the warm-started one, or ``model`` itself when no step runs."""
    steps = args.warmstart_steps if args.warmstart_steps is not None else (tiny_steps if tiny else 0)
    if steps <= 0:
        return model
    return sft_warm_start(model, dataset, Path(training_args.output_dir) / "warmstart", steps=steps,
                          learning_rate=args.warmstart_learning_rate, batch_size=args.warmstart_batch_size,
                          seed=training_args.seed, use_cpu=training_args.use_cpu, state=state)
