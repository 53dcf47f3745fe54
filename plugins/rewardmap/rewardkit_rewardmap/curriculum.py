"""RewardMap's multi-stage curriculum: the stage order, the gated drawing and the prompt sampler.

The official code orders the whole training set once — true/false, then line counting (Counting2 +
Counting3), then stop counting (Counting1), then route planning — shuffling inside each stage, and
reads it with a sequential sampler for one pass. :class:`Curriculum` holds that logic without any
trainer:

* :meth:`Curriculum.prepare_dataset` reorders the dataset stage by stage (seeded shuffles) and
  adds ``curriculum_stage`` / ``curriculum_index`` columns;
* :class:`CurriculumSampler` reads that order in TRL's ``RepeatSampler`` layout; with ``threshold``
  set, :meth:`Curriculum.record_rollout` gates advancement on each generation batch's stage metric
  and :class:`GatedCurriculumSampler` draws prompts chunk by chunk in the same layout (each prompt ``num_generations`` times in a row, chunks of
  ``generation_batch_size / num_generations`` prompts, each chunk repeated
  ``num_iterations * steps_per_generation`` times);
* :meth:`Curriculum.state_dict` / :meth:`Curriculum.load_state_dict` carry the stage position
  through checkpoints.

The trainer hook ``rewardmap.curriculum`` (:class:`rewardkit_rewardmap.hooks.CurriculumHook`) puts
it on TRL's GRPO trainer.

Beyond the paper: ``threshold`` makes advancement performance-gated (the next stage starts once the
mean of the last ``gate_window`` generation batches of the current stage reaches it, or when the
stage ran ``max_passes`` times through its data), and ``replay`` mixes that fraction of prompts from
earlier stages into later ones.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence
from typing import Any

from torch.utils.data import Sampler

from rewardkit_rewardmap.scoring import ALL_TYPES

logger = logging.getLogger(__name__)

STAGE_ORDERS: dict[str, list[list[str]]] = {
    # the active order of the official rl_dataset.py
    "official": [["TorF1", "TorF2"], ["Counting2", "Counting3"], ["Counting1"], ["planning"]],
    # the two commented-out alternatives of the official code
    "coarse": [["TorF1", "TorF2", "Counting1", "Counting2", "Counting3"], ["planning"]],
    "fine": [["TorF1"], ["TorF2"], ["Counting3"], ["Counting2"], ["Counting1"], ["planning"]],
    # no curriculum: one stage holding everything (a seeded shuffle)
    "none": [list(ALL_TYPES)],
}
STAGE_COLUMN = "curriculum_stage"
INDEX_COLUMN = "curriculum_index"


def _stage_seed(seed: int, stage: int, rep: int) -> int:
    return (seed * 1_000_003 + stage * 10_007 + rep * 101) & 0xFFFFFFFF


class Curriculum:
    """Stage-by-stage prompt order for GRPO (RewardMap §4.3), optionally performance-gated.

    Args:
        stages: ``"official"`` (TorF -> Counting2/3 -> Counting1 -> planning), ``"coarse"``,
            ``"fine"``, ``"none"``, or a list of lists of type names.
        seed: seed of the within-stage shuffles (the official shuffles are unseeded).
        type_column: the column holding the question type.
        threshold: ``None`` (default, the paper): each stage lasts as long as its data. A number:
            advance when the stage's mean ``gate_metric`` over the last ``gate_window`` generation
            batches reaches it (stages then repeat their data, reshuffled, up to ``max_passes``).
        gate_metric: ``"reward"`` (the stage's mean RewardMap reward, as the issue asks) or ``"acc"``
            (RewardMap correctness, 0..1, free of the difficulty weight and the 10-point scale).
        gate_window: generation batches averaged for the gate.
        max_passes: passes over a stage's data before a gated run advances anyway.
        replay: fraction (0 <= replay < 1) of each later stage's prompts drawn from earlier stages.
    """

    def __init__(self, *, stages: str | Sequence[Sequence[str]] = "official", seed: int = 42,
                 type_column: str = "type", threshold: float | None = None, gate_metric: str = "reward",
                 gate_window: int = 1, max_passes: int = 3, replay: float = 0.0) -> None:
        if isinstance(stages, str):
            if stages not in STAGE_ORDERS:
                raise ValueError(f"stages must be one of {sorted(STAGE_ORDERS)} or a list of type lists, got {stages!r}")
            stage_types = STAGE_ORDERS[stages]
        else:
            stage_types = [list(s) for s in stages]
        seen: dict[str, int] = {}
        for k, group in enumerate(stage_types):
            if not group:
                raise ValueError(f"stage {k} is empty")
            for t in group:
                if t in seen:
                    raise ValueError(f"type {t!r} is in stages {seen[t]} and {k}")
                seen[t] = k
        if gate_metric not in ("acc", "reward"):
            raise ValueError(f"gate_metric must be 'acc' or 'reward', got {gate_metric!r}")
        if not 0.0 <= replay < 1.0:
            raise ValueError(f"replay is a fraction in [0, 1), got {replay!r}")
        if gate_window < 1 or max_passes < 1:
            raise ValueError("gate_window and max_passes must be >= 1")
        self.stage_types = stage_types
        self.stage_of_type = seen
        self.seed = int(seed)
        self.type_column = type_column
        self.threshold = None if threshold is None else float(threshold)
        self.gate_metric = gate_metric
        self.gate_window = int(gate_window)
        self.max_passes = int(max_passes)
        self.replay = float(replay)
        # filled by prepare_dataset
        self.stage_rows: list[list[int]] = []   # gated: dataset rows of each stage
        self.stage_sizes: list[int] = []
        # progress (what state_dict saves)
        self.stage = 0                 # stage of the last generation batch (gated: the stage being drawn)
        self.rollouts = 0              # generation batches seen
        self.stage_metric: float | None = None
        self.stage_history: list[int] = []   # stage of every generation batch
        self.window: list[float] = []
        self.cursors: list[int] = []
        self.chunks_drawn = 0
        self.epoch_start_rollouts = 0
        self.epoch_chunks: list[list[int]] = []
        self.advances: list[tuple[int, int, str]] = []  # (rollout, new stage, why)
        self._resume_chunks: list[list[int]] | None = None

    @property
    def gated(self) -> bool:
        return self.threshold is not None

    @property
    def num_stages(self) -> int:
        return len(self.stage_types)

    def stage_name(self, k: int) -> str:
        return "+".join(self.stage_types[k])

    # -- the fixed order (and the stage rows a gated run draws from) -------------------------------
    def prepare_dataset(self, dataset: Any) -> Any:
        if dataset is None:
            return None
        if not hasattr(dataset, "select") or not hasattr(dataset, "add_column"):
            raise TypeError("rewardmap.curriculum orders a datasets.Dataset (map-style); got "
                            f"{type(dataset).__name__}")
        if self.type_column not in dataset.column_names:
            raise ValueError(f"rewardmap.curriculum needs a {self.type_column!r} column; columns: {dataset.column_names}")
        for col in (STAGE_COLUMN, INDEX_COLUMN):
            if col in dataset.column_names:
                dataset = dataset.remove_columns(col)
        natural: list[int] = []
        for i, t in enumerate(dataset[self.type_column]):
            if t not in self.stage_of_type:
                raise ValueError(f"row {i}: type {t!r} is in no curriculum stage {self.stage_types}")
            natural.append(self.stage_of_type[t])
        by_stage = [[i for i, s in enumerate(natural) if s == k] for k in range(self.num_stages)]
        self.stage_sizes = [len(r) for r in by_stage]
        logger.info("rewardmap.curriculum stages: %s", ", ".join(
            f"{self.stage_name(k)}={n}" for k, n in enumerate(self.stage_sizes)))
        if self.gated:
            # the sampler orders rows at run time; keep the data as is
            if not any(by_stage):
                raise ValueError("rewardmap.curriculum: the dataset is empty")
            self.stage_rows = by_stage
            self.cursors = [0] * self.num_stages
            self.stage = next(k for k, rows in enumerate(by_stage) if rows)
            dataset = dataset.add_column(STAGE_COLUMN, natural)
            return dataset.add_column(INDEX_COLUMN, list(range(len(natural))))
        order: list[int] = []
        stage_col: list[int] = []
        for k, rows in enumerate(by_stage):
            block = list(rows)
            random.Random(_stage_seed(self.seed, k, 0)).shuffle(block)
            earlier = [i for j in range(k) for i in by_stage[j]]
            if self.replay and earlier and block:
                n_replay = round(self.replay * len(block) / (1.0 - self.replay))
                rng = random.Random(_stage_seed(self.seed, k, 1))
                picks = [earlier[rng.randrange(len(earlier))] for _ in range(n_replay)]
                block = block + picks
                rng.shuffle(block)
            order += block
            stage_col += [k] * len(block)
        dataset = dataset.select(order)
        dataset = dataset.add_column(STAGE_COLUMN, stage_col)
        return dataset.add_column(INDEX_COLUMN, order)


    # -- gated drawing (called by the sampler, identically on every rank) --------------------------
    def _draw_chunk(self, size: int) -> list[int]:
        k = self.stage
        n = len(self.stage_rows[k])
        n_replay = round(self.replay * size) if (self.replay and k > 0) else 0
        own = size - n_replay
        if self._next_stage() is not None and self.cursors[k] + own > self.max_passes * n:
            self._advance(f"{self.max_passes} passes over its data")
            return self._draw_chunk(size)
        picks: list[int] = []
        while len(picks) < own:
            rep, pos = divmod(self.cursors[k], n)
            perm = list(self.stage_rows[k])
            random.Random(_stage_seed(self.seed, k, rep)).shuffle(perm)
            take = min(own - len(picks), n - pos)
            picks += perm[pos:pos + take]
            self.cursors[k] += take
        if n_replay:
            earlier = [i for j in range(k) for i in self.stage_rows[j]]
            rng = random.Random(_stage_seed(self.seed, 10_000 + self.chunks_drawn, 7))
            pool = earlier or self.stage_rows[k]
            picks += [pool[rng.randrange(len(pool))] for _ in range(n_replay)]
        self.chunks_drawn += 1
        return picks

    def _next_stage(self) -> int | None:
        for k in range(self.stage + 1, self.num_stages):
            if self.stage_rows[k]:
                return k
        return None

    def _advance(self, why: str) -> None:
        nxt = self._next_stage()
        if nxt is None:
            return
        self.stage = nxt
        self.window = []
        self.advances.append((self.rollouts, self.stage, why))
        logger.info("rewardmap.curriculum: stage %d (%s) starts after %d generation batches (%s)",
                    self.stage, self.stage_name(self.stage), self.rollouts, why)

    # -- after each generation batch: stage and gate -----------------------------------------------
    def record_rollout(self, stage: int, metric: float | None) -> None:
        """Note one training generation batch: its stage and the stage's mean gate metric (None
        when it held no RewardMap rows); a gated curriculum may advance."""
        self.rollouts += 1
        self.stage_history.append(stage)
        self.stage_metric = metric
        if self.gated:
            self._gate(stage, metric)
        else:
            self.stage = stage

    def log_values(self) -> dict[str, float]:
        """The statistics of the last generation batch: ``curriculum/stage`` (its stage),
        ``curriculum/stage_metric`` and, when gated, ``curriculum/gate_stage`` (the stage being drawn)."""
        values = {"curriculum/stage": float(self.stage_history[-1])}
        if self.stage_metric is not None:
            values["curriculum/stage_metric"] = float(self.stage_metric)
        if self.gated:
            values["curriculum/gate_stage"] = float(self.stage)
        return values

    def _gate(self, stage: int, value: float | None) -> None:
        if stage != self.stage or value is None:
            return  # a batch drawn before the last advance, or no RewardMap rows
        self.window.append(value)
        recent = self.window[-self.gate_window:]
        if len(recent) >= self.gate_window and sum(recent) / len(recent) >= self.threshold:
            self._advance(f"{self.gate_metric} {sum(recent) / len(recent):.3f} >= {self.threshold}")

    # -- checkpoints -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "rollouts": self.rollouts, "stage_metric": self.stage_metric,
                "stage_history": list(self.stage_history), "window": list(self.window),
                "cursors": list(self.cursors), "chunks_drawn": self.chunks_drawn,
                "epoch_start_rollouts": self.epoch_start_rollouts,
                "epoch_chunks": [list(c) for c in self.epoch_chunks], "advances": list(self.advances),
                "stage_types": [list(s) for s in self.stage_types], "seed": self.seed, "gated": self.gated}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("stage_types") != [list(s) for s in self.stage_types] or state.get("seed") != self.seed \
                or state.get("gated") != self.gated:
            raise ValueError("rewardmap.curriculum: the checkpoint was written with other stages, seed or gating "
                             f"({state.get('stage_types')}, seed {state.get('seed')}, gated {state.get('gated')}); "
                             "resume with the same hook parameters")
        self.stage = int(state["stage"])
        self.rollouts = int(state["rollouts"])
        self.stage_metric = state["stage_metric"]
        self.stage_history = list(state["stage_history"])
        self.window = list(state["window"])
        self.cursors = list(state["cursors"])
        self.chunks_drawn = int(state["chunks_drawn"])
        self.epoch_start_rollouts = int(state["epoch_start_rollouts"])
        self.epoch_chunks = [list(c) for c in state["epoch_chunks"]]
        self.advances = [tuple(a) for a in state["advances"]]
        # the trainer skips the batches this epoch already trained on by iterating the sampler again:
        # replay the chunks drawn this epoch (trained + prefetched) before drawing new ones
        self._resume_chunks = [list(c) for c in self.epoch_chunks]


class CurriculumSampler(Sampler):
    """TRL's ``RepeatSampler`` layout over the dataset's own order (the fixed curriculum order).

    Chunks of ``batch_size`` consecutive prompts (an incomplete last chunk is dropped); each chunk
    is emitted ``repeat_count`` times, each prompt ``mini_repeat_count`` times in a row.
    """

    def __init__(self, num_rows: int, mini_repeat_count: int, batch_size: int, repeat_count: int) -> None:
        self.mini_repeat_count = mini_repeat_count
        self.batch_size = batch_size
        self.repeat_count = repeat_count
        self.chunks_per_epoch = num_rows // batch_size

    def __len__(self) -> int:
        return self.chunks_per_epoch * self.batch_size * self.mini_repeat_count * self.repeat_count

    def chunks(self) -> Iterator[list[int]]:
        """The prompt chunks of one epoch, drawn as the trainer reads them."""
        for k in range(self.chunks_per_epoch):
            yield list(range(k * self.batch_size, (k + 1) * self.batch_size))

    def __iter__(self) -> Iterator[int]:
        for chunk in self.chunks():
            for _ in range(self.repeat_count):
                for index in chunk:
                    for _ in range(self.mini_repeat_count):
                        yield index


class GatedCurriculumSampler(CurriculumSampler):
    """The same layout over chunks a gated curriculum draws one at a time.

    One epoch is ``len(dataset) // chunk`` chunks (the length TRL's sampler would have), so the
    trainer's step arithmetic and resume skipping stay valid; the next epoch continues the
    curriculum where it stopped.
    """

    def __init__(self, curriculum: Curriculum, num_rows: int, mini_repeat_count: int, batch_size: int,
                 repeat_count: int) -> None:
        super().__init__(num_rows, mini_repeat_count, batch_size, repeat_count)
        self.curriculum = curriculum
        if self.chunks_per_epoch == 0:
            raise ValueError(f"rewardmap.curriculum: {num_rows} prompts make no full chunk of {batch_size}")

    def chunks(self) -> Iterator[list[int]]:
        cur = self.curriculum
        resume, cur._resume_chunks = cur._resume_chunks, None
        if resume is not None and cur.rollouts - cur.epoch_start_rollouts >= self.chunks_per_epoch:
            resume = None  # the checkpoint's epoch was fully trained: the trainer starts a new one
        if resume is None:
            cur.epoch_chunks = []
            cur.epoch_start_rollouts = cur.rollouts
            resume = []
        yield from resume   # replayed for the trainer to skip
        for _ in range(self.chunks_per_epoch - len(resume)):
            chunk = cur._draw_chunk(self.batch_size)
            cur.epoch_chunks.append(chunk)
            yield chunk
