"""DreamPRM's bi-level optimisation, written directly in PyTorch (no Betty).

Lower level (the PRM φ): each step takes a batch of labelled samples, computes one loss per sample,
multiplies it by that sample's weight and averages over the batch (correct at any batch size; the
official code only works at batch size 1), then steps AdamW.

Upper level (the weights α), every ``unroll_steps`` lower steps: one meta batch of full chains with
final correctness, ``L_meta`` = MSE of the aggregated chain score against correctness, and the
hypergradient of ``L_meta`` with respect to α through the lower problem:

* ``hypergradient="darts"`` (Betty's ``type="darts"``, the official setting): ``v = ∇_φ L_meta(φ)``,
  ``ε = darts_alpha / ‖v‖``, ``g± = ∇_α L_tr(φ ± εv, α)`` on the **last lower batch**, and
  ``(g₋ − g₊) / 2ε`` ≈ ``−∇²_{αφ} L_tr · v`` (no lower-lr factor, identity inverse Hessian).
* ``hypergradient="exact"``: autograd through one virtual SGD lower step
  ``φ' = φ − ξ ∇_φ L_tr(φ, α)`` on the same batch, ``∇_α L_meta(φ') / ξ`` (ξ = ``exact_step_size``,
  default the lower lr). Same quantity as DARTS as ξ → 0; needs double backward, so small models only.

The hypergradient goes into α's own AdamW. Under data parallelism (DDP or DeepSpeed ZeRO-1/2) the
meta gradient ``v`` and the hypergradient are averaged over ranks, and every rank perturbs its own
full copy of φ; ZeRO-3 (partitioned parameters) is refused.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from rewardkit.trl import load_state, save_state
from rewardkit_dreamprm.config import DreamPRMConfig
from rewardkit_dreamprm.models import StepOutputs, _PRMBase
from rewardkit_dreamprm.objectives import lower_losses, meta_losses
from rewardkit_dreamprm.optim import make_adamw, make_scheduler
from rewardkit_dreamprm.steps import Chain
from rewardkit_dreamprm.weights import DomainWeights, InstanceNet, InstanceTable, UniformWeights

# the trainer state beside accelerate's: JSON + a tensors-only file (rewardkit.trl.save_state), never a pickle
STATE_FILE, STATE_TENSORS_FILE = "dreamprm_state.json", "dreamprm_state.pt"


@dataclass
class LowerExample:
    """One lower-level sample: a chain, a soft label per step (None = not labelled), its domain."""

    chain: Chain
    labels: list[float | None]
    domain: str = "default"
    id: str = ""

    def __post_init__(self) -> None:
        if len(self.labels) != len(self.chain):
            raise ValueError(f"sample {self.id!r}: {len(self.labels)} labels for {len(self.chain)} steps")
        if not any(y is not None for y in self.labels):
            raise ValueError(f"sample {self.id!r} has no labelled step")
        for y in self.labels:
            if y is not None and not (0.0 <= float(y) <= 1.0):
                raise ValueError(f"sample {self.id!r}: step label {y} is outside [0, 1]")

    @property
    def labelled(self) -> list[int]:
        return [i for i, y in enumerate(self.labels) if y is not None]


@dataclass
class MetaExample:
    """One upper-level sample: a full chain and whether its final answer is correct."""

    chain: Chain
    correct: bool
    id: str = ""


def level_optimizer(params: Sequence[torch.Tensor], config: DreamPRMConfig, level: str):
    """(optimizer, lr scheduler) of one level, as the official code builds them: ``"lower"`` (the PRM:
    ``lr``, ``weight_decay``, ``lr_scheduler``) or ``"meta"`` (the weights: ``meta_lr``,
    ``meta_weight_decay``, ``meta_lr_scheduler``); both AdamW with ``adam_eps`` / ``adam_impl``, both
    schedules over ``max_steps`` (the official meta schedule counts upper steps against the lower horizon)."""
    c = config
    if level == "lower":
        lr, wd, kind = c.lr, c.weight_decay, c.lr_scheduler
    elif level == "meta":
        lr, wd, kind = c.meta_lr, c.meta_weight_decay, c.meta_lr_scheduler
    else:
        raise ValueError(f"level must be 'lower' or 'meta', got {level!r}")
    opt = make_adamw(params, lr=lr, eps=c.adam_eps, weight_decay=wd, impl=c.adam_impl)
    return opt, make_scheduler(opt, kind, total=c.max_steps, warmup_ratio=c.warmup_ratio, step_size=c.step_size,
                               gamma=c.gamma)


class _Cursor:
    """Epoch-wise shuffled, rank-sharded batches that resume exactly from a position."""

    def __init__(self, n: int, batch: int, seed: int, rank: int = 0, world: int = 1) -> None:
        if n == 0:
            raise ValueError("empty dataset")
        self.n, self.batch, self.seed, self.rank, self.world = n, batch, seed, rank, world
        self.pos = 0  # global batches consumed
        self._perm_epoch, self._perm = -1, None

    def _order(self, epoch: int) -> list[int]:
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(self.n, generator=g).tolist()
            self._perm_epoch = epoch
        return self._perm

    def next(self) -> list[int]:
        g = self.batch * self.world
        start = self.pos * g
        out = []
        for k in range(start + self.rank * self.batch, start + (self.rank + 1) * self.batch):
            epoch, i = divmod(k, self.n)
            out.append(self._order(epoch)[i])
        self.pos += 1
        return out


def _rank_world(accelerator: Any) -> tuple[int, int]:
    """(rank, world size): from torch.distributed when it is up (accelerate reports 1 process for
    DeepSpeed on CPU before ``prepare``), else the launcher's environment, else the accelerator."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if "WORLD_SIZE" in os.environ:
        return int(os.environ.get("RANK", 0)), int(os.environ["WORLD_SIZE"])
    return accelerator.process_index, accelerator.num_processes


