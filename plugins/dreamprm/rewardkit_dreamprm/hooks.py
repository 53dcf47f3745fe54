"""``dreamprm.bilevel``: keep a DreamPRM reward model learning, bi-level, while a policy trains.

The hook owns a :class:`~rewardkit_dreamprm.trainer.DreamPRMTrainer`. Every ``every`` policy steps it
runs ``steps_per_phase`` lower steps (with an upper step every ``unroll_steps``) on the PRM that the
``dreamprm.prm`` reward in the same trainer scores with, so the policy is rewarded by the
reweighted PRM as it improves. The meta set is a file, or (``meta_from_rollouts=True``) the policy's
own recent rollouts graded by ``math.accuracy`` against the ``gold_column`` - full chains with a final
correctness, exactly the meta data DreamPRM wants. Domain weights are logged every policy step
(``dreamprm/weight/<domain>``, averaged over the logging interval like every trainer metric), the
phase's losses as ``dreamprm/lower_loss``, ``dreamprm/meta_loss`` and ``dreamprm/hypergrad_norm``;
the weights, the PRM and its optimizer are saved in trainer checkpoints and restored on resume.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from rewardkit.trl import TrainerHook
from rewardkit_dreamprm.config import DreamPRMConfig
from rewardkit_dreamprm.rewards import DreamPRMReward, load_prm
from rewardkit_dreamprm.steps import make_chain
from rewardkit_dreamprm.trainer import DreamPRMTrainer, MetaExample


class _PhaseCallback(TrainerCallback):
    def __init__(self, hook: BilevelHook) -> None:
        self.hook = hook

    def on_step_end(self, args, state, control, **kwargs):
        self.hook.policy_step_end(state.global_step)
        return control


class BilevelHook(TrainerHook):
    """Bi-level DreamPRM training of the reward model inside a GRPO/RLOO run (see module docstring)."""

    name = "dreamprm.bilevel"

    def __init__(self, prm: Any = None, *, train_data: Any = None, train_format: str = "generic",
                 meta_data: Any = None, meta_format: str = "generic", meta_from_rollouts: bool = False,
                 meta_buffer: int = 256, gold_column: str = "solution", split: str = "heuristic",
                 every: int = 1, steps_per_phase: int = 5, config: dict[str, Any] | DreamPRMConfig | None = None,
                 variant: str | None = None, reward_name: str = "dreamprm.prm") -> None:
        from rewardkit_dreamprm import data as D

        if train_data is None:
            raise ValueError("dreamprm.bilevel needs train_data (step-labelled samples with domains)")
        if meta_data is None and not meta_from_rollouts:
            raise ValueError("dreamprm.bilevel needs meta_data or meta_from_rollouts=True")
        self.prm_ref = prm
        self.variant = variant
        cfg = config if isinstance(config, DreamPRMConfig) else DreamPRMConfig.from_dict(dict(config or {}))
        self.config = cfg
        loaders = {"generic": lambda p: D.load_generic(p, per_prefix=cfg.variant == "v1"),
                   "v1": D.load_v1_train, "1.5": D.load_v15_train}
        meta_loaders = {"generic": D.load_meta_generic, "v1": D.load_v1_meta, "1.5": D.load_v15_meta}
        self.train_examples = loaders[train_format](train_data) if not isinstance(train_data, list) else train_data
        self.meta_examples = [] if meta_data is None else (
            meta_loaders[meta_format](meta_data) if not isinstance(meta_data, list) else meta_data)
        self.meta_from_rollouts = meta_from_rollouts
        self.meta_buffer = meta_buffer
        self.gold_column = gold_column
        self.split = split
        self.every = max(1, int(every))
        self.steps_per_phase = int(steps_per_phase)
        self.reward_name = reward_name
        self.bilevel: DreamPRMTrainer | None = None
        self._trainer: Any = None  # the policy trainer, whose logs get the phase statistics
        self._pending_state: dict[str, Any] | None = None
        self._grader = None

    def setup(self, trainer: Any) -> None:
        rewards = self.find_rewards(trainer, DreamPRMReward)
        if len(rewards) > 1:  # several DreamPRM rewards: train the one named reward_name
            rewards = self.find_rewards(trainer, DreamPRMReward, names=[self.reward_name])
        if rewards:
            prm = rewards[0].scorer.prm
        else:
            if self.prm_ref is None:
                raise ValueError(f"no {self.reward_name!r} reward in the trainer and no prm= given")
            prm = load_prm(self.prm_ref, variant=self.variant)
        prm.to(trainer.accelerator.device)
        # the PRM trains on this process only; the policy's accelerator is not shared with it
        from accelerate import Accelerator

        self.bilevel = DreamPRMTrainer(prm, self.train_examples, self.meta_examples, self.config,
                                       accelerator=Accelerator(cpu=prm.device.type == "cpu"))
        self._trainer = trainer
        if self._pending_state is not None:
            self.load_state_dict(self._pending_state)
            self._pending_state = None

    def callbacks(self):
        return [_PhaseCallback(self)]

    def after_rollout(self, trainer, inputs, output):
        if not self.meta_from_rollouts or self.bilevel is None:
            return output
        if self._grader is None:
            from rewardkit import get_reward

            self._grader = get_reward("math.accuracy", gold_column=self.gold_column, on_error="none")
        from rewardkit.prm import prompt_text

        tok = trainer.processing_class
        texts = tok.batch_decode(output["completion_ids"], skip_special_tokens=True)
        prompts = [prompt_text(x["prompt"]) for x in inputs]
        golds = [x.get(self.gold_column) for x in inputs]
        vals = self._grader(prompts=prompts, completions=texts, **{self.gold_column: golds})
        metas = []
        for p, t, v in zip(prompts, texts, vals):
            if v is None:
                continue
            chain = make_chain(p, t, self.split)
            if len(chain):
                metas.append(MetaExample(chain, bool(v > 0.5)))
        if metas:
            self.bilevel.add_meta(metas, max_size=self.meta_buffer)
        return output

    def policy_step_end(self, step: int) -> None:
        """After every policy step: a bi-level phase every ``every`` steps, then the logs."""
        if self.bilevel is None:
            return
        stats = self.run_phase() if step % self.every == 0 else {}
        stats.update({f"dreamprm/weight/{d}": w for d, w in self.bilevel.weight_table().items()})
        self.log_metrics(self._trainer, stats)

    def run_phase(self) -> dict[str, float]:
        """``steps_per_phase`` lower steps (with the upper steps they are due); returns the phase's
        mean losses (``dreamprm/lower_loss``, and ``dreamprm/meta_loss``, ``dreamprm/hypergrad_norm``
        when an upper step ran) for the policy trainer's logs."""
        if self.bilevel is None:
            return {}
        target = self.bilevel.global_step + self.steps_per_phase
        if self.bilevel.meta_cursor is None and self.config.weighting != "none":
            # no meta data yet (rollout meta not collected): lower steps only
            losses = []
            while self.bilevel.global_step < target:
                batch = [self.bilevel.train_data[i] for i in self.bilevel.train_cursor.next()]
                losses.append(self.bilevel.lower_step(batch))
                self.bilevel.global_step += 1
            return {"dreamprm/lower_loss": sum(losses) / len(losses)} if losses else {}
        seen = len(self.bilevel.history)
        self.bilevel.train(max_steps=target)
        self.bilevel.prm.eval()
        records = self.bilevel.history[seen:]
        stats = {}
        for key in ("lower_loss", "meta_loss", "hypergrad_norm"):
            values = [r[key] for r in records if key in r]
            if values:
                stats[f"dreamprm/{key}"] = sum(values) / len(values)
        return stats

    def state_dict(self) -> dict[str, Any]:
        if self.bilevel is None:
            return {}
        return {"bilevel": self.bilevel.state_dict(),
                "prm": {k: v.detach().cpu() for k, v in self.bilevel.prm.state_dict().items()},
                "optimizer": self.bilevel.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        if self.bilevel is None:
            self._pending_state = state
            return
        self.bilevel.prm.load_state_dict(state["prm"])
        self.bilevel.optimizer.load_state_dict(state["optimizer"])
        self.bilevel.load_state_dict(state["bilevel"])