def _flatten(ts: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in ts])


class DreamPRMTrainer:
    """Bi-level DreamPRM training of ``prm`` on ``train`` (lower) with ``meta`` (upper).

    ``accelerator``: an :class:`accelerate.Accelerator` (DDP or DeepSpeed ZeRO-1/2); by default a
    plain one. ``callbacks``: functions ``f(record: dict)`` called with every logged record.
    """

    def __init__(self, prm: _PRMBase, train: Sequence[LowerExample], meta: Sequence[MetaExample] | None,
                 config: DreamPRMConfig | None = None, *, accelerator: Any = None,
                 callbacks: Sequence[Callable[[dict[str, Any]], None]] = ()) -> None:
        self.config = config or DreamPRMConfig()
        self.config.validate()
        if prm.variant != self.config.variant:
            raise ValueError(f"config.variant={self.config.variant!r} but the PRM is {prm.variant!r}")
        self.train_data = list(train)
        self.meta_data = list(meta or [])
        if self.config.weighting != "none" and meta is None:
            raise ValueError("bi-level training needs a meta set (or weighting='none' for the baseline)")
        self.callbacks = list(callbacks)
        torch.manual_seed(self.config.seed)
        if accelerator is None:
            from accelerate import Accelerator

            accelerator = Accelerator(cpu=not torch.cuda.is_available())
        self.accelerator = accelerator
        self.prm = prm
        self.weights = self._build_weights()
        self._check_zero3()
        self.optimizer, self.scheduler = level_optimizer([p for p in prm.parameters() if p.requires_grad],
                                                         self.config, "lower")
        ds = self._deepspeed_config()
        if ds is not None:
            ds["train_micro_batch_size_per_gpu"] = self.config.batch_size
            ds["gradient_accumulation_steps"] = 1
            ds["train_batch_size"] = self.config.batch_size * _rank_world(accelerator)[1]
        self.model, self.optimizer = accelerator.prepare(prm, self.optimizer)
        self.weights.to(accelerator.device)
        params = list(self.weights.parameters())
        # the official upper problem has its own scheduler, stepped once per upper step
        self.meta_optimizer, self.meta_scheduler = (level_optimizer(params, self.config, "meta") if params
                                                    else (None, None))
        rank, world = _rank_world(accelerator)
        self.train_cursor = _Cursor(len(self.train_data), self.config.batch_size, self.config.seed, rank, world)
        self._rank_world = (rank, world)
        self.meta_cursor = self._make_meta_cursor() if self.meta_data else None
        self.global_step = 0
        self.upper_step_count = 0
        self.history: list[dict[str, Any]] = []
        self._last_batch: list[LowerExample] | None = None
        self._last_enc: dict[str, Any] | None = None
        self._lower_losses: list[float] = []
        self.timings: dict[str, list[float]] = {"lower": [], "upper": []}

    # -- construction -------------------------------------------------------------------------------
    def _make_meta_cursor(self) -> _Cursor:
        return _Cursor(len(self.meta_data), self.config.meta_batch_size, self.config.seed + 1, *self._rank_world)

    def add_meta(self, examples: Sequence[MetaExample], max_size: int | None = None) -> None:
        """Grow (or refresh, keeping the newest ``max_size``) the meta set, e.g. from policy rollouts."""
        pos = self.meta_cursor.pos if self.meta_cursor is not None else 0
        self.meta_data.extend(examples)
        if max_size is not None and len(self.meta_data) > max_size:
            self.meta_data = self.meta_data[-max_size:]
        if self.meta_data:
            self.meta_cursor = self._make_meta_cursor()
            self.meta_cursor.pos = pos

    def _build_weights(self) -> nn.Module:
        c = self.config
        domains = sorted({e.domain for e in self.train_data})
        if c.weighting == "domain":
            return DomainWeights(domains)
        if c.weighting == "instance_table":
            ids = [e.id or str(k) for k, e in enumerate(self.train_data)]
            return InstanceTable(ids, activation=c.instance_activation)
        if c.weighting == "instance_net":
            return InstanceNet(hidden=c.instance_net_hidden)
        return UniformWeights(domains)

    def _deepspeed_config(self) -> dict[str, Any] | None:
        plugin = getattr(self.accelerator.state, "deepspeed_plugin", None)
        return None if plugin is None else plugin.deepspeed_config

    def _check_zero3(self) -> None:
        ds = self._deepspeed_config()
        if ds is not None and int(ds.get("zero_optimization", {}).get("stage", 0)) >= 3:
            raise NotImplementedError(
                "DreamPRM's hypergradient perturbs the full PRM parameters on every rank; ZeRO-3 partitions "
                "them. Use ZeRO-1/2 (parameters replicated) or DDP.")

    # -- helpers ------------------------------------------------------------------------------------
    @property
    def is_main_process(self) -> bool:
        return self._rank_world[0] == 0

    @property
    def trainable(self) -> list[nn.Parameter]:
        return [p for p in self.prm.parameters() if p.requires_grad]

    def _reduce_mean(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        world = self._rank_world[1]
        if world == 1:
            return tensors
        import torch.distributed as dist

        flat = _flatten(tensors).contiguous()
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat = flat / world
        out, k = [], 0
        for t in tensors:
            out.append(flat[k:k + t.numel()].view_as(t))
            k += t.numel()
        return out

    def encode_lower(self, batch: Sequence[LowerExample]) -> dict[str, Any]:
        return self.prm.encode([e.chain for e in batch], steps=[e.labelled for e in batch],
                               labels=[[0.0 if y is None else float(y) for y in e.labels] for e in batch])

    def weighted_lower_loss(self, batch: Sequence[LowerExample], out: StepOutputs, labels: torch.Tensor,
                            *, detach_features: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mean_j w_j ℓ_j, per-sample ℓ, w): the weighted lower loss of one batch."""
        losses = lower_losses(out, labels, len(batch))
        feats = out.features()
        if detach_features:
            feats = feats.detach()
        owners = torch.tensor(out.owner, device=feats.device)
        w = self.weights([e.domain for e in batch], [e.id for e in batch], feats, owners).to(losses.device)
        return (w * losses).mean(), losses, w

    # -- lower level --------------------------------------------------------------------------------
    def lower_step(self, batch: Sequence[LowerExample]) -> float:
        t0 = time.perf_counter()
        self.model.train()
        enc = self.encode_lower(batch)
        out = self.prm.outputs(enc, forward=self.model)
        detach = self.config.weighting != "instance_net" or self.config.instance_net_detach
        loss, _, _ = self.weighted_lower_loss(batch, out, enc["labels"], detach_features=detach)
        self.accelerator.backward(loss)
        if self.config.max_grad_norm:
            self.accelerator.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        for p in self.weights.parameters():  # an instance net's weights got gradients from the lower loss
            p.grad = None
        self._last_batch, self._last_enc = list(batch), enc
        self.timings["lower"].append(time.perf_counter() - t0)
        return float(loss.detach())

    # -- upper level --------------------------------------------------------------------------------
    def meta_loss(self, batch: Sequence[MetaExample], forward=None) -> torch.Tensor:
        chains = [m.chain for m in batch]
        if any(len(c) == 0 for c in chains):
            raise ValueError("a meta chain has no steps; drop it when loading (the official meta.json has such items)")
        enc = self.prm.encode(chains)
        out = self.prm.outputs(enc, forward=forward or self.model)
        r = torch.tensor([1.0 if m.correct else 0.0 for m in batch])
        return meta_losses(out, r, len(batch), target=self.config.meta_target, eps=self.config.logodds_eps).mean()

    def _alpha_grad(self, enc: dict[str, Any], batch: Sequence[LowerExample]) -> list[torch.Tensor]:
        """∇_α of the weighted lower loss at the current φ (φ held fixed: forward without its graph)."""
        with torch.no_grad():
            out = self.prm.outputs(enc, forward=self.model)
        loss, _, _ = self.weighted_lower_loss(batch, out, enc["labels"], detach_features=True)
        params = list(self.weights.parameters())
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]

    def hypergradient(self, meta_batch: Sequence[MetaExample], lower_batch: Sequence[LowerExample] | None = None,
                      mode: str | None = None) -> tuple[list[torch.Tensor], float]:
        """(∂L_meta/∂α through the lower problem, L_meta) without stepping anything."""
        mode = mode or self.config.hypergradient
        batch = list(lower_batch) if lower_batch is not None else self._last_batch
        if batch is None:
            raise RuntimeError("the hypergradient needs a lower batch: run a lower step first")
        enc = self._last_enc if lower_batch is None else self.encode_lower(batch)
        if mode == "darts":
            return self._darts(meta_batch, batch, enc)
        if mode == "exact":
            return self._exact(meta_batch, batch, enc)
        raise ValueError(f"unknown hypergradient mode {mode!r}")

    def _darts(self, meta_batch, batch, enc):
        from torch.func import functional_call

        named = {n: p for n, p in self.prm.named_parameters() if p.requires_grad}
        params = list(named.values())
        self.model.train()
        # v = dL_meta/dphi on fresh leaves that share the parameters' storage: autograd.grad on the
        # parameters themselves would fire DeepSpeed's gradient-reduction hooks (ZeRO-1/2)
        leaves = {n: p.detach().requires_grad_(True) for n, p in named.items()}
        lm = self.meta_loss(meta_batch, forward=lambda **kw: functional_call(self.prm, leaves, args=(), kwargs=kw))
        v = torch.autograd.grad(lm, list(leaves.values()), allow_unused=True)
        v = [torch.zeros_like(p) if g is None else g.detach() for p, g in zip(params, v)]
        v = self._reduce_mean(v)
        norm = float(torch.sqrt(sum((g.float() ** 2).sum() for g in v)))
        if not math.isfinite(norm):
            raise FloatingPointError(f"meta gradient norm is {norm}")
        if norm == 0.0:
            return [torch.zeros_like(p) for p in self.weights.parameters()], float(lm.detach())
        eps = self.config.darts_alpha / (norm + 1e-12)
        was_training = self.model.training
        if self.config.perturb_eval_mode:
            self.model.eval()
        try:
            with torch.no_grad():
                for p, g in zip(params, v):
                    p.add_(g, alpha=eps)
            g_plus = self._alpha_grad(enc, batch)
            with torch.no_grad():
                for p, g in zip(params, v):
                    p.add_(g, alpha=-2 * eps)
            g_minus = self._alpha_grad(enc, batch)
        finally:
            with torch.no_grad():
                for p, g in zip(params, v):
                    p.add_(g, alpha=eps)
            self.model.train(was_training)
        hyper = [(gm - gp) / (2 * eps) for gm, gp in zip(g_minus, g_plus)]
        return hyper, float(lm.detach())

    def _exact(self, meta_batch, batch, enc):
        from torch.nn.attention import SDPBackend, sdpa_kernel

        # the fused CPU/flash attention kernels have no double backward; the math kernel does
        with sdpa_kernel([SDPBackend.MATH]):
            return self._exact_impl(meta_batch, batch, enc)

    def _exact_impl(self, meta_batch, batch, enc):
        from torch.func import functional_call

        if self._rank_world[1] > 1 or self.model is not self.prm:
            raise NotImplementedError("hypergradient='exact' runs on one process without a wrapped model")
        named = {n: p for n, p in self.prm.named_parameters() if p.requires_grad}
        xi = self.config.exact_step_size or self.config.lr

        def call_with(pdict):
            return lambda **kw: functional_call(self.prm, pdict, args=(), kwargs=kw)

        out = self.prm.outputs(enc, forward=call_with(named))
        detach = self.config.weighting != "instance_net" or self.config.instance_net_detach
        loss, _, _ = self.weighted_lower_loss(batch, out, enc["labels"], detach_features=detach)
        grads = torch.autograd.grad(loss, list(named.values()), create_graph=True, allow_unused=True)
        stepped = {n: (p if g is None else p - xi * g) for (n, p), g in zip(named.items(), grads)}
        lm = self.meta_loss(meta_batch, forward=call_with(stepped))
        params = list(self.weights.parameters())
        hyper = torch.autograd.grad(lm, params, allow_unused=True)
        hyper = [torch.zeros_like(p) if h is None else h.detach() / xi for p, h in zip(params, hyper)]
        return hyper, float(lm.detach())

    def upper_step(self, meta_batch: Sequence[MetaExample] | None = None) -> dict[str, Any]:
        t0 = time.perf_counter()
        if meta_batch is None:
            if self.meta_cursor is None:
                raise RuntimeError("the meta set is empty: nothing to take an upper step on")
            meta_batch = [self.meta_data[i] for i in self.meta_cursor.next()]
        hyper, lm = self.hypergradient(meta_batch)
        hyper = self._reduce_mean(hyper)
        for p, h in zip(self.weights.parameters(), hyper):
            p.grad = h.to(p.dtype)
        if self.config.meta_max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.weights.parameters(), self.config.meta_max_grad_norm)
        self.meta_optimizer.step()
        self.meta_scheduler.step()
        self.meta_optimizer.zero_grad(set_to_none=True)
        self.upper_step_count += 1
        self.timings["upper"].append(time.perf_counter() - t0)
        return {"meta_loss": lm, "hypergrad_norm": float(torch.sqrt(sum((h ** 2).sum() for h in hyper)))}

    # -- loop ---------------------------------------------------------------------------------------
    def weight_table(self) -> dict[str, float]:
        w = self.weights
        if isinstance(w, InstanceTable):
            by: dict[str, list[object]] = {}
            for k, e in enumerate(self.train_data):
                by.setdefault(e.domain, []).append(e.id or str(k))
            return w.table(by)
        if isinstance(w, InstanceNet):
            return {}
        return w.table()

    def log(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        for cb in self.callbacks:
            cb(record)

    def train(self, max_steps: int | None = None, resume_from: str | None = None) -> list[dict[str, Any]]:
        """Run lower steps (and an upper step every ``unroll_steps``) up to ``max_steps`` in total."""
        if resume_from:
            self.load_checkpoint(resume_from)
        total = max_steps if max_steps is not None else self.config.max_steps
        c = self.config
        while self.global_step < total:
            batch = [self.train_data[i] for i in self.train_cursor.next()]
            self._lower_losses.append(self.lower_step(batch))
            self.global_step += 1
            record: dict[str, Any] | None = None
            if c.weighting != "none" and self.global_step % c.unroll_steps == 0 and self.meta_cursor is not None:
                info = self.upper_step()
                record = {"step": self.global_step, "upper_step": self.upper_step_count, **info,
                          "weights": self.weight_table()}
            if self.global_step % max(1, c.logging_steps) == 0 or record is not None:
                rec = record or {"step": self.global_step}
                rec["lower_loss"] = sum(self._lower_losses) / max(1, len(self._lower_losses))
                rec["lr"] = self.scheduler.get_last_lr()[0]
                self._lower_losses = []
                if record is None and c.weighting == "none":
                    rec["weights"] = self.weight_table()
                self.log(rec)
            if c.save_steps and c.output_dir and self.global_step % c.save_steps == 0:
                self.save_checkpoint(os.path.join(c.output_dir, f"checkpoint-{self.global_step}"))
        return self.history

    # -- checkpoints --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything of the upper level and the loop (the PRM and its optimizer go through accelerate)."""
        return {
            "weights": self.weights.state_dict(),
            "weight_kind": getattr(self.weights, "kind", ""),
            "meta_optimizer": None if self.meta_optimizer is None else self.meta_optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "meta_scheduler": None if self.meta_scheduler is None else self.meta_scheduler.state_dict(),
            "global_step": self.global_step,
            "upper_step_count": self.upper_step_count,
            "train_pos": self.train_cursor.pos,
            "meta_pos": None if self.meta_cursor is None else self.meta_cursor.pos,
            "history": self.history,
            "config": asdict(self.config),
            "weight_table": self.weight_table(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("weight_kind", "") != getattr(self.weights, "kind", ""):
            raise ValueError(f"checkpoint holds {state.get('weight_kind')!r} weights, this run uses "
                             f"{getattr(self.weights, 'kind', '')!r}")
        self.weights.load_state_dict(state["weights"])
        if self.meta_optimizer is not None and state["meta_optimizer"] is not None:
            self.meta_optimizer.load_state_dict(state["meta_optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.meta_scheduler is not None and state.get("meta_scheduler") is not None:
            self.meta_scheduler.load_state_dict(state["meta_scheduler"])
        self.global_step = state["global_step"]
        self.upper_step_count = state["upper_step_count"]
        self.train_cursor.pos = state["train_pos"]
        if self.meta_cursor is not None and state["meta_pos"] is not None:
            self.meta_cursor.pos = state["meta_pos"]
        self.history = list(state["history"])

    def save_checkpoint(self, path: str) -> str:
        """PRM + lower optimizer via ``accelerator.save_state`` (DeepSpeed-aware), the rest as
        ``dreamprm_state.json`` + tensors-only ``dreamprm_state.pt``, the weight table as JSON for people."""
        self.accelerator.wait_for_everyone()
        self.accelerator.save_state(path)
        if self.is_main_process:
            state = self.state_dict()
            save_state(state, os.path.join(path, STATE_FILE), os.path.join(path, STATE_TENSORS_FILE))
            with open(os.path.join(path, "domain_weights.json"), "w") as fh:
                json.dump({"step": self.global_step, "weights": state["weight_table"]}, fh, indent=2)
        self.accelerator.wait_for_everyone()
        return path

    def load_checkpoint(self, path: str) -> None:
        self.accelerator.load_state(path)
        self.load_state_dict(load_state(os.path.join(path, STATE_FILE), os.path.join(path, STATE_TENSORS_FILE)))
